"""Right after the CLI changes an endpoint's record, ask each target region's fleet to reconcile it now
instead of at its next cycle (optional: ``REGION_REDIS_URLS``; off when empty).

Where it stands in the flow: outside the fleet, after ``gco-tasks endpoints ...`` wrote the table. More
in docs/architecture.md.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from gco_tasks.core.conventions import queue_for_region

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
