"""Schema validation for the sandbox API server: kubernetes-validate's strict JSON schemas, with each
compiled validator kept and each verdict cached by content hash. No I/O after the first load per kind.

Where it stands in the flow: every write to the sandbox API server (a LOCAL STAND-IN, not Kubernetes)
is checked here before it is stored, so that a malformed object the fleet renders (``replicas: "two"``,
an unknown field) fails with 422 Invalid as a real API server would, not later and not silently.
``kubernetes_validate.validate`` reloads its schema files on every call (5-10 ms); this module compiles
them once per kind, which makes creates fast enough to benchmark against.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import threading
from typing import Any

_CACHE_LIMIT = 50_000


class SchemaUnavailable(RuntimeError):
    """kubernetes-validate is not installed or has no schema for this kind and version."""


@functools.lru_cache(maxsize=64)
def _validator(kind: str, api_version: str, version: str) -> Any:
    try:
        import jsonschema  # type: ignore[import-untyped]
        import referencing
        from kubernetes_validate import utils
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise SchemaUnavailable(
            "install the sandbox (pip install -e ./gco_sandbox) for schema validation (kubernetes-validate)"
        ) from exc
    schema_version = [v for v in utils.all_versions() if utils.major_minor(v) <= utils.major_minor(version)][
        -1
    ]
    folder = f"kubernetes-json-schema/v{schema_version}-local-strict"
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        schema = utils.schema_contents(f"{folder}/{kind.lower()}-{group_version}.json", version)
    except FileNotFoundError:
        raise SchemaUnavailable(f"no schema for {kind} {api_version} in Kubernetes {version}") from None
    definitions = utils.schema_contents(f"{folder}/_definitions.json", version)
    registry = referencing.Registry().with_resources(
        [
            (schema.get("$id", ""), referencing.Resource.from_contents(schema)),
            (definitions.get("$id", ""), referencing.Resource.from_contents(definitions)),
        ]
    )
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


class Validator:
    """Validates objects against one Kubernetes version's strict schemas; thread-safe."""

    def __init__(self, version: str) -> None:
        self.version = version
        self._verdicts: dict[str, str | None] = {}
        self._lock = threading.Lock()

    def error(self, obj: dict[str, Any]) -> str | None:
        """The first schema error of ``obj`` as ``path: message``, or None when it is valid."""
        digest = hashlib.blake2b(json.dumps(obj, sort_keys=True).encode(), digest_size=16).hexdigest()
        with self._lock:
            if digest in self._verdicts:
                return self._verdicts[digest]
        verdict = self._check(obj)
        with self._lock:
            if len(self._verdicts) >= _CACHE_LIMIT:
                self._verdicts.clear()
            self._verdicts[digest] = verdict
        return verdict

    def _check(self, obj: dict[str, Any]) -> str | None:
        validator = _validator(str(obj.get("kind")), str(obj.get("apiVersion")), self.version)
        error = next(iter(validator.iter_errors(obj)), None)
        if error is None:
            return None
        where = ".".join(str(part) for part in error.absolute_path) or "<root>"
        return f"{where}: {error.message}"
