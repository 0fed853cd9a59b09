"""The body of a server-side apply (``cluster.apply_body``): YAML that kube-apiserver reads, with every
string and key intact. JSON's surrogate-pair escapes are not YAML (the real server answers 400 for them;
see tests/integration/test_conformance.py), so characters beyond the BMP travel as YAML's \\U escapes;
keys whose JSON form is over 1024 characters are no implicit YAML keys (hypothesis found one)."""

from __future__ import annotations

import json

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from gco_tasks.adapters.cluster import apply_body


def test_characters_beyond_the_bmp_become_yaml_escapes() -> None:
    body = apply_body({"v": "hi 😀"})
    assert body == b'v: "hi \\U0001F600"\n'
    assert yaml.safe_load(body) == {"v": "hi 😀"}


def test_an_escaped_backslash_before_u_is_left_alone() -> None:
    text = "\\ud83d\\ude00 is text, \\😀 is a backslash and an emoji"
    assert yaml.safe_load(apply_body({"v": text})) == {"v": text}
    assert b"\\ud83d" not in apply_body({"v": "😀"})


LEAVES = st.text() | st.integers() | st.booleans() | st.none() | st.floats(allow_nan=False)


@settings(deadline=None)  # YAML round trips of big nested values: CPU time on a shared machine, not a bug
@given(st.recursive(LEAVES, lambda inner: st.dictionaries(st.text(), inner, max_size=3), max_leaves=8))
def test_any_value_round_trips_as_json_or_yaml(value: object) -> None:
    body = apply_body({"v": value})
    assert body.isascii()
    assert yaml.safe_load(body) == {"v": value}


def test_a_plain_object_travels_as_json_that_reads_back_the_same_as_yaml() -> None:
    obj = {"kind": "Deployment", "n": "n", "on": "yes", "x": "0o17", "count": 3, "ok": [True, None],
           "env": {"é": "tab\there, quote \" and backslash \\ and \u2028, DEL \x7f"}}  # fmt: skip
    body = apply_body(obj)
    assert body.startswith(b'{"kind": "Deployment"')
    assert json.loads(body) == obj and yaml.safe_load(body) == obj


def test_what_json_cannot_say_as_yaml_goes_as_yaml() -> None:
    """A character beyond the BMP (JSON's surrogate pair), a float (JSON's ``1e-05`` is a string in
    YAML 1.1) and a key too long to be an implicit YAML key."""
    for value in ({"v": "😀"}, {"v": 1e-05}, {"Ṱ̺̺̕o͞ " * 100: "v"}):
        body = apply_body(value)
        assert not body.startswith(b"{"), body[:40]
        assert yaml.safe_load(body) == value


def test_a_key_whose_json_form_is_over_1024_characters_survives() -> None:
    key = "Ṱ̺̺̕o͞ " * 100  # ~700 characters, well over 1024 once escaped
    assert len(key.encode("ascii", "backslashreplace")) > 1024
    assert yaml.safe_load(apply_body({"m": {key: "v"}})) == {"m": {key: "v"}}


def test_what_go_yaml_reads_as_a_boolean_or_a_number_is_quoted() -> None:
    """kube-apiserver reads apply bodies with go-yaml v2 (YAML 1.1 and Go's number syntax): a plain ``n``
    is ``false`` there (a toleration key ``n`` got 500 "expected string", found by the server validation
    property), ``1e3`` a float, ``0o17`` an int. PyYAML reads them as strings, so it left them plain."""
    for text in ("y", "Y", "n", "N", "1e3", "1E+3", "0o17", "0O17", "0X1F", "0B1", "1_0.5", "5."):
        body = apply_body({text: text, "f": 0.5})  # a float: the YAML dumper's body, not JSON
        quoted = (f"'{text}': '{text}'\nf: 0.5\n".encode(), f'"{text}": "{text}"\nf: 0.5\n'.encode())
        assert body in quoted, body
        assert yaml.safe_load(body) == {text: text, "f": 0.5}
    plain = apply_body({"n1": "yes-no", "name": "ny", "f": 0.5})
    assert plain == b"n1: yes-no\nname: ny\nf: 0.5\n", "others stay plain"
