"""Where the region's Redis is and how to reach it: ``REDIS_URL`` parsed once, in every form the README
documents, and the one way to print it (password masked).

Where it stands in the flow: under the settings. More in docs/architecture.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import parse_qsl, quote, unquote, urlsplit

Scheme = Literal["redis", "rediss", "sentinel"]

DEFAULT_PORTS: Final = {"redis": 6379, "rediss": 6379, "sentinel": 26379}
CERT_REQS: Final = frozenset({"required", "optional", "none"})
TLS_QUERY_KEYS: Final = frozenset({"ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile"})
#: ``scheme://user:password@`` or ``scheme://secret@`` anywhere in a text (several URLs joined by ';').
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^@/;\s]*)@")


def mask_url(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***`` (``redis://:***@host``,
    ``redis://user:***@host``); a bare ``scheme://secret@`` loses the whole user part. Works on
    malformed URLs too: it never parses, it only finds ``://...@``."""

    def masked(match: re.Match[str]) -> str:
        user, colon, _password = match["userinfo"].partition(":")
        kept = f"{user}:***" if colon else "***"
        return f"{match['scheme']}{kept}@"

    return _USERINFO.sub(masked, text)


@dataclass(frozen=True)
class TlsOptions:
    """How to verify the server (``rediss://``): redis-py's ``ssl_*`` arguments."""

    cert_reqs: str = "required"
    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None

    def as_ssl_options(self) -> dict[str, Any]:
        """For Celery's ``broker_use_ssl``/``redis_backend_use_ssl`` and RedBeat's ``redbeat_redis_use_ssl``
        (and redis-py's keyword arguments)."""
        options: dict[str, Any] = {"ssl_cert_reqs": self.cert_reqs}
        for key, value in (
            ("ssl_ca_certs", self.ca_certs),
            ("ssl_certfile", self.certfile),
            ("ssl_keyfile", self.keyfile),
        ):
            if value:
                options[key] = value
        return options


@dataclass(frozen=True)
class RedisTarget:
    """One region's Redis: plain, TLS, or behind Sentinel."""

    scheme: Scheme
    nodes: tuple[tuple[str, int], ...]  # the server, or every sentinel
    db: int = 0
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    tls: TlsOptions | None = None
    master_name: str | None = None  # sentinel only

    @property
    def is_sentinel(self) -> bool:
        return self.scheme == "sentinel"

    def _userinfo(self, with_password: bool) -> str:
        if self.username is None and self.password is None:
            return ""
        user = quote(self.username or "", safe="")
        if self.password is None:
            return f"{user}@"
        secret = quote(self.password, safe="") if with_password else "***"
        return f"{user}:{secret}@"

    def url(self, with_password: bool = True) -> str:
        """Celery's broker/backend URL: no query (TLS goes through ``ssl_options``); for Sentinel every
        sentinel as its own ``sentinel://`` part, the credentials on the first only (kombu and Celery's
        Sentinel backend take the data nodes' password from the first part)."""
        userinfo = self._userinfo(with_password)
        parts = [f"{self.scheme}://{host}:{port}" for host, port in self.nodes]
        parts[0] = parts[0].replace("://", f"://{userinfo}", 1)
        parts[-1] += f"/{self.db}"
        return ";".join(parts)

    def masked(self) -> str:
        """The URL as logs, errors and ``inspect conf`` may show it."""
        return self.url(with_password=False)

    def redbeat_url(self) -> str:
        """RedBeat's ``redbeat_redis_url``, without credentials (they go through
        ``redbeat_redis_options``, whose ``password`` Celery masks). For Sentinel RedBeat only looks at the
        ``redis-sentinel`` scheme (and shows the URL in beat's banner, so it must parse: the first
        sentinel only); the sentinels themselves go in the options."""
        host, port = self.nodes[0]
        if self.is_sentinel:
            return f"redis-sentinel://{host}:{port}/{self.db}"
        return f"{self.scheme}://{host}:{port}/{self.db}"

    def ssl_options(self) -> dict[str, Any] | None:
        return self.tls.as_ssl_options() if self.tls else None


class RedisUrlError(ValueError):
    """``REDIS_URL`` cannot be used; the message shows it with its password masked."""


def parse_redis_url(
    raw: str, sentinel_master: str = "", allow_unverified_tls: bool = False, echo: bool = True
) -> RedisTarget:
    """``REDIS_URL`` as a ``RedisTarget``; ``RedisUrlError`` when it is malformed, uses an unknown scheme
    or option, turns certificate verification off without ``allow_unverified_tls``, or names sentinels
    without ``REDIS_SENTINEL_MASTER``. With ``echo`` the message ends with the URL, password masked."""
    text = raw.strip()
    try:
        return _parse(text, sentinel_master, allow_unverified_tls)
    except RedisUrlError as exc:
        if not echo:
            raise
        raise RedisUrlError(f"{exc} (got {mask_url(text)!r})") from None


def _parse(text: str, sentinel_master: str, allow_unverified_tls: bool) -> RedisTarget:
    parts = [part for part in text.split(";") if part.strip()]
    if not parts:
        raise RedisUrlError("is empty; expected redis://, rediss:// or sentinel:// (see the README)")
    scheme = _scheme_of(parts[0])
    if len(parts) > 1 and scheme != "sentinel":
        raise RedisUrlError("only sentinel:// URLs may list several hosts separated by ';'")
    pieces = [urlsplit(part.strip()) for part in parts]
    nodes = tuple(_node(piece, scheme) for piece in pieces)
    if any(_scheme_of(part) != scheme for part in parts):
        raise RedisUrlError("mixes schemes; every part of a Sentinel URL starts with sentinel://")
    first = pieces[0]
    query = dict(parse_qsl(pieces[-1].query, keep_blank_values=True))
    tls = _tls(scheme, query, allow_unverified_tls)
    master = sentinel_master.strip() or None
    if scheme == "sentinel" and master is None:
        raise RedisUrlError("names sentinels but REDIS_SENTINEL_MASTER (the primary's name) is not set")
    return RedisTarget(
        scheme=scheme,
        nodes=nodes,
        db=_db(pieces[-1].path),
        username=unquote(first.username) if first.username else None,
        password=unquote(first.password) if first.password is not None else None,
        tls=tls,
        master_name=master if scheme == "sentinel" else None,
    )


def _scheme_of(part: str) -> Scheme:
    scheme = part.strip().partition("://")[0].lower() if "://" in part else ""
    if scheme not in DEFAULT_PORTS:
        raise RedisUrlError("must start with redis://, rediss:// (TLS) or sentinel:// (Redis Sentinel)")
    return scheme  # type: ignore[return-value]


def _node(piece: Any, scheme: Scheme) -> tuple[str, int]:
    try:
        host, port = piece.hostname, piece.port
    except ValueError:
        raise RedisUrlError("has a port that is not a number from 1 to 65535") from None
    if not host:
        raise RedisUrlError("has no host name")
    return host, port or DEFAULT_PORTS[scheme]


def _db(path: str) -> int:
    number = path.strip("/") or "0"
    if not number.isdigit():
        raise RedisUrlError(f"has a database number that is not a number ({number!r})")
    return int(number)


def _tls(scheme: Scheme, query: dict[str, str], allow_unverified: bool) -> TlsOptions | None:
    unknown = sorted(set(query) - TLS_QUERY_KEYS)
    if unknown:
        raise RedisUrlError(f"has unknown options {unknown}; only {sorted(TLS_QUERY_KEYS)} (rediss://)")
    if scheme != "rediss":
        if query:
            raise RedisUrlError("has TLS options but is not rediss://")
        return None
    reqs = query.get("ssl_cert_reqs", "required").lower().removeprefix("cert_")
    if reqs not in CERT_REQS:
        raise RedisUrlError("has ssl_cert_reqs other than required, optional or none")
    if reqs != "required" and not allow_unverified:
        raise RedisUrlError(
            f"turns certificate verification off (ssl_cert_reqs={reqs}); use ssl_cert_reqs=required with "
            "ssl_ca_certs, or set REDIS_ALLOW_UNVERIFIED_TLS=true to accept an unverified server"
        )
    return TlsOptions(
        cert_reqs=reqs,
        ca_certs=query.get("ssl_ca_certs") or None,
        certfile=query.get("ssl_certfile") or None,
        keyfile=query.get("ssl_keyfile") or None,
    )
