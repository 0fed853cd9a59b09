"""What the fan-out's triage remembers between cycles, so that a steady cycle does not render and compare
every endpoint again: a record's rendering, once per distinct record, and a live object's digest, once
per object version.

Where it stands in the flow: under ``triage``, inside ``fan_out``. More in docs/architecture.md.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Generic, TypeVar

from gco_tasks.core import conventions as names
from gco_tasks.core.drift import digest as compute_digest
from gco_tasks.core.plan import ObservedObject, desired_hash
from gco_tasks.core.records import Endpoint, InvalidEndpointError
from gco_tasks.core.rendering import RenderOptions, desired_objects, object_key

#: Endpoints and live objects remembered (a region of 20,000 endpoints fits).
RENDERINGS_KEPT: Final = 20_000
DIGESTS_KEPT: Final = 100_000

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Lru(Generic[K, V]):
    """A bounded memo holding one entry per key (an endpoint, a live object) with the version it was
    computed for: a new version replaces the old one, and past ``size`` keys the least recently used
    goes, so memory follows the size of the fleet, not its history."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[K, tuple[Hashable, V]] = OrderedDict()

    def get(self, key: K, version: Hashable, make: Callable[[], V]) -> V:
        found = self._entries.get(key)
        if found is not None and found[0] == version:
            self._entries.move_to_end(key)
            return found[1]
        value = make()
        self._entries[key] = (version, value)
        self._entries.move_to_end(key)
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(frozen=True)
class Rendering:
    """A record's rendering as triage uses it: the endpoint (None when the record is invalid, with the
    error) and, per rendered object, a stub holding its kind, name and desired hash."""

    endpoint: Endpoint | None
    stubs: tuple[dict[str, Any], ...] = ()
    error: str | None = None
    #: (kind, name) -> desired hash of each stub (what a warm cycle asks for every endpoint).
    hashes: Mapping[tuple[str, str], str | None] = field(default_factory=dict)


_renderings: Lru[tuple[str, str], Rendering] = Lru(RENDERINGS_KEPT)
_digests: Lru[tuple[str, str, str], ObservedObject] = Lru(DIGESTS_KEPT)


def rendering(
    item: Mapping[str, Any],
    region: str,
    options: RenderOptions,
    keep: dict[str, dict[tuple[str, str], dict[str, Any]]] | None = None,
) -> Rendering:
    """``item``'s rendering in ``region`` (remembered by content). When it is rendered afresh and
    ``keep`` is given, the rendered objects go there too, by endpoint name then ``object_key`` (the
    fan-out's scratch for the digests that follow: no second rendering)."""
    key = (str(item.get("endpoint_name")), region)
    return _renderings.get(
        key, _fingerprint(item, region, options), lambda: _render(item, region, options, keep)
    )


def full_objects(item: Mapping[str, Any], region: str, options: RenderOptions) -> list[dict[str, Any]]:
    """The rendered objects themselves (not remembered); ``[]`` for an invalid record."""
    try:
        return desired_objects(Endpoint.from_item(item), region, options)
    except InvalidEndpointError:
        return []


def digest(
    live: Mapping[str, Any], hash_wanted: str | None, full: Callable[[], Mapping[str, Any] | None]
) -> ObservedObject:
    """``drift.digest`` of ``live`` against the rendered object whose hash is ``hash_wanted`` (None: not
    wanted), which ``full`` renders when this object version has not been compared with it before."""
    metadata = live.get("metadata") or {}
    version = metadata.get("resourceVersion")
    if not version:
        return compute_digest(live, full() if hash_wanted is not None else None)
    key = (str(live.get("kind")), str(metadata.get("name")), str(metadata.get("uid")))
    wanted = full if hash_wanted is not None else lambda: None
    return _digests.get(key, (str(version), hash_wanted), lambda: compute_digest(live, wanted()))


def stub_of(obj: Mapping[str, Any]) -> dict[str, Any]:
    kind, name = object_key(obj)
    return {
        "kind": kind,
        "metadata": {"name": name, "annotations": {names.HASH_ANNOTATION: desired_hash(obj)}},
    }


def _render(
    item: Mapping[str, Any],
    region: str,
    options: RenderOptions,
    keep: dict[str, dict[tuple[str, str], dict[str, Any]]] | None = None,
) -> Rendering:
    try:
        endpoint = Endpoint.from_item(item)
        objects = desired_objects(endpoint, region, options)
    except InvalidEndpointError as exc:
        return Rendering(None, error=str(exc))
    if keep is not None:
        keep[endpoint.endpoint_name] = {object_key(obj): obj for obj in objects}
    stubs = tuple(stub_of(obj) for obj in objects)
    return Rendering(endpoint, stubs, hashes={object_key(stub): desired_hash(stub) for stub in stubs})


def _fingerprint(item: Mapping[str, Any], region: str, options: RenderOptions) -> bytes:
    """A digest of the record's content (less ``region_status``) as ``repr`` writes it: exact for the
    plain values a decoded item holds (``True``, ``1``, ``1.0`` and ``"1"`` all differ), several times
    cheaper than sorted JSON, and 20 bytes kept per endpoint, not the text. Keys in another order only
    make a miss (a rendering again), never a wrong hit."""
    content = [(key, value) for key, value in item.items() if key != "region_status"]
    return hashlib.blake2b(repr((region, options, content)).encode(), digest_size=20).digest()
