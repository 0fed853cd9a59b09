"""The region policy at the CLI's door: a spec the fleet would refuse (over a cap, a keyless toleration) is
refused before it is written.

Where it stands in the flow: outside the fleet, in ``gco-tasks endpoints`` (deploy, scale, canary and every
other spec edit), before the table is written. More in docs/architecture.md.
"""

from __future__ import annotations

from gco_tasks.cli.support import fail, settings_or_fail
from gco_tasks.core.records import EndpointSpec, InvalidEndpointError
from gco_tasks.core.rendering import RenderOptions
from gco_tasks.core.rendering.policy import EndpointPolicy, Problem, policy_problems


def door_policy() -> EndpointPolicy:
    """The policy from this process's environment (a bad variable exits 1 naming it)."""
    return RenderOptions.from_settings(settings_or_fail()).policy


def admit(spec: EndpointSpec, name: str, before: EndpointSpec | None = None) -> EndpointSpec:
    """``spec`` if the policy accepts everything it adds to ``before``; else exit 1 naming each field."""
    policy = door_policy()
    added = [
        p for p in _problems(spec, name, policy) if before is None or p not in _problems(before, name, policy)
    ]
    if added:
        fail(str(InvalidEndpointError(added, name)))
    return spec


def _problems(spec: EndpointSpec, name: str, policy: EndpointPolicy) -> list[Problem]:
    try:
        return policy_problems(spec, name, policy)
    except InvalidEndpointError as exc:  # resources Kubernetes would refuse: refused here as well
        return exc.problems
