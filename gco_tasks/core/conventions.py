"""Every name the fleet gives or looks for, in one place: object names, labels, annotations, selectors, the
order kinds are applied and deleted in, the queue and every Redis key.

Where it stands in the flow: under everything. More in docs/architecture.md.
"""

from __future__ import annotations

from typing import Final

# --- who writes ----------------------------------------------------------------------------------

#: Server-side apply field manager, and the value of ``app.kubernetes.io/managed-by``.
FIELD_MANAGER: Final = "gco-tasks"
#: The manager that holds a Deployment's ``spec.replicas`` while an HPA takes it over (``handover``).
HANDOVER_MANAGER: Final = "gco-tasks-handover"

# --- labels and annotations ----------------------------------------------------------------------

APP_LABEL: Final = "app"
PROJECT_LABEL: Final = "project"
PROJECT: Final = "gco"
TYPE_LABEL: Final = "gco.io/type"
INFERENCE_TYPE: Final = "inference"
ENDPOINT_LABEL: Final = "gco.io/endpoint"
CANARY_LABEL: Final = "gco.io/canary"
MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"

#: sha256 of an object's rendered content: equal hashes mean "in sync", with no further API call.
HASH_ANNOTATION: Final = "gco.io/desired-hash"
WEIGHTED_ROUTING_ANNOTATION: Final = "alb.ingress.kubernetes.io/actions.weighted-routing"
HEALTHCHECK_PATH_ANNOTATION: Final = "alb.ingress.kubernetes.io/healthcheck-path"
HEALTHCHECK_INTERVAL_ANNOTATION: Final = "alb.ingress.kubernetes.io/healthcheck-interval-seconds"
#: The Ingress backend that tells the AWS load balancer controller to use the weighted-routing action.
WEIGHTED_ROUTING_BACKEND: Final = "weighted-routing"

# --- object names and paths ----------------------------------------------------------------------

CANARY_SUFFIX: Final = "-canary"


def canary_name(endpoint: str) -> str:
    """The canary's Deployment and Service: ``{name}-canary``."""
    return f"{endpoint}{CANARY_SUFFIX}"


def ingress_name(endpoint: str) -> str:
    """The endpoint's Ingress on the shared ALB: ``inference-{name}``."""
    return f"inference-{endpoint}"


def public_path(endpoint: str) -> str:
    """Where the ALB serves the endpoint (GCO's default ``ingress_path``): ``/inference/{name}``."""
    return f"/inference/{endpoint}"


def endpoint_of_app(app: str, known_names: frozenset[str] | set[str]) -> str:
    """The endpoint an ``app`` label names: itself, or, for ``{name}-canary`` when ``{name}`` is a known
    endpoint and ``{name}-canary`` is not, that endpoint."""
    base = app.removesuffix(CANARY_SUFFIX)
    if app not in known_names and base != app and base in known_names:
        return base
    return app


# --- selectors -----------------------------------------------------------------------------------

#: Every inference object, ours and those GCO's own monitor created (which we adopt).
MANAGED_SELECTOR: Final = f"{TYPE_LABEL}={INFERENCE_TYPE}"


def endpoint_selector(endpoint: str) -> str:
    """One endpoint's objects, primary and canary (ours carry ``app`` too, as GCO's do)."""
    return f"{MANAGED_SELECTOR},{APP_LABEL} in ({endpoint},{canary_name(endpoint)})"


# --- kinds ---------------------------------------------------------------------------------------

#: Apply order: pods first, so a Service or Ingress never points at nothing for longer than needed.
APPLY_ORDER: Final = ("Deployment", "Service", "HorizontalPodAutoscaler", "Ingress")
#: Delete order: traffic first (Ingress), then scaling, then the Service, the pods last.
DELETE_ORDER: Final = ("Ingress", "HorizontalPodAutoscaler", "Service", "Deployment")
#: The kinds the fleet manages (and LISTs each cycle).
MANAGED_KINDS: Final = APPLY_ORDER


def apply_rank(kind: str) -> int:
    return APPLY_ORDER.index(kind) if kind in APPLY_ORDER else len(APPLY_ORDER)


def delete_rank(kind: str) -> int:
    return DELETE_ORDER.index(kind) if kind in DELETE_ORDER else len(DELETE_ORDER)


# --- queue and Redis keys ------------------------------------------------------------------------


def queue_for_region(region: str) -> str:
    """``gco.<region>``: the one queue per region that its workers serve."""
    return f"gco.{region}"


class RegionKeys:
    """The names of every Redis key the fleet uses for one region, all under ``gco:<region>:`` so
    regions sharing one Redis never collide."""

    def __init__(self, region: str) -> None:
        self.prefix = f"gco:{region}:"

    def endpoint_lock(self, name: str) -> str:
        return f"{self.prefix}endpoint:{name}"

    @property
    def fan_out_lock(self) -> str:
        return f"{self.prefix}fan-out"

    def pending(self, name: str) -> str:
        return f"{self.prefix}pending:{name}"

    def cycle(self, number: int) -> str:
        """Claimed by the first fan-out of a cycle (its resync slots are sent once)."""
        return f"{self.prefix}cycle:{number}"

    @property
    def kube_write_bucket(self) -> str:
        """The token bucket pacing the region's Kubernetes writes (``ratelimit``)."""
        return f"{self.prefix}kube-writes"

    @property
    def stream_positions(self) -> str:
        """The stream reader's last sequence number per shard of the table's stream (a hash)."""
        return f"{self.prefix}stream:positions"

    @property
    def stream_lock(self) -> str:
        """Held while this region's stream reader reads and enqueues (one reader at a time)."""
        return f"{self.prefix}stream:lock"

    @property
    def unready_since(self) -> str:
        return f"{self.prefix}watchdog:unready-since"

    @property
    def ingress_withheld(self) -> str:
        return f"{self.prefix}watchdog:ingress-withheld"

    @property
    def path_first_seen(self) -> str:
        """Per endpoint, its ingress path and when the fan-out first saw the record ask for it (a hash):
        the seniority on the shared load balancer, which a record cannot backdate (``paths``)."""
        return f"{self.prefix}paths:first-seen"

    @property
    def redbeat_prefix(self) -> str:
        """RedBeat's ``redbeat_key_prefix`` (its schedule is ``<prefix>:schedule``, its lock
        ``<prefix>:lock``)."""
        return f"{self.prefix}redbeat"
