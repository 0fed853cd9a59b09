"""What `gco-tasks endpoints list` and `status` print: items in, rich tables and lines out.

Where it stands in the flow: outside the fleet, at the operator's terminal; the verbs live in
``cli.endpoints``.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from gco_tasks.endpoints import Endpoint, InvalidEndpointError, RecordHeader

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


def region_table(endpoint: Endpoint) -> Table:
    table = Table("REGION", "STATE", "READY", "DESIRED", "LAST SYNC", "ERROR")
    for region, report in sorted(endpoint.region_status.items()):
        table.add_row(
            region,
            report.state,
            str(report.replicas_ready),
            str(report.replicas_desired),
            report.last_sync or "-",
            report.error or "",
        )
    return table


def print_endpoint(endpoint: Endpoint) -> None:
    spec = endpoint.spec
    console.print(f"[bold]Endpoint:[/bold] {endpoint.endpoint_name}", highlight=False)
    console.print(f"  Desired state: {endpoint.desired_state}", highlight=False)
    console.print(f"  Image:         {spec.image}", highlight=False, markup=False)
    console.print(
        f"  Replicas:      {spec.replicas} (GPUs {spec.gpu_count} {spec.accelerator})", highlight=False
    )
    console.print(f"  Regions:       {', '.join(endpoint.target_regions)}", highlight=False, markup=False)
    console.print(f"  Ingress path:  {endpoint.ingress_path}", highlight=False, markup=False)
    if spec.canary is not None:
        console.print(
            f"  Canary:        {spec.canary.image} ({spec.canary.weight}%, {spec.canary.replicas} replicas)",
            highlight=False,
            markup=False,
        )
    console.print()
    if endpoint.region_status:
        console.print(region_table(endpoint))
    else:
        console.print("(Waiting for the fleet to sync)")


def print_header(header: RecordHeader) -> None:
    console.print(f"Endpoint:      {header.endpoint_name}", highlight=False, markup=False)
    console.print(f"  Desired state: {header.desired_state}", highlight=False, markup=False)
    console.print(f"  Regions:       {', '.join(header.target_regions)}", highlight=False, markup=False)
