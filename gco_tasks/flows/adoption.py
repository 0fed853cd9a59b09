"""Adopting an object GCO's monitor made: its field ownership handed over before the fleet's apply.

Where it stands in the flow: inside step 5 (apply) of ``reconciler``, for an object whose digest says GCO's
monitor still owns part of it (``ObservedObject.legacy``; the fan-out sees it in the LIST's
``managedFields``). More in docs/architecture.md.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

from gco_tasks.core.adoption import migration_patch, unowned_paths
from gco_tasks.core.ports import ClusterGets, ObjectPatches
from gco_tasks.core.rendering import object_key

log = logging.getLogger(__name__)


class AdoptionPorts(ClusterGets, ObjectPatches, Protocol): ...


def adopt(cluster: AdoptionPorts, desired: Mapping[str, Any]) -> bool:
    """Give the fleet's apply manager the fields GCO's monitor owns on the live twin of ``desired``
    (except those ``desired`` leaves to others, e.g. replicas the HPA owns); True when a patch was sent."""
    kind, name = object_key(desired)
    live = cluster.get_object(kind, name)
    patch = migration_patch(live, keep_unowned=unowned_paths(desired)) if live is not None else None
    if patch is None:
        return False
    cluster.patch_json(kind, name, patch)
    log.info("%s/%s: field ownership of GCO's monitor handed over to gco-tasks", kind, name)
    return True
