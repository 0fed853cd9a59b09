"""Rendering: one endpoint record and one region in, the exact Kubernetes objects that should exist out.

Where it stands in the flow: step 2 of reconciling one endpoint (``desired = render(endpoint, region)``).
Pure. ``render`` assembles the set; ``deployment``, ``traffic`` (Service, Ingress), ``autoscaling``
(HPA) and ``resources`` (container requests and limits) render one kind each; ``workload`` holds what
they share. Every name and label comes from ``gco_tasks.core.conventions``.
"""

from __future__ import annotations

from gco_tasks.core.rendering.render import content_hash, desired_objects, object_key, render_endpoint
from gco_tasks.core.rendering.workload import Obj, RenderOptions

__all__ = ["Obj", "RenderOptions", "content_hash", "desired_objects", "object_key", "render_endpoint"]
