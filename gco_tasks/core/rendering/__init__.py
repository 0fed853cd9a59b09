"""Rendering: one endpoint record and one region in, the exact Kubernetes objects that should exist out.

Where it stands in the flow: step 2 of reconciling one endpoint (``desired = render(endpoint, region)``).
More in docs/architecture.md.
"""

from __future__ import annotations

from gco_tasks.core.rendering.render import content_hash, desired_objects, object_key, render_endpoint
from gco_tasks.core.rendering.workload import Obj, RenderOptions

__all__ = ["Obj", "RenderOptions", "content_hash", "desired_objects", "object_key", "render_endpoint"]
