"""Drift, field by field (``gco_tasks.core.drift``): what counts as a difference between a rendered object and
its live twin, with the API server's defaults and normalisation understood, and the digest a fan-out
message carries. Live objects here are shaped as kube-apiserver 1.36 returns them."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from gco_tasks.core.drift import MAX_PATHS, differences, digest, digests, in_sync
from gco_tasks.core.records import Endpoint
from gco_tasks.core.rendering import RenderOptions, render_endpoint

REGION = "us-east-1"


def rendered(**spec: Any) -> list[dict[str, Any]]:
    item = {
        "endpoint_name": "demo",
        "desired_state": "running",
        "target_regions": [REGION],
        "spec": {"image": "vllm/vllm-openai:v0.6.3", "env": {"B": "2", "A": ""}, **spec},
    }
    return render_endpoint(Endpoint.from_item(item), REGION, RenderOptions())


def as_served(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` as the API server returns it: defaults filled in, quantities canonical, empty values
    dropped, server fields and other managers' annotations added."""
    live = copy.deepcopy(obj)
    live["metadata"].update(uid="u-1", resourceVersion="9", generation=3, managedFields=[])
    live["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = "3"
    live["metadata"]["labels"]["team"] = "x"
    if obj["kind"] == "Deployment":
        spec = live["spec"]
        spec.update(progressDeadlineSeconds=600, revisionHistoryLimit=10, strategy={"type": "RollingUpdate"})
        pod = spec["template"]["spec"]
        for field, default in {
            "dnsPolicy": "ClusterFirst",
            "restartPolicy": "Always",
            "securityContext": {},
        }.items():
            pod.setdefault(field, default)
        main = pod["containers"][0]
        main.update(imagePullPolicy="IfNotPresent", terminationMessagePath="/dev/termination-log")
        main["livenessProbe"].update(timeoutSeconds=1, successThreshold=1)
        main["livenessProbe"]["httpGet"]["scheme"] = "HTTP"
        main["env"] = [{"name": "B", "value": "2"}, {"name": "A"}]  # "" is dropped
        main["ports"][0].pop("protocol")  # as if the default had been left out
        live["status"] = {"replicas": 1, "readyReplicas": 1}
    if obj["kind"] == "Service":
        live["spec"].update(clusterIP="10.96.0.12", sessionAffinity="None", internalTrafficPolicy="Cluster")
    return live


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(obj for obj in objects if obj["kind"] == kind)


def test_what_the_api_server_adds_or_normalises_is_no_drift() -> None:
    for obj in rendered():
        assert differences(obj, as_served(obj)) == [], obj["kind"]


@pytest.mark.parametrize(
    ("resource", "ours", "theirs"),
    [
        ("cpu", "1", "1000m"),
        ("cpu", "500m", "0.5"),
        ("cpu", "2.5", "2500m"),
        ("memory", "4Gi", "4294967296"),
        ("memory", "1024Mi", "1Gi"),
    ],
)
def test_quantities_compare_by_value(resource: str, ours: str, theirs: str) -> None:
    limits = {"cpu": "8", "memory": "64Gi"}
    desired = by_kind(rendered(resources={"requests": {resource: ours}, "limits": limits}), "Deployment")
    live = as_served(desired)
    requests = main(live)["resources"]["requests"]
    requests[resource] = theirs
    assert in_sync(desired, live)
    requests[resource] = "3"
    assert differences(desired, live) == [
        f"spec.template.spec.containers[inference].resources.requests.{resource}"
    ]


def test_an_int_and_the_same_number_as_a_string_are_one_value() -> None:
    service = by_kind(rendered(), "Service")
    live = as_served(service)
    live["spec"]["ports"][0]["targetPort"] = "8000"
    assert in_sync(service, live)
    live["spec"]["ports"][0]["targetPort"] = "http"
    assert differences(service, live) == ["spec.ports[80].targetPort"]


def test_every_field_we_set_is_watched() -> None:
    desired = by_kind(rendered(replicas=2, args=["--x"]), "Deployment")
    edits = {
        "spec.replicas": lambda d: d["spec"].update(replicas=5),
        "spec.template.spec.containers[inference].image": lambda d: main(d).update(image="evil"),
        "spec.template.spec.containers[inference].env[B].value": lambda d: main(d)["env"][0].update(
            value="9"
        ),
        "spec.template.spec.containers[inference].args": lambda d: main(d).update(args=["--y"]),
        "metadata.annotations.gco.io/desired-hash": lambda d: d["metadata"]["annotations"].update(
            {"gco.io/desired-hash": "x"}
        ),
        "metadata.labels.gco.io/endpoint": lambda d: d["metadata"]["labels"].pop("gco.io/endpoint"),
        "spec.template.spec.tolerations": lambda d: d["spec"]["template"]["spec"]["tolerations"].append(
            {"key": "k", "operator": "Exists"}
        ),
    }
    for path, edit in edits.items():
        live = as_served(desired)
        edit(live)
        assert differences(desired, live) == [path]


def main(deployment: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


def test_what_others_set_is_left_alone_but_atomic_fields_are_ours_whole() -> None:
    desired = by_kind(rendered(gpu_count=1), "Deployment")
    live = as_served(desired)
    live["metadata"]["annotations"]["example.com/owner"] = "team-x"
    live["spec"]["template"]["metadata"]["annotations"] = {"kubectl.kubernetes.io/restartedAt": "now"}
    main(live)["env"].append({"name": "INJECTED", "value": "1"})  # keyed list: another manager's element
    live["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "envoy"})
    assert in_sync(desired, live)
    live["spec"]["template"]["spec"]["nodeSelector"]["zone"] = "a"  # atomic map: the next apply resets it
    assert differences(desired, live) == ["spec.template.spec.nodeSelector"]


def test_a_missing_element_or_object_part_is_drift() -> None:
    desired = by_kind(rendered(), "Deployment")
    live = as_served(desired)
    main(live)["env"] = [{"name": "A"}]
    del live["spec"]["template"]["spec"]["serviceAccountName"]
    assert differences(desired, live) == [
        "spec.template.spec.serviceAccountName",
        "spec.template.spec.containers[inference].env[B]",
    ]


def test_ingress_rules_and_hpa_metrics_are_atomic() -> None:
    objects = rendered(autoscaling={"enabled": True, "min_replicas": 1, "max_replicas": 3})
    ingress, hpa = by_kind(objects, "Ingress"), by_kind(objects, "HorizontalPodAutoscaler")
    live = as_served(ingress)
    live["spec"]["rules"].append({"http": {"paths": []}})
    assert differences(ingress, live) == ["spec.rules"]
    live = as_served(hpa)
    live["spec"]["maxReplicas"] = 9
    live["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] = 50
    assert differences(hpa, live) == [
        "spec.maxReplicas",
        "spec.metrics[0].resource.target.averageUtilization",
    ]


def test_replicas_left_to_the_hpa_are_not_ours() -> None:
    desired = by_kind(
        rendered(autoscaling={"enabled": True, "min_replicas": 1, "max_replicas": 3}), "Deployment"
    )
    assert "replicas" not in desired["spec"]
    live = as_served(desired)
    live["spec"]["replicas"] = 3
    assert in_sync(desired, live)


def test_the_digest_says_what_drifted_at_most_a_few_paths_and_whether_gco_owns_part_of_it() -> None:
    desired = by_kind(rendered(), "Deployment")
    live = as_served(desired)
    for index in range(MAX_PATHS + 3):
        live["metadata"]["labels"].pop("app", None)
        live["metadata"]["annotations"][f"x{index}"] = "y"
    main(live).update(image="a", args=["b"], command=["c"], env=[], ports=[], resources={})
    found = digest(live, desired)
    assert found.kind == "Deployment" and found.ready_replicas == 1
    assert len(found.drift) == MAX_PATHS and not found.legacy
    live["metadata"]["managedFields"] = [
        {
            "manager": "OpenAPI-Generator",
            "operation": "Update",
            "fieldsV1": {"f:metadata": {"f:labels": {"f:gco.io/type": {}}}},
        }
    ]
    assert digest(live, desired).legacy
    assert digest(live, None).drift == ()  # not wanted: it will be deleted, drift is moot
    assert [d.key for d in digests([as_served(o) for o in rendered()], rendered())] == [
        ("Deployment", "demo"),
        ("Service", "demo"),
        ("Ingress", "inference-demo"),
    ]
