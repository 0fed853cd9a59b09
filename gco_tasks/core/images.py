"""Container image references: well-formed, and whether they are pinned by digest.

Where it stands in the flow: at start, beside the settings, and at render (``registry_allowed``:
``ALLOWED_IMAGE_REGISTRIES``). More in docs/architecture.md.
"""

from __future__ import annotations

import re
from typing import Final

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_PORT = r":[0-9]{1,5}"
#: A registry is a first component with a '.' or a port, or ``localhost`` (as Docker tells them apart).
_DOMAIN = rf"(?:(?:{_LABEL}(?:\.{_LABEL})+(?:{_PORT})?|{_LABEL}{_PORT}|localhost)/)?"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_TAG = r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
_DIGEST = r"@sha256:[0-9a-f]{64}"

#: ``[registry[:port]/]path[:tag][@sha256:<64 lower-case hex>]``, as the distribution spec writes it.
IMAGE_REFERENCE: Final = re.compile(rf"^{_DOMAIN}{_COMPONENT}(?:/{_COMPONENT})*{_TAG}(?:{_DIGEST})?$")
PINNED: Final = re.compile(rf"{_DIGEST}$")

EXAMPLE: Final = "public.ecr.aws/aws-cli/aws-cli:2.22.35@sha256:<64 hex digits>"


def check_image_reference(value: str) -> str:
    """Return ``value`` if it is ``repo[:tag][@sha256:<64 hex>]``; raise ``ValueError`` otherwise."""
    if not IMAGE_REFERENCE.match(value):
        raise ValueError(
            "must be an image reference repo:tag or repo:tag@sha256:<64 lower-case hex digits> "
            f"(like {EXAMPLE})"
        )
    return value


def is_pinned(value: str) -> bool:
    """True when the reference ends in ``@sha256:<64 hex>`` (what the kubelet pulls cannot change)."""
    return bool(PINNED.search(value))


DOCKER_HUB: Final = "docker.io"
_FIRST_IS_REGISTRY = re.compile(rf"^(?:{_LABEL}(?:\.{_LABEL})+(?:{_PORT})?|{_LABEL}{_PORT}|localhost)$")


def image_repository(reference: str) -> str:
    """The repository a reference pulls from, registry first, without tag or digest, as the container
    runtime resolves it: ``nginx:1.27`` -> ``docker.io/library/nginx``, ``vllm/vllm-openai`` ->
    ``docker.io/vllm/vllm-openai``, ``public.ecr.aws/x/y:1`` -> ``public.ecr.aws/x/y``."""
    name = reference.split("@", 1)[0]
    first, slash, rest = name.partition("/")
    if slash and _FIRST_IS_REGISTRY.match(first):
        registry, path = first.lower(), rest
    else:
        registry, path = DOCKER_HUB, name if slash else f"library/{name}"
    if ":" in path:
        path = path.rsplit(":", 1)[0]
    if registry in ("index.docker.io", "registry-1.docker.io"):
        registry = DOCKER_HUB
    return f"{registry}/{path}"


def registry_allowed(reference: str, allowed: tuple[str, ...]) -> bool:
    """Whether ``reference`` pulls from one of ``allowed``: a registry (``public.ecr.aws``), a registry
    and path prefix (``docker.io/vllm``: its repositories and those below), or ``*.`` and a domain
    suffix (``*.dkr.ecr.us-east-1.amazonaws.com``: every account's ECR in that region)."""
    repository = image_repository(reference)
    registry = repository.split("/", 1)[0]
    for entry in allowed:
        entry = entry.strip().rstrip("/").lower()
        if entry.startswith("*."):
            if registry.endswith(entry[1:]):
                return True
        elif repository.lower() == entry or repository.lower().startswith(f"{entry}/"):
            return True
    return False
