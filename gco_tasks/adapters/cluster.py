"""The Kubernetes gateway: the only module that talks to a cluster's API server.

Where it stands in the flow: step 3 (observe) and step 5 (apply) of ``reconcile_endpoint``, and the LISTs of
``fan_out`` and ``watchdog``. More in docs/architecture.md.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import urllib3
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from gco_tasks.adapters import gcpause, metric_labels, metrics
from gco_tasks.core.conventions import FIELD_MANAGER, MANAGED_KINDS
from gco_tasks.core.errors import GcoError, InfrastructureError, PermanentError, TransientError
from gco_tasks.core.ports import WritePacer

APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
#: Objects per LIST page: one request per kind per 1,000 endpoints. Measured on kube-apiserver 1.36 with
#: 10,000 Deployments (bench/results/lists-real-1.36.txt): 10 pages of 1,000 took 1.0 s against 1.6 s
#: for 20 of 500, both served from the watch cache (no etcd LIST).
LIST_PAGE_SIZE = 1000
#: The resourceVersion that makes an apply create-only (``ClusterGateway.create``): no object has it.
CREATE_ONLY_VERSION = "1"
#: How long every writer holds off after a 429 that named no Retry-After.
DEFAULT_HOLD_OFF_SECONDS = 1.0
#: libyaml's emitter when PyYAML has it (it does in our wheels), else the pure-Python one; a subclass
#: that also quotes what kube-apiserver's YAML reader (go-yaml v2 in sigs.k8s.io/yaml) takes for a
#: boolean or a number where PyYAML does not: ``y``/``n``, ``0o17``/``0X1F``, ``1e3``, ``1_0.5``. A plain
#: ``n`` as a toleration key or an env value reached the server as ``false`` (500 "expected string").
_YAML_DUMPER: Any = type("ApplyDumper", (getattr(yaml, "CSafeDumper", yaml.SafeDumper),), {})
for _tag, _pattern, _first in (
    ("bool", r"^(?:y|Y|n|N)$", "yYnN"),
    ("int", r"^[-+]?0[bBoOxX][0-9a-fA-F_]*$", "-+0"),
    ("float", r"^[-+]?(?:\.[0-9_]+|[0-9_]+(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9_]+)?$", "-+0123456789._"),
):
    _YAML_DUMPER.add_implicit_resolver(f"tag:yaml.org,2002:{_tag}", re.compile(_pattern), list(_first))
#: Never fold a line: a folded scalar is valid YAML, but there is no reason to make the server unfold it.
_NO_FOLDING = 2**31 - 1

log = logging.getLogger(__name__)


class ClusterError(GcoError):
    """A Kubernetes API call failed."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class TransientClusterError(ClusterError, TransientError):
    """Worth retrying: throttling (429), server errors (5xx), timeouts, connection failures."""


class PermanentClusterError(ClusterError, PermanentError):
    """A write refused (400, 403, 422 ...): retrying will not help; the message is what the API server
    said."""


class ClusterUnavailableError(ClusterError, InfrastructureError):
    """The cluster cannot be read at all (a LIST refused, no configuration): the region's setup is wrong."""


@dataclass(frozen=True)
class KindApi:
    """How to list, apply and delete one kind through the typed client."""

    kind: str
    plural: str
    api_class: type[Any]
    suffix: str  # e.g. "deployment" in list_namespaced_deployment
    group_path: str  # e.g. "apis/apps/v1": where the kind's REST paths start


KINDS: dict[str, KindApi] = {
    api.kind: api
    for api in (
        KindApi("Deployment", "deployments", client.AppsV1Api, "deployment", "apis/apps/v1"),
        KindApi("Service", "services", client.CoreV1Api, "service", "api/v1"),
        KindApi("Ingress", "ingresses", client.NetworkingV1Api, "ingress", "apis/networking.k8s.io/v1"),
        KindApi(
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
            client.AutoscalingV2Api,
            "horizontal_pod_autoscaler",
            "apis/autoscaling/v2",
        ),
        # Read only, for an unfinished rollout (``diagnosis``): never applied or deleted.
        KindApi("ReplicaSet", "replicasets", client.AppsV1Api, "replica_set", "apis/apps/v1"),
        KindApi("Pod", "pods", client.CoreV1Api, "pod", "api/v1"),
    )
}


def load_api_client() -> client.ApiClient:
    """In-cluster configuration first (the fleet's ServiceAccount), then ``KUBECONFIG`` / ~/.kube/config;
    ``ClusterUnavailableError`` when there is neither."""
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        _load_kube_config(configuration)
    configuration.retries = 0  # retries are the task's job (backoff + jitter), not urllib3's
    # Fix the proxy the environment gives now: otherwise the credentials' refresh hook, run before every
    # request, sets ``host`` again and the client re-reads every environment variable for a proxy
    # (about a tenth of a cold reconcile's CPU, profiled).
    configuration.proxy = configuration.proxy
    return client.ApiClient(configuration)


def _load_kube_config(configuration: client.Configuration) -> None:
    # Read KUBECONFIG now: the client's own default is fixed when the package is first imported.
    path = os.environ.get("KUBECONFIG") or None
    try:
        config.load_kube_config(config_file=path, client_configuration=configuration)  # type: ignore[no-untyped-call]
    except (config.ConfigException, OSError) as exc:
        message = f"no Kubernetes configuration (in-cluster or KUBECONFIG): {exc}"
        raise ClusterUnavailableError(message) from exc


class ClusterGateway:
    """Lists, applies and deletes the fleet's objects in one namespace."""

    def __init__(
        self,
        api_client: client.ApiClient,
        namespace: str,
        timeout_seconds: int = 30,
        pacer: WritePacer | None = None,
    ) -> None:
        self.api_client = api_client
        self.namespace = namespace
        self.timeout = timeout_seconds
        self.pacer = pacer  # None: writes are not paced (tests, one-off tools)
        self._apis: dict[str, Any] = {}

    def _api(self, kind: str) -> tuple[KindApi, Any]:
        spec = KINDS[kind]
        if kind not in self._apis:
            self._apis[kind] = spec.api_class(self.api_client)
        return spec, self._apis[kind]

    def _call(
        self, what: str, refused: type[ClusterError], fn: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Any:
        """Call the client; a 4xx other than 429 raises ``refused``, the rest is translated as transient."""
        kwargs.setdefault("_request_timeout", self.timeout)
        kwargs["_preload_content"] = False
        code = metric_labels.NO_RESPONSE
        try:
            response = fn(*args, **kwargs)
            code = metric_labels.kube_code(status=response.status)
        except ApiException as exc:
            code = metric_labels.kube_code(exc)
            error = _classify(what, exc, refused)
            if isinstance(error, TransientError) and error.status == 429 and self.pacer is not None:
                self.pacer.hold_off(error.retry_after or DEFAULT_HOLD_OFF_SECONDS)
            raise error from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise TransientClusterError(f"{what}: {type(exc).__name__}: {exc}") from exc
        finally:
            metrics.observe_kube_request(*request_labels(what), code)
        body = response.data
        with gcpause.paused():  # a LIST page is thousands of objects (see gcpause)
            return json.loads(body) if body else None

    def list_objects(self, label_selector: str, kinds: Iterable[str] = MANAGED_KINDS) -> list[dict[str, Any]]:
        """Every object of ``kinds`` matching ``label_selector``: one LIST per kind (more only past
        ``LIST_PAGE_SIZE`` objects), each object's ``kind`` filled in (LIST items omit it) and ``slim``."""
        return [obj for page in self.list_pages(label_selector, kinds) for obj in page]

    def list_pages(
        self, label_selector: str, kinds: Iterable[str] = MANAGED_KINDS
    ) -> Iterator[list[dict[str, Any]]]:
        """``list_objects`` one LIST page at a time (``LIST_PAGE_SIZE`` objects at most), each page
        requested only when the one before has been consumed: the fan-out digests a page and lets it go,
        so it never holds every object of the region at once."""
        for kind in kinds:
            yield from self._list_kind(kind, label_selector)

    def _list_kind(self, kind: str, label_selector: str) -> Iterator[list[dict[str, Any]]]:
        spec, api = self._api(kind)
        method = getattr(api, f"list_namespaced_{spec.suffix}")
        token: str | None = None
        while True:
            extra = {"_continue": token} if token else {}
            page = self._call(
                f"list {spec.plural}",
                ClusterUnavailableError,
                method,
                self.namespace,
                label_selector=label_selector,
                limit=LIST_PAGE_SIZE,
                **extra,
            )
            items = page.get("items", [])
            for item in items:
                item["kind"] = kind
                slim(item)
            token = (page.get("metadata") or {}).get("continue")
            del page
            yield items
            if not token:
                return

    def apply(
        self,
        obj: dict[str, Any],
        dry_run: bool = False,
        field_manager: str = FIELD_MANAGER,
        force: bool = True,
    ) -> dict[str, Any]:
        """Server-side apply of ``obj``: create or update in one call, and fields we no longer send are
        removed (this is what makes a canary rollback clean). ``dry_run``: validated and admitted by the
        API server, not stored. ``field_manager``/``force``: another manager, without taking fields from
        others (the replicas handover to an HPA); ``metadata.resourceVersion`` in ``obj`` makes it
        conditional (409 when the object changed: transient). The body is written by ``apply_body``
        (the typed client's own JSON is not always YAML), so the request is made one level below the
        typed API."""
        spec = KINDS[obj["kind"]]
        name = obj["metadata"]["name"]
        query: list[tuple[str, str]] = [("fieldManager", field_manager), ("force", str(force).lower())]
        if dry_run:
            query.append(("dryRun", "All"))
        self._paced()
        result: dict[str, Any] = self._call(
            f"apply {spec.kind}/{name}",
            PermanentClusterError,
            self._patch,
            spec,
            name,
            apply_body(obj),
            query,
        )
        return result

    def create(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        """Create ``obj`` only if no object of its kind and name exists: the created object, or None when
        one exists (whoever made it: the caller reads it by name to see whose it is). A success proves
        the object was absent, which no LIST can (an object without our labels is invisible to ours).

        A server-side apply made conditional on ``metadata.resourceVersion`` = ``CREATE_ONLY_VERSION``,
        which no object ever has (etcd's first write is revision 2): the API server creates the object
        when absent (the version of an object to be created is not checked) and answers 409 Conflict
        when one exists. Not a POST: an object created by POST keeps an ``Update`` entry of our field
        manager that owns every field it was created with, and a later apply that drops one of them
        (a canary's routing annotation after a rollback, an env var) would leave it in place; created by
        apply, the fields are owned by our ``Apply`` entry alone. One write, paced like any other."""
        spec = KINDS[obj["kind"]]
        name = obj["metadata"]["name"]
        body = {**obj, "metadata": {**obj["metadata"], "resourceVersion": CREATE_ONLY_VERSION}}
        query = [("fieldManager", FIELD_MANAGER), ("force", "true")]
        self._paced()
        try:
            created: dict[str, Any] = self._call(
                f"create {spec.kind}/{name}",
                PermanentClusterError,
                self._patch,
                spec,
                name,
                apply_body(body),
                query,
            )
        except TransientClusterError as exc:
            if exc.status == 409:
                return None
            raise
        return created

    def _patch(
        self, spec: KindApi, name: str, body: bytes, query: list[tuple[str, str]], **options: Any
    ) -> Any:
        """PATCH ``body`` (apply-patch+yaml) to one object; raises ``ApiException`` on an error status."""
        method, url, headers, _, _ = self.api_client.param_serialize(
            method="PATCH",
            resource_path=f"/{spec.group_path}/namespaces/{{namespace}}/{spec.plural}/{{name}}",
            path_params={"namespace": self.namespace, "name": name},
            query_params=query,
            header_params={"Content-Type": APPLY_CONTENT_TYPE, "Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        response = self.api_client.call_api(
            method, url, header_params=headers, body=body, _request_timeout=options.get("_request_timeout")
        )
        response.read()  # type: ignore[no-untyped-call]
        if not 200 <= response.status < 300:
            raise ApiException(http_resp=response)
        return response

    def replace_dry_run(self, obj: dict[str, Any]) -> dict[str, Any]:
        """What the API server would store if ``obj`` replaced its live twin (a PUT with ``dryRun=All``:
        defaulted, admitted and validated, never stored). ``gco-tasks diff`` uses it to show the object as
        it will be once the fields GCO's monitor owned are removed."""
        spec, api = self._api(obj["kind"])
        method = getattr(api, f"replace_namespaced_{spec.suffix}")
        name = obj["metadata"]["name"]
        result: dict[str, Any] = self._call(
            f"replace {spec.kind}/{name} (dry run)",
            PermanentClusterError,
            method,
            name,
            self.namespace,
            obj,
            dry_run="All",
        )
        return result

    def patch_json(self, kind: str, name: str, patch: list[dict[str, Any]]) -> dict[str, Any]:
        """A JSON patch (RFC 6902) of ``kind/name``: the hand-over of GCO's field ownership
        (``core.adoption.migration_patch``). A 409 (the object changed since it was read: the patch's
        resourceVersion guard) is transient: the reconcile is retried on a fresh read."""
        spec, api = self._api(kind)
        method = getattr(api, f"patch_namespaced_{spec.suffix}")
        try:
            result: dict[str, Any] = self._call(
                f"patch {kind}/{name}", PermanentClusterError, method, name, self.namespace, patch
            )
        except PermanentClusterError as exc:
            if exc.status == 409:
                raise TransientClusterError(str(exc), exc.status) from exc
            raise
        return result

    def delete(self, kind: str, name: str) -> bool:
        """Delete ``kind/name``; False when it was already gone (404 is success for a delete).

        Foreground propagation: the object stays (``deletionTimestamp`` set) until the garbage collector
        has removed its dependents, a Deployment's ReplicaSets and their pods. So the object is seen in
        the next LIST while its pods still terminate, the region reports ``deleting`` meanwhile, and
        ``deleted`` means the GPUs are free. (Background would drop the Deployment at once and report
        ``deleted`` while pods still run.)"""
        spec, api = self._api(kind)
        method = getattr(api, f"delete_namespaced_{spec.suffix}")
        self._paced()
        try:
            self._call(
                f"delete {kind}/{name}",
                PermanentClusterError,
                method,
                name,
                self.namespace,
                propagation_policy="Foreground",
            )
        except PermanentClusterError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def get_object(self, kind: str, name: str) -> dict[str, Any] | None:
        """``kind/name`` as the API server holds it now (with ``managedFields``); None when absent. Used
        where a decision needs the object itself: before creating one, and for the replicas handover."""
        spec, api = self._api(kind)
        method = getattr(api, f"read_namespaced_{spec.suffix}")
        try:
            found: dict[str, Any] = self._call(
                f"get {kind}/{name}", ClusterUnavailableError, method, name, self.namespace
            )
        except ClusterUnavailableError as exc:
            if exc.status == 404:
                return None
            raise
        found["kind"] = kind
        return found

    def _paced(self) -> None:
        """Wait for the region's next write slot (``WriteThrottled``, transient, when it is too far off)."""
        if self.pacer is not None:
            self.pacer.acquire()


def slim(obj: dict[str, Any]) -> dict[str, Any]:
    """A listed object without what nothing that reads LISTs uses: the field sets (``fieldsV1``) of our
    own Apply entry and of status updates. They are ~40 % of a listed object's bytes, and the fan-out
    holds every object of the region at once. The entries stay (manager, operation, subresource), and so
    do other managers' field sets (adopting GCO's objects reads those); a single object read by name
    (adoption, ``gco-tasks diff``) is never slimmed."""
    for entry in (obj.get("metadata") or {}).get("managedFields") or []:
        ours = entry.get("manager") == FIELD_MANAGER and entry.get("operation") == "Apply"
        if ours or entry.get("subresource") == "status":
            entry.pop("fieldsV1", None)
    return obj


def apply_body(obj: dict[str, Any]) -> bytes:
    """``obj`` as an apply-patch+yaml body kube-apiserver reads, ASCII only, in the object's own key
    order: JSON where JSON is YAML the server reads the same (as kubectl sends it; ``_as_json``),
    else block YAML from PyYAML's safe dumper (characters beyond the Basic Multilingual Plane as
    ``\\UXXXXXXXX`` escapes, never folded). Not the client's ``json.dumps`` as is: its UTF-16
    surrogate-pair escapes are valid JSON but not YAML, and the API server refuses the whole object (400
    "found invalid Unicode character escape code"), so one emoji in an env value would block an endpoint
    forever; and a JSON key longer than 1024 characters is no valid implicit YAML key, which the dumper
    writes as an explicit one. JSON costs a sixth of the YAML dump's CPU (0.05 ms for a Deployment,
    against 0.35)."""
    text = _as_json(obj)
    if text is None:
        text = yaml.dump(
            obj,
            Dumper=_YAML_DUMPER,
            allow_unicode=False,
            sort_keys=False,
            default_flow_style=False,
            width=_NO_FOLDING,
        )
    return text.encode("ascii")


#: JSON text that is no YAML kube-apiserver reads as the same value: a UTF-16 surrogate escape (a
#: character beyond the BMP). Every other character beyond ASCII, and every control character (DEL
#: too), JSON writes as a ``\\uXXXX`` escape that YAML reads the same.
_NOT_YAML = re.compile(r"\\ud[89a-fA-F]")
#: The longest implicit key YAML allows (a JSON key is one, quotes and escapes included).
_YAML_KEY_LIMIT = 1024


def _as_json(obj: Any) -> str | None:
    """``obj`` as ASCII JSON when that is YAML kube-apiserver reads as the same value; None when
    it might not be: a float (go-yaml and JSON disagree on some forms), a key too long to be an
    implicit YAML key, a surrogate escape (``_NOT_YAML``), or a value JSON cannot write."""
    if not _json_is_yaml(obj):
        return None
    try:
        text = json.dumps(obj, ensure_ascii=True, allow_nan=False)  # ", " and ": ": YAML 1.1 flow too
    except (TypeError, ValueError):
        return None
    return None if _NOT_YAML.search(text) else text


def _json_is_yaml(value: Any) -> bool:
    if isinstance(value, dict):
        return all(_short_key(key) and _json_is_yaml(item) for key, item in value.items())
    if isinstance(value, list):
        return all(_json_is_yaml(item) for item in value)
    return value is None or isinstance(value, str | int)  # bool is an int


def _short_key(key: Any) -> bool:
    """A string key whose JSON form (quotes and escapes: at most 6 characters each, or 12 beyond the
    BMP) is within ``_YAML_KEY_LIMIT``; measured only when it could be over."""
    if not isinstance(key, str):
        return False
    return len(key) * 12 + 2 <= _YAML_KEY_LIMIT or len(json.dumps(key)) <= _YAML_KEY_LIMIT


def request_labels(what: str) -> tuple[str, str]:
    """(verb, resource) of a request the gateway describes as ``list deployments`` or
    ``apply Deployment/name``: the metric labels of ``gco_kube_requests_total``."""
    verb, _, target = what.partition(" ")
    kind = target.split("/", 1)[0]
    return verb, KINDS[kind].plural if kind in KINDS else kind


def _classify(what: str, exc: ApiException, refused: type[ClusterError]) -> ClusterError:
    status = int(exc.status or 0)
    message = _status_message(exc)
    text = f"{what}: {status} {exc.reason}: {message}" if message else f"{what}: {status} {exc.reason}"
    if status in (409, 429) or status >= 500 or status == 0:  # 409: changed meanwhile, read again
        transient = TransientClusterError(text, status)
        transient.retry_after = retry_after_seconds(exc)
        return transient
    return refused(text, status)


def retry_after_seconds(exc: ApiException) -> float | None:
    """The delay a throttled (429) or unavailable (503) API server asked for: its ``Retry-After`` header
    (seconds), else the Status body's ``details.retryAfterSeconds``; None when it named none."""
    headers = exc.headers or {}
    header = next((value for key, value in headers.items() if key.lower() == "retry-after"), None)
    candidates: list[Any] = [header]
    try:
        body = json.loads(exc.body or b"{}")
    except (TypeError, ValueError):
        body = {}
    if isinstance(body, dict):
        candidates.append((body.get("details") or {}).get("retryAfterSeconds"))
    for value in candidates:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            continue
        if seconds >= 0:
            return seconds
    return None


def _status_message(exc: ApiException) -> str:
    try:
        body = json.loads(exc.body or b"{}")
    except (TypeError, ValueError):
        return str(exc.body or "")[:500]
    return str(body.get("message", "")) if isinstance(body, dict) else ""
