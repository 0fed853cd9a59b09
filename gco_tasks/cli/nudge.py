"""Right after the CLI changes an endpoint's record, ask each target region's fleet to reconcile it now
instead of at its next cycle (optional: ``REGION_REDIS_URLS``; off when empty).

Where it stands in the flow: outside the fleet, after ``gco-tasks endpoints ...`` wrote the table. More
in docs/architecture.md.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

from gco_tasks.core.conventions import queue_for_region

if TYPE_CHECKING:
    from celery import Celery
    from celery.result import AsyncResult

log = logging.getLogger(__name__)

RECONCILE_TASK = "gco_tasks.reconcile_endpoint"
#: A nudge is only worth something soon: after this long the region's own cycle has done it anyway.
MESSAGE_EXPIRES_SECONDS = 300
CONNECT_TIMEOUT_SECONDS = 3.0


class RegionUrlsError(ValueError):
    """``REGION_REDIS_URLS`` is malformed; the message names the entry by position, never its value."""


def parse_region_urls(text: str) -> dict[str, str]:
    """``region=redis://...`` pairs, comma-separated (whitespace ignored) -> {region: url}."""
    urls: dict[str, str] = {}
    for position, entry in enumerate((e.strip() for e in text.split(",")), 1):
        if not entry:
            continue
        region, _, url = entry.partition("=")
        region, url = region.strip(), url.strip()
        if not region or urlsplit(url).scheme not in ("redis", "rediss") or not urlsplit(url).hostname:
            raise RegionUrlsError(
                f"REGION_REDIS_URLS: entry {position} is not region=redis://host:port/db "
                "(or rediss://); fix it or leave REGION_REDIS_URLS empty"
            )
        urls[region] = url
    return urls


def nudge(name: str, regions: Iterable[str], urls: Mapping[str, str]) -> dict[str, str]:
    """Send ``reconcile_endpoint(name)`` to each of ``regions`` that has a URL: region -> "requested", or
    why not (the error's type only: its text could hold the URL)."""
    outcome: dict[str, str] = {}
    for region in regions:
        if region not in urls:
            continue
        try:
            _send(urls[region], region, name)
        except Exception as exc:  # any failure of the broker's client: the region's cycle will do it
            log.info("could not ask %s to reconcile %s now: %s", region, name, type(exc).__name__)
            outcome[region] = f"not reached ({type(exc).__name__})"
        else:
            outcome[region] = "requested"
    return outcome


@contextmanager
def region_client(url: str) -> Iterator[Celery]:
    """A Celery client of one region's Redis (its broker and its result backend), for a reconcile whose
    outcome is awaited; closed after."""
    from celery import Celery

    client = Celery("gco-tasks-cli", broker=url, backend=url, set_as_current=False)
    client.conf.update(
        task_serializer="json", result_serializer="json", accept_content=["json"], result_expires=3600
    )
    try:
        yield client
    finally:
        client.close()


def request(client: Celery, name: str, region: str, keep_result: bool = True) -> AsyncResult:
    """``reconcile_endpoint(name)`` on ``region``'s queue through ``client`` (``region_client``), its
    outcome kept in the region's result backend (for ``outcome``) when ``keep_result``."""
    with client.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, interval_start=0.5, timeout=CONNECT_TIMEOUT_SECONDS)
        return client.send_task(
            RECONCILE_TASK,
            args=[name],
            queue=queue_for_region(region),
            connection=connection,
            expires=MESSAGE_EXPIRES_SECONDS,
            ignore_result=not keep_result,
        )


def outcome(result: AsyncResult, timeout: float) -> tuple[bool, str]:
    """Wait up to ``timeout`` seconds for a ``request``'s outcome: (succeeded, one line saying what the
    reconcile did, its error, or that nothing came)."""
    try:
        value = result.get(timeout=timeout, propagate=False, interval=0.2)
    except Exception as exc:  # a timeout, or the region's Redis going away meanwhile (type only: URL)
        what = "no outcome" if type(exc).__name__ == "TimeoutError" else f"no outcome ({type(exc).__name__})"
        return False, f"{what} within {timeout:.0f}s: is the region's worker running? (task {result.id})"
    if result.successful() and isinstance(value, dict):
        return True, describe(value)
    detail = getattr(value, "result", None)
    if isinstance(detail, dict) and detail:
        return False, describe(detail)
    return False, f"failed: {value}"


#: What each kind of reconcile result means, as the CLI prints it.
KINDS: Final = {
    "applied": "applied",
    "noop": "in sync, nothing to change",
    "deleted": "deleted",
    "skipped_locked": "skipped: another reconcile of it was running (the region's next report says how)",
    "error": "error",
    "invalid": "invalid record",
    "orphan_removed": "no record: its objects were removed",
}


def describe(result: dict[str, object]) -> str:
    """A task result (``{"endpoint", "actions", "state", "result", "error"}``) as one line, e.g.
    ``applied (apply Deployment/x, apply Service/x); state creating``."""
    kind = str(result.get("result", "?"))
    line = KINDS.get(kind, kind)
    actions = result.get("actions")
    if isinstance(actions, list) and actions:
        line += f" ({', '.join(str(action) for action in actions)})"
    if result.get("state"):
        line += f"; state {result['state']}"
    if result.get("error"):
        line += f": {result['error']}"
    return line


def _send(url: str, region: str, name: str) -> None:
    from gco_tasks.worker.app import app  # Celery loads only when a nudge is configured

    with app.connection_for_write(url) as connection:
        connection.ensure_connection(max_retries=1, interval_start=0.5, timeout=CONNECT_TIMEOUT_SECONDS)
        app.send_task(
            RECONCILE_TASK,
            args=[name],
            queue=queue_for_region(region),
            connection=connection,
            expires=MESSAGE_EXPIRES_SECONDS,
            ignore_result=True,
        )
