"""The Flower guard's rules (``gco_tasks.worker.flower.check_environment``), without starting anything: every
malformed login is refused with one sentence naming the variable and never containing the value; a
well-formed basic-auth or OAuth setting passes. The real Flower process is in tests/e2e/test_flower.py."""

from __future__ import annotations

import pytest

from gco_tasks.worker.flower import (
    MIN_PASSWORD_LENGTH,
    FlowerAuthError,
    check_environment,
    flower_argv,
)

GOOD = "ops:" + "p" * MIN_PASSWORD_LENGTH
SECRET = "Zq7-secret-value-NEVER-shown"
OAUTH = {
    "FLOWER_AUTH": ".*@example.com",
    "FLOWER_AUTH_PROVIDER": "flower.views.auth.GithubLoginHandler",
    "FLOWER_OAUTH2_KEY": "client-id",
    "FLOWER_OAUTH2_SECRET": SECRET,
    "FLOWER_OAUTH2_REDIRECT_URI": "https://flower.example.com/login",
}


def refusal(environ: dict[str, str], argv: tuple[str, ...] = ()) -> str:
    with pytest.raises(FlowerAuthError) as info:
        check_environment(environ, argv)
    message = str(info.value)
    assert message.count(". ") == 0 and message.endswith("."), f"one sentence: {message!r}"
    return message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        ("ops:", "empty password"),
        (":" + SECRET, "no user name"),
        (SECRET, "no ':'"),
        ("ops:short-" + "x", f"shorter than {MIN_PASSWORD_LENGTH}"),
        (f"ops:{SECRET},", "login 2 of 2 is empty"),
        (f"ops:{SECRET},,dev:{SECRET}", "login 2 of 3 is empty"),
        (f",ops:{SECRET}", "login 1 of 2 is empty"),
        (f"ops:{SECRET}\n", "whitespace"),
        (f"ops:{SECRET}, dev:{SECRET}", "login 2 of 2 has whitespace"),
        (f"o ps:{SECRET}", "no user name"),
    ],
)
def test_malformed_basic_auth_is_refused_without_echoing_it(value: str, expected: str) -> None:
    message = refusal({"FLOWER_BASIC_AUTH": value})
    assert "FLOWER_BASIC_AUTH" in message and expected in message
    assert SECRET not in message and "short-x" not in message


def test_no_login_at_all_is_refused() -> None:
    message = refusal({"REDIS_URL": "redis://localhost:6379/0"})
    assert "FLOWER_BASIC_AUTH" in message and "never starts without a login" in message


@pytest.mark.parametrize(
    "value", [GOOD, f"{GOOD},dev:{SECRET}", f"a.b-c_d@x:{SECRET}", f"ops:{SECRET}:with:colons"]
)
def test_well_formed_basic_auth_passes(value: str) -> None:
    check_environment({"FLOWER_BASIC_AUTH": value})


def test_password_of_exactly_the_minimum_passes_and_one_less_does_not() -> None:
    check_environment({"FLOWER_BASIC_AUTH": "ops:" + "x" * MIN_PASSWORD_LENGTH})
    refusal({"FLOWER_BASIC_AUTH": "ops:" + "x" * (MIN_PASSWORD_LENGTH - 1)})


@pytest.mark.parametrize("value", ["true", "1", "yes", "TRUE"])
def test_unauthenticated_api_switch_is_refused_even_with_a_login(value: str) -> None:
    message = refusal({"FLOWER_BASIC_AUTH": GOOD, "FLOWER_UNAUTHENTICATED_API": value})
    assert "FLOWER_UNAUTHENTICATED_API" in message


def test_unauthenticated_api_set_false_is_harmless() -> None:
    check_environment({"FLOWER_BASIC_AUTH": GOOD, "FLOWER_UNAUTHENTICATED_API": "false"})


def test_complete_oauth_passes_alone_and_with_basic_auth() -> None:
    check_environment(OAUTH)
    check_environment({**OAUTH, "FLOWER_BASIC_AUTH": GOOD})
    check_environment({**OAUTH, "FLOWER_AUTH": "a@example.com|b@example.org"})
    check_environment({**OAUTH, "FLOWER_OAUTH2_REDIRECT_URI": "http://localhost:5555/login"})


@pytest.mark.parametrize("missing", sorted(OAUTH))
def test_an_empty_or_missing_oauth_setting_is_refused(missing: str) -> None:
    for environ in ({**OAUTH, missing: ""}, {k: v for k, v in OAUTH.items() if k != missing}):
        message = refusal(environ)
        assert missing in message and SECRET not in message


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("FLOWER_AUTH", ".*", "FLOWER_AUTH"),
        ("FLOWER_AUTH", ".*@.*", "FLOWER_AUTH"),
        ("FLOWER_AUTH", "*@example.com", "FLOWER_AUTH"),
        ("FLOWER_AUTH", ".*@example.com|b@example.com", "FLOWER_AUTH"),
        ("FLOWER_AUTH", "me@example.com,", "FLOWER_AUTH"),
        ("FLOWER_AUTH", "me", "FLOWER_AUTH"),
        ("FLOWER_AUTH_PROVIDER", "my.module.Handler", "FLOWER_AUTH_PROVIDER"),
        ("FLOWER_OAUTH2_REDIRECT_URI", "http://flower.example.com/login", "FLOWER_OAUTH2_REDIRECT_URI"),
        ("FLOWER_AUTH_PROVIDER", "flower.views.auth.OktaLoginHandler", "FLOWER_OAUTH2_OKTA_BASE_URL"),
    ],
)
def test_malformed_oauth_is_refused(key: str, value: str, named: str) -> None:
    message = refusal({**OAUTH, key: value})
    assert named in message and SECRET not in message


def test_okta_with_its_base_url_passes() -> None:
    okta = {"FLOWER_AUTH_PROVIDER": "flower.views.auth.OktaLoginHandler"}
    check_environment({**OAUTH, **okta, "FLOWER_OAUTH2_OKTA_BASE_URL": "https://example.okta.com"})


def test_short_cookie_secret_is_refused() -> None:
    message = refusal({"FLOWER_BASIC_AUTH": GOOD, "FLOWER_COOKIE_SECRET": "short"})
    assert "FLOWER_COOKIE_SECRET" in message and "short" not in message.split("must")[0]
    check_environment({"FLOWER_BASIC_AUTH": GOOD, "FLOWER_COOKIE_SECRET": "c" * 32})


@pytest.mark.parametrize(
    "arg",
    ["--basic-auth=x:y", "--basic_auth=x:y", "--auth=.*@x.com", "--conf=f.py", "--cookie_secret=Qk9-cookie"],
)
def test_logins_and_config_files_on_the_command_line_are_refused(arg: str) -> None:
    message = refusal({"FLOWER_BASIC_AUTH": GOOD}, (arg,))
    assert arg.partition("=")[0] in message and arg.partition("=")[2] not in message


def test_ordinary_options_pass_and_flower_gets_no_config_file() -> None:
    argv = ("--port=5555", "--address=127.0.0.1", "--url_prefix=flower")
    check_environment({"FLOWER_BASIC_AUTH": GOOD}, argv)
    command = flower_argv(argv)
    assert command[1:7] == ["-m", "celery", "-A", "gco_tasks", "flower", "--conf=/dev/null"]
    assert command[7:] == list(argv)
