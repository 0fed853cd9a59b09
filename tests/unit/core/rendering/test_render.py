"""Rendering, behaviour by behaviour: GCO's monitor's objects field by field, and each of its defects
that rendering fixes (canary path and image, stale weighted routing, HPA vs replicas, stopped, shell).

Records are built the way the fleet gets them: an item in the table's shape through ``Endpoint.from_item``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from gco_tasks.core.config import load_settings
from gco_tasks.core.conventions import (
    ENDPOINT_LABEL,
    HASH_ANNOTATION,
    MANAGED_SELECTOR,
    WEIGHTED_ROUTING_ANNOTATION,
)
from gco_tasks.core.records import Endpoint, InvalidEndpointError
from gco_tasks.core.rendering import (
    RenderOptions,
    content_hash,
    object_key,
    render_endpoint,
)

REGION = "us-east-1"
VLLM = "vllm/vllm-openai:v0.6.3"
Obj = dict[str, Any]


def endpoint(name: str = "demo", state: str = "running", **spec: Any) -> Endpoint:
    item: dict[str, Any] = {
        "endpoint_name": name,
        "desired_state": state,
        "target_regions": [REGION, "eu-west-1"],
        "namespace": "gco-inference",
        "spec": {"image": VLLM, **spec},
        "ingress_path": f"/inference/{name}",
    }
    return Endpoint.from_item(item)


def render(ep: Endpoint, region: str = REGION, options: RenderOptions | None = None) -> list[Obj]:
    return render_endpoint(ep, region, options or RenderOptions())


def by_key(objects: list[Obj]) -> dict[tuple[str, str], Obj]:
    return {object_key(obj): obj for obj in objects}


def get(objects: list[Obj], kind: str, name: str) -> Obj:
    return by_key(objects)[(kind, name)]


def container(objects: list[Obj], name: str = "demo") -> Obj:
    result: Obj = get(objects, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]
    return result


def pod(objects: list[Obj], name: str = "demo") -> Obj:
    result: Obj = get(objects, "Deployment", name)["spec"]["template"]["spec"]
    return result


# ----------------------------------------------------------------------------- which objects


def test_running_endpoint_renders_deployment_service_ingress_in_apply_order() -> None:
    keys = [object_key(obj) for obj in render(endpoint())]
    assert keys == [("Deployment", "demo"), ("Service", "demo"), ("Ingress", "inference-demo")]


def test_deploying_renders_like_running() -> None:
    assert render(endpoint(state="deploying")) == render(endpoint(state="running"))


@pytest.mark.parametrize("region, state", [("ap-south-1", "running"), (REGION, "deleted")])
def test_nothing_for_an_untargeted_region_or_a_deleted_endpoint(region: str, state: str) -> None:
    assert render(endpoint(state=state), region) == []


def test_every_object_carries_gco_labels_endpoint_label_and_its_own_hash() -> None:
    objects = render(
        endpoint(canary={"image": "vllm/vllm-openai:v0.7", "weight": 20}, autoscaling={"enabled": True})
    )
    assert len(objects) == 6
    for obj in objects:
        labels = obj["metadata"]["labels"]
        assert labels["project"] == "gco"
        assert labels["gco.io/type"] == "inference"
        assert labels[ENDPOINT_LABEL] == "demo"
        assert labels["app.kubernetes.io/managed-by"] == "gco-tasks"
        assert labels["app"] in {"demo", "demo-canary"}
        assert obj["metadata"]["namespace"] == "gco-inference"
        assert obj["metadata"]["annotations"][HASH_ANNOTATION] == content_hash(obj)


def test_rendering_is_deterministic_and_results_are_independent() -> None:
    ep = endpoint(env={"B": "2", "A": "1"}, canary={"image": "x/y:1"})
    first = render(ep)
    first[0]["spec"]["template"]["spec"]["containers"][0]["image"] = "mutated"
    assert render(ep) == render(ep)
    assert render(ep)[0]["spec"]["template"]["spec"]["containers"][0]["image"] == VLLM


# ----------------------------------------------------------------------------- Deployment parity


def test_deployment_parity_with_gco() -> None:
    objects = render(endpoint(replicas=2))
    deployment = get(objects, "Deployment", "demo")
    assert deployment["apiVersion"] == "apps/v1"
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["selector"] == {"matchLabels": {"app": "demo"}}
    assert deployment["spec"]["template"]["metadata"]["labels"]["app"] == "demo"
    assert pod(objects)["serviceAccountName"] == "gco-service-account"
    main = container(objects)
    assert main["name"] == "inference"
    assert main["ports"] == [{"containerPort": 8000, "protocol": "TCP"}]  # GCO's, with the default spelt out


def test_pod_template_labels_are_gcos_exactly() -> None:
    """Adopting a region from GCO's monitor must not change any pod template that means the same: the
    fleet's own labels are on the objects' metadata only."""
    objects = render(endpoint())
    deployment = get(objects, "Deployment", "demo")
    assert deployment["spec"]["template"]["metadata"] == {
        "labels": {"app": "demo", "project": "gco", "gco.io/type": "inference"}
    }
    assert deployment["metadata"]["labels"][ENDPOINT_LABEL] == "demo"
    assert deployment["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "gco-tasks"


def test_probes_keep_gcos_timings() -> None:
    main = container(render(endpoint(image="nginx:1.27", health_check_path="/ready")))
    assert main["livenessProbe"] == {
        "httpGet": {"path": "/ready", "port": 8000},
        "initialDelaySeconds": 120,
        "periodSeconds": 15,
        "failureThreshold": 5,
    }
    assert main["readinessProbe"] == {
        "httpGet": {"path": "/ready", "port": 8000},
        "initialDelaySeconds": 30,
        "periodSeconds": 10,
    }


@pytest.mark.parametrize(
    "image",
    [VLLM, "ghcr.io/huggingface/text-generation-inference:2.4", "registry.local/TGI-server:1", "x/VLLM:2"],
)
def test_root_path_added_for_vllm_and_tgi_images_and_probes_follow_it(image: str) -> None:
    main = container(render(endpoint(image=image)))
    assert main["args"] == ["--root-path", "/inference/demo"]
    assert main["livenessProbe"]["httpGet"]["path"] == "/inference/demo/health"


def test_root_path_appended_to_existing_args() -> None:
    main = container(render(endpoint(args=["--model", "/models/demo"])))
    assert main["args"] == ["--model", "/models/demo", "--root-path", "/inference/demo"]


@pytest.mark.parametrize("args", [["--root-path", "/custom"], ["--root-path=/custom", "--x"]])
def test_root_path_not_added_twice(args: list[str]) -> None:
    main = container(render(endpoint(args=args)))
    assert main["args"] == args
    assert main["readinessProbe"]["httpGet"]["path"] == "/inference/demo/health"


def test_no_root_path_when_a_command_is_given_or_the_server_is_unknown() -> None:
    with_command = container(render(endpoint(command=["python", "-m", "serve"], args=["--port", "8000"])))
    assert with_command["command"] == ["python", "-m", "serve"]
    assert with_command["args"] == ["--port", "8000"]
    assert with_command["livenessProbe"]["httpGet"]["path"] == "/health"
    triton = container(render(endpoint(image="nvcr.io/nvidia/tritonserver:24.08-py3")))
    assert "args" not in triton and "command" not in triton
    assert triton["livenessProbe"]["httpGet"]["path"] == "/health"


def test_default_resources_plus_one_gpu() -> None:
    assert container(render(endpoint()))["resources"] == {
        "requests": {"cpu": "1", "memory": "4Gi", "nvidia.com/gpu": "1"},
        "limits": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"},
    }


def test_given_resources_replace_defaults_and_neuron_devices_are_requested() -> None:
    objects = render(
        endpoint(accelerator="neuron", gpu_count=2, resources={"requests": {"cpu": 8, "memory": "32Gi"}})
    )
    assert container(objects)["resources"] == {
        "requests": {"cpu": "8", "memory": "32Gi", "aws.amazon.com/neuron": "2"},
        # GCO's default limits (cpu 4, memory 16Gi) give way to the larger requests: Kubernetes refuses
        # a request above its limit, which GCO's monitor learnt from a 422 on every cycle.
        "limits": {"cpu": "8", "memory": "32Gi", "aws.amazon.com/neuron": "2"},
    }
    assert pod(objects)["tolerations"][0]["key"] == "aws.amazon.com/neuron"
    assert pod(objects)["nodeSelector"] == {"accelerator": "neuron"}


def test_default_requests_give_way_to_smaller_given_limits() -> None:
    resources = container(
        render(endpoint(gpu_count=0, resources={"limits": {"cpu": "500m", "memory": "8Gi"}}))
    )
    assert resources["resources"] == {
        "requests": {"cpu": "500m", "memory": "4Gi"},
        "limits": {"cpu": "500m", "memory": "8Gi"},
    }


@pytest.mark.parametrize(
    "resources, field",
    [
        ({"requests": {"cpu": "2"}, "limits": {"cpu": "1500m"}}, "spec.resources.requests.cpu"),
        ({"requests": {"memory": "-1Gi"}}, "spec.resources.requests.memory"),
        ({"limits": {"not a name": "1"}}, "spec.resources.limits.not a name (key)"),
        ({"requests": {"x.io/dev": "1"}, "limits": {"x.io/dev": "2"}}, "spec.resources.requests.x.io/dev"),
    ],
)
def test_resources_kubernetes_would_refuse_are_an_error_naming_the_field(resources: Obj, field: str) -> None:
    with pytest.raises(InvalidEndpointError) as caught:
        render(endpoint(resources=resources))
    assert [path for path, _ in caught.value.problems] == [field]
    assert "demo" in str(caught.value)


def test_extended_resource_requests_are_limited_alike() -> None:
    resources = container(render(endpoint(gpu_count=0, resources={"requests": {"vpc.amazonaws.com/efa": 1}})))
    assert resources["resources"]["limits"]["vpc.amazonaws.com/efa"] == "1"


def test_cpu_only_endpoint_has_no_devices_and_no_default_node_selector() -> None:
    objects = render(endpoint(gpu_count=0))
    resources = container(objects)["resources"]
    assert "nvidia.com/gpu" not in resources["requests"] and "nvidia.com/gpu" not in resources["limits"]
    assert "nodeSelector" not in pod(objects)
    assert pod(objects)["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}
    ]


def test_spec_tolerations_are_honoured_after_the_accelerator_one_without_duplicates() -> None:
    own = {
        "key": "node.kubernetes.io/unreachable",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 60,
    }
    gpu = {"key": "nvidia.com/gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}
    tolerations = pod(render(endpoint(tolerations=[own, gpu])))["tolerations"]
    assert tolerations == [gpu, own]


def test_node_selector_from_spec_wins_and_capacity_type_is_added() -> None:
    selector = pod(render(endpoint(node_selector={"pool": "a10g"}, capacity_type="spot")))["nodeSelector"]
    assert selector == {"pool": "a10g", "karpenter.sh/capacity-type": "spot"}
    default = pod(render(endpoint(capacity_type="on-demand")))["nodeSelector"]
    assert default == {
        "eks.amazonaws.com/instance-gpu-manufacturer": "nvidia",
        "karpenter.sh/capacity-type": "on-demand",
    }


def test_env_keeps_the_records_order_with_string_values() -> None:
    """GCO's monitor wrote env vars in the record's order; server-side apply reorders a list to the
    applied order, so any other order would restart an adopted endpoint's pods."""
    env = container(render(endpoint(env={"Z_LAST": "1", "A_FIRST": 2, "HF_HOME": "/models"})))["env"]
    assert env == [
        {"name": "Z_LAST", "value": "1"},
        {"name": "A_FIRST", "value": "2"},
        {"name": "HF_HOME", "value": "/models"},
    ]


def test_region_image_wins_in_its_region_only() -> None:
    ep = endpoint(region_image_uris={"eu-west-1": "123.dkr.ecr.eu-west-1.amazonaws.com/vllm:v0.6.3"})
    assert container(render(ep, "eu-west-1"))["image"] == "123.dkr.ecr.eu-west-1.amazonaws.com/vllm:v0.6.3"
    assert container(render(ep, REGION))["image"] == VLLM


def test_options_and_record_namespace() -> None:
    item = {
        "endpoint_name": "demo",
        "target_regions": [REGION],
        "namespace": "team-a",
        "spec": {"image": VLLM},
    }
    objects = render(Endpoint.from_item(item), options=RenderOptions(service_account="sa-x"))
    assert {obj["metadata"]["namespace"] for obj in objects} == {"team-a"}
    assert pod(objects)["serviceAccountName"] == "sa-x"


def test_options_from_settings() -> None:
    settings = load_settings(
        {"INFERENCE_NAMESPACE": "inf", "MODEL_SYNC_IMAGE": "aws-cli:2.0", "INFERENCE_SERVICE_ACCOUNT": "sa"}
    )
    assert RenderOptions.from_settings(settings) == RenderOptions("inf", "aws-cli:2.0", "sa")
    assert RenderOptions.from_settings(load_settings({})) == RenderOptions()


# ----------------------------------------------------------------------------- model storage


def test_model_path_mounts_the_shared_claim_without_sync() -> None:
    objects = render(endpoint(model_path="/models/llama"))
    assert pod(objects)["volumes"] == [
        {"name": "model-storage", "persistentVolumeClaim": {"claimName": "efs-claim"}}
    ]
    # Read-only (issue 22, finding 1; GCO mounted it read-write): test_model_volume.py
    assert container(objects)["volumeMounts"] == [
        {"name": "model-storage", "mountPath": "/models", "readOnly": True}
    ]
    assert "initContainers" not in pod(objects)


def test_hugging_face_source_mounts_storage_without_sync() -> None:
    objects = render(endpoint(model_source="meta-llama/Llama-3.1-8B-Instruct"))
    assert "volumes" in pod(objects) and "initContainers" not in pod(objects)


def test_s3_sync_is_an_argv_list_from_the_pinned_configurable_image() -> None:
    source = "s3://models-bucket/llama/it's(v1)=x"
    objects = render(endpoint(model_source=source), options=RenderOptions(model_sync_image="my/aws-cli:2.1"))
    (sync,) = pod(objects)["initContainers"]
    assert sync["image"] == "my/aws-cli:2.1"
    assert sync["command"] == ["aws", "s3", "sync", source, "/models/demo", "--only-show-errors"]
    assert "args" not in sync
    # Its own directory only (issue 22, finding 1): tests/unit/core/rendering/test_model_volume.py
    assert sync["volumeMounts"] == [{"name": "model-storage", "mountPath": "/models/demo", "subPath": "demo"}]
    assert sync["resources"] == {
        "requests": {"cpu": "1", "memory": "2Gi"},
        "limits": {"cpu": "4", "memory": "8Gi"},
    }


def test_default_sync_image_is_pinned() -> None:
    image = RenderOptions().model_sync_image
    assert not image.endswith(":latest") and ":" in image.rsplit("/", 1)[-1]


# ----------------------------------------------------------------------------- Service and Ingress


def test_service_maps_port_80_to_the_container_port() -> None:
    service = get(render(endpoint(port=8080)), "Service", "demo")
    assert service["spec"] == {
        "type": "ClusterIP",
        "selector": {"app": "demo"},
        "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
    }


def test_ingress_without_canary_routes_to_the_primary_only() -> None:
    ingress = get(render(endpoint()), "Ingress", "inference-demo")
    annotations = ingress["metadata"]["annotations"]
    assert WEIGHTED_ROUTING_ANNOTATION not in annotations
    assert annotations["alb.ingress.kubernetes.io/healthcheck-path"] == "/inference/demo/health"
    assert annotations["alb.ingress.kubernetes.io/healthcheck-interval-seconds"] == "15"
    assert ingress["spec"] == {
        "ingressClassName": "alb",
        "rules": [
            {
                "http": {
                    "paths": [
                        {
                            "path": "/inference/demo",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": "demo", "port": {"number": 80}}},
                        }
                    ]
                }
            }
        ],
    }


def test_ingress_health_check_follows_the_pods_not_just_the_image_name() -> None:
    # GCO checked /inference/{name}/health for any vLLM image, even when a command meant no root path.
    ingress = get(render(endpoint(command=["vllm", "serve", "m"])), "Ingress", "inference-demo")
    assert ingress["metadata"]["annotations"]["alb.ingress.kubernetes.io/healthcheck-path"] == "/health"


# ----------------------------------------------------------------------------- canary


def canary_objects(**spec: Any) -> list[Obj]:
    canary = {"image": "vllm/vllm-openai:v0.7.0", "weight": 20, "replicas": 2}
    return render(endpoint(canary=canary, **spec))


def test_canary_renders_its_own_deployment_service_and_a_weighted_ingress() -> None:
    objects = canary_objects()
    assert [object_key(o) for o in objects] == [
        ("Deployment", "demo"),
        ("Service", "demo"),
        ("Deployment", "demo-canary"),
        ("Service", "demo-canary"),
        ("Ingress", "inference-demo"),
    ]
    ingress = get(objects, "Ingress", "inference-demo")
    action = json.loads(ingress["metadata"]["annotations"][WEIGHTED_ROUTING_ANNOTATION])
    assert action == {
        "type": "forward",
        "forwardConfig": {
            "targetGroups": [
                {"serviceName": "demo", "servicePort": 80, "weight": 80},
                {"serviceName": "demo-canary", "servicePort": 80, "weight": 20},
            ]
        },
    }
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]
    assert backend == {"service": {"name": "weighted-routing", "port": {"name": "use-annotation"}}}


def test_canary_pods_are_not_selected_by_the_primary_service() -> None:
    objects = canary_objects()
    canary = get(objects, "Deployment", "demo-canary")
    pod_labels = canary["spec"]["template"]["metadata"]["labels"]
    assert pod_labels == {"app": "demo-canary", "project": "gco", "gco.io/type": "inference"}  # GCO's
    assert canary["metadata"]["labels"]["gco.io/canary"] == "true"
    assert canary["metadata"]["labels"][ENDPOINT_LABEL] == "demo"
    primary_selector = get(objects, "Service", "demo")["spec"]["selector"]
    assert not all(pod_labels.get(k) == v for k, v in primary_selector.items())
    assert get(objects, "Service", "demo-canary")["spec"]["selector"] == {"app": "demo-canary"}
    assert canary["spec"]["selector"] == {"matchLabels": {"app": "demo-canary"}}


def test_canary_serves_under_the_public_path() -> None:
    main = container(canary_objects(), "demo-canary")
    assert main["args"] == ["--root-path", "/inference/demo"]
    assert main["livenessProbe"]["httpGet"]["path"] == "/inference/demo/health"
    service = get(canary_objects(), "Service", "demo-canary")
    assert (
        service["metadata"]["annotations"]["alb.ingress.kubernetes.io/healthcheck-path"]
        == "/inference/demo/health"
    )


def test_canary_runs_its_image_never_the_primarys_regional_one() -> None:
    objects = render(
        endpoint(canary={"image": "vllm/vllm-openai:v0.7.0"}, region_image_uris={REGION: "ecr/vllm:v0.6"}),
    )
    assert container(objects)["image"] == "ecr/vllm:v0.6"
    assert container(objects, "demo-canary")["image"] == "vllm/vllm-openai:v0.7.0"


def test_canary_keeps_its_replicas_and_is_not_autoscaled() -> None:
    objects = canary_objects(autoscaling={"enabled": True})
    assert get(objects, "Deployment", "demo-canary")["spec"]["replicas"] == 2
    assert "replicas" not in get(objects, "Deployment", "demo")["spec"]
    assert [o["metadata"]["name"] for o in objects if o["kind"] == "HorizontalPodAutoscaler"] == ["demo"]


def test_canary_of_a_non_root_path_server_probes_its_own_path() -> None:
    objects = render(endpoint(canary={"image": "nvcr.io/nvidia/tritonserver:24.08"}))
    assert "args" not in container(objects, "demo-canary")
    service = get(objects, "Service", "demo-canary")
    assert service["metadata"]["annotations"]["alb.ingress.kubernetes.io/healthcheck-path"] == "/health"


# ----------------------------------------------------------------------------- autoscaling, stopped


def test_autoscaling_renders_an_hpa_and_leaves_replicas_to_it() -> None:
    objects = render(
        endpoint(
            replicas=3,
            autoscaling={
                "enabled": True,
                "min_replicas": 2,
                "max_replicas": 6,
                "metrics": [{"type": "memory", "target": 60}, {"type": "cpu", "target": 80}],
            },
        )
    )
    assert "replicas" not in get(objects, "Deployment", "demo")["spec"]
    hpa = get(objects, "HorizontalPodAutoscaler", "demo")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "demo"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert [(m["resource"]["name"], m["resource"]["target"]) for m in hpa["spec"]["metrics"]] == [
        ("memory", {"type": "Utilization", "averageUtilization": 60}),
        ("cpu", {"type": "Utilization", "averageUtilization": 80}),
    ]


def test_autoscaling_without_metrics_targets_cpu_70() -> None:
    hpa = get(
        render(endpoint(autoscaling={"enabled": True, "metrics": []})), "HorizontalPodAutoscaler", "demo"
    )
    assert hpa["spec"]["metrics"] == [
        {
            "type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
        }
    ]


def test_disabled_autoscaling_keeps_replicas_and_renders_no_hpa() -> None:
    objects = render(endpoint(replicas=2, autoscaling={"enabled": False, "max_replicas": 4}))
    assert get(objects, "Deployment", "demo")["spec"]["replicas"] == 2
    assert all(o["kind"] != "HorizontalPodAutoscaler" for o in objects)


def test_stopped_is_the_deployment_at_zero_and_its_service_only() -> None:
    objects = render(
        endpoint(
            state="stopped",
            replicas=3,
            autoscaling={"enabled": True},
            canary={"image": "vllm/vllm-openai:v0.7.0", "weight": 20},
        )
    )
    assert [object_key(o) for o in objects] == [("Deployment", "demo"), ("Service", "demo")]
    assert get(objects, "Deployment", "demo")["spec"]["replicas"] == 0


def test_restart_after_stop_renders_the_spec_replicas() -> None:
    # GCO's `replicas or 1` never scaled a stopped endpoint back up to 1; rendering has no memory of it.
    assert get(render(endpoint(replicas=1)), "Deployment", "demo")["spec"]["replicas"] == 1


# ----------------------------------------------------------------------------- hash and helpers


def test_content_hash_ignores_its_own_annotation_only() -> None:
    (deployment, *_rest) = render(endpoint())
    stripped = json.loads(json.dumps(deployment))
    del stripped["metadata"]["annotations"][HASH_ANNOTATION]
    assert content_hash(stripped) == content_hash(deployment)
    del stripped["metadata"]["annotations"]
    assert content_hash(stripped) == content_hash(deployment)
    stripped["metadata"]["annotations"] = {HASH_ANNOTATION: "anything"}
    assert content_hash(stripped) == content_hash(deployment)
    stripped["spec"]["replicas"] = 5
    assert content_hash(stripped) != content_hash(deployment)


def test_hash_changes_with_the_spec_but_not_with_env_order() -> None:
    first = render(endpoint(env={"A": "1", "B": "2"}))[0]
    reordered = render(endpoint(env={"B": "2", "A": "1"}))[0]
    changed = render(endpoint(env={"A": "1", "B": "3"}))[0]
    assert (
        first["metadata"]["annotations"][HASH_ANNOTATION]
        == reordered["metadata"]["annotations"][HASH_ANNOTATION]
    )
    assert (
        first["metadata"]["annotations"][HASH_ANNOTATION]
        != changed["metadata"]["annotations"][HASH_ANNOTATION]
    )


def test_object_key_and_managed_selector() -> None:
    assert object_key({"kind": "Service", "metadata": {"name": "demo"}}) == ("Service", "demo")
    assert MANAGED_SELECTOR == "gco.io/type=inference"
