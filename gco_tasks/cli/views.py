"""What `gco-tasks endpoints list` prints: items in, a rich table out.

Where it stands in the flow: outside the fleet, at the operator's terminal; the verbs live in
``cli.endpoints`` (``status`` has its own view, ``cli.status_view``).
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from gco_tasks.core.records import Endpoint, InvalidEndpointError, RecordHeader

console = Console(soft_wrap=False)


def endpoints_table(items: list[dict[str, Any]]) -> Table:
    table = Table("NAME", "STATE", "REGIONS", "IMAGE", "REPLICAS", "READY", "CREATED")
    for item in items:
        table.add_row(*_list_row(item))
    return table


def _list_row(item: dict[str, Any]) -> list[str]:
    try:
        endpoint = Endpoint.from_item(item)
    except InvalidEndpointError:
        header = RecordHeader.from_item(item) if isinstance(item.get("endpoint_name"), str) else None
        name = header.endpoint_name if header else repr(item.get("endpoint_name"))
        return [name, "invalid", ", ".join(header.target_regions if header else []), "-", "-", "-", "-"]
    ready = sum(s.replicas_ready for s in endpoint.region_status.values())
    desired = sum(s.replicas_desired for s in endpoint.region_status.values())
    return [
        endpoint.endpoint_name,
        endpoint.desired_state,
        ", ".join(endpoint.target_regions),
        endpoint.spec.image,
        str(endpoint.spec.replicas),
        f"{ready}/{desired}",
        endpoint.created_at or "-",
    ]
