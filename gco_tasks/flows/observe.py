"""What one reconcile observes: the fan-out's hint, checked wherever it could mislead, or the endpoint's own
objects read by name.

Where it stands in the flow: step 3 of ``reconciler`` (after the record's consistent read and the render).
More in docs/architecture.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any

from gco_tasks.core import conventions as names
from gco_tasks.core.drift import digest
from gco_tasks.core.hint import Hint
from gco_tasks.core.ownership import is_ours
from gco_tasks.core.plan import ObservedObject, Plan
from gco_tasks.core.ports import ClusterGets
from gco_tasks.core.rendering import object_key
from gco_tasks.flows.concurrently import run_all

log = logging.getLogger(__name__)

Key = tuple[str, str]
Planner = Callable[[list[ObservedObject]], Plan]


class ReadsOnce:
    """One reconcile's reads by name, each object read at most once before the reconcile writes: the
    path check, ``observe`` and the ownership check may all ask for the same object."""

    def __init__(self, cluster: ClusterGets) -> None:
        self._cluster = cluster
        self._answers: dict[Key, dict[str, Any] | None] = {}

    def get_object(self, kind: str, name: str) -> dict[str, Any] | None:
        key = (kind, name)
        if key not in self._answers:
            self._answers[key] = self._cluster.get_object(kind, name)
        return self._answers[key]


# --------------------------------------------------------------------------- the endpoint's objects


def candidate_keys(name: str) -> list[Key]:
    """Every object endpoint ``name`` can have, by kind and name (in apply order)."""
    canary = names.canary_name(name)
    return [
        ("Deployment", name),
        ("Deployment", canary),
        ("Service", name),
        ("Service", canary),
        ("HorizontalPodAutoscaler", name),
        ("Ingress", names.ingress_name(name)),
    ]


def read_digests(
    cluster: ClusterGets, keys: Iterable[Key], name: str, desired: Sequence[Mapping[str, Any]]
) -> list[ObservedObject]:
    """GET each of ``keys`` (together: ``concurrently``); the digests (with drift against ``desired``)
    of those that exist and are endpoint ``name``'s by their labels (``ownership.is_ours``: an object
    that merely has the name is not ours to delete)."""
    wanted = {object_key(obj): obj for obj in desired}
    keys = list(keys)
    answers = run_all([partial(cluster.get_object, kind, object_name) for kind, object_name in keys])
    found: list[ObservedObject] = []
    for (kind, object_name), answer in zip(keys, answers, strict=True):
        if answer.error is not None:
            raise answer.error
        live = answer.value
        if live is not None and is_ours(live, name):
            found.append(digest(live, wanted.get((kind, object_name))))
    return found


def observe(
    cluster: ClusterGets,
    name: str,
    desired: Sequence[Mapping[str, Any]],
    hint: Hint | None,
    fresh: bool,
    planner: Planner,
) -> list[ObservedObject]:
    """The endpoint's live objects as this reconcile may rely on them (docs/architecture.md).
    ``planner`` is the reconcile's own pure plan, used to tell which hinted objects matter."""
    candidates = candidate_keys(name)
    if hint is None:
        return read_digests(cluster, candidates, name, desired)
    allowed = set(candidates)
    hinted = list({o.key: o for o in hint.observed if o.key in allowed}.values())
    plan = planner(hinted)
    applied = {object_key(obj) for obj in plan.apply}
    named = {o.key for o in hinted}
    # Written over, deleted, or reported (the Deployments): never taken on trust.
    verify = {*plan.delete, *(named & applied), *(key for key in named if key[0] == "Deployment")}
    if not fresh:  # what it calls in sync may have changed since; what it calls missing, create proves
        verify |= named
    kept = [o for o in hinted if o.key not in verify]
    return kept + read_digests(cluster, [key for key in candidates if key in verify], name, desired)
