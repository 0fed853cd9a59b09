"""Issue 22, finding 1: the shared model volume (PVC ``efs-claim``) was mounted read-write at ``/models``
with no ``subPath`` in every container of every endpoint with a model, so one record's image could
replace or poison another endpoint's model (a pickle checkpoint runs code in the victim).

Integrity, always: the model-sync init container mounts only ``/models/{name}`` (a ``subPath``), the
inference container mounts the share read-only. Confidentiality, the operator's choice:
``MODEL_READ_SCOPE=endpoint`` limits reads to the endpoint's own directory plus ``MODEL_SHARED_DIRS``;
the default ``share`` keeps a GCO record that serves a model from anywhere on the share working."""

from __future__ import annotations

from typing import Any

import pytest

from gco_tasks.core.config import ConfigError, load_settings
from gco_tasks.core.records import Endpoint, InvalidEndpointError
from gco_tasks.core.rendering import RenderOptions, render_endpoint

REGION = "us-east-1"
S3 = "s3://models-bucket/llama/"
Obj = dict[str, Any]

RECORDS: dict[str, dict[str, Any]] = {
    "s3-source": {"model_source": S3},
    "model-path": {"model_path": "/models/llama"},
    "hugging-face": {"model_source": "meta-llama/Llama-3.1-8B-Instruct"},
    "s3-with-canary": {"model_source": S3, "canary": {"image": "vllm/vllm-openai:v0.7.0", "weight": 10}},
    "non-root": {"model_source": S3, "run_as_non_root": True, "run_as_user": 1000},
}


def render(name: str = "demo", options: RenderOptions | None = None, **spec: Any) -> list[Obj]:
    item = {
        "endpoint_name": name,
        "desired_state": "running",
        "target_regions": [REGION],
        "spec": {"image": "vllm/vllm-openai:v0.6.3", **spec},
    }
    return render_endpoint(Endpoint.from_item(item), REGION, options or RenderOptions())


def model_mounts(objects: list[Obj]) -> list[tuple[str, str, Obj]]:
    """(Deployment, container, mount) for every mount of the model volume."""
    found = []
    for obj in objects:
        if obj["kind"] != "Deployment":
            continue
        pod = obj["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for c in [*pod.get("initContainers", []), *pod["containers"]]:
            for mount in c.get("volumeMounts", []):
                if "persistentVolumeClaim" in volumes[mount["name"]]:
                    found.append((obj["metadata"]["name"], c["name"], mount))
    return found


@pytest.mark.parametrize("lockdown", [True, False])
@pytest.mark.parametrize("record", sorted(RECORDS))
def test_no_container_writes_anywhere_but_its_own_model_directory(record: str, lockdown: bool) -> None:
    """Finding 1 (integrity), whatever the lockdown: every writable mount of the share is exactly
    ``/models/demo`` by ``subPath`` (the sync); every other mount is read-only. On main the sync and the
    inference container both mounted the whole share read-write."""
    mounts = model_mounts(render(options=RenderOptions(pod_lockdown=lockdown), **RECORDS[record]))
    assert mounts
    for deployment, container, mount in mounts:
        if mount.get("readOnly") is True:
            continue
        assert container == "model-sync", (deployment, container, mount)
        assert mount == {"name": "model-storage", "mountPath": "/models/demo", "subPath": "demo"}


def test_the_inference_container_reads_the_share_read_only_by_default() -> None:
    """Finding 1 (the default): MODEL_READ_SCOPE=share, the whole share at /models, read-only. A GCO record
    serving /models/llama (synced there by hand or by another endpoint) keeps working."""
    for record in RECORDS.values():
        inference = [m for _, c, m in model_mounts(render(**record)) if c == "inference"]
        assert inference and all(
            m == {"name": "model-storage", "mountPath": "/models", "readOnly": True} for m in inference
        )
    args = ["--model", "/models/llama"]
    objects = render(model_path="/models/llama", command=["vllm", "serve"], args=args)
    assert [m["mountPath"] for _, c, m in model_mounts(objects) if c == "inference"] == ["/models"]


def test_endpoint_scope_reads_only_its_own_directory_and_the_shared_ones() -> None:
    """Finding 1 (confidentiality): MODEL_READ_SCOPE=endpoint mounts /models/{name} and each of
    MODEL_SHARED_DIRS by subPath, read-only, and not the share's root."""
    options = RenderOptions(model_read_scope="endpoint", model_shared_dirs=("shared", "base/llama"))
    expected = [
        {"name": "model-storage", "mountPath": f"/models/{d}", "subPath": d, "readOnly": True}
        for d in ("demo", "shared", "base/llama")
    ]
    for record in RECORDS.values():
        mounts = model_mounts(render(options=options, **record))
        for deployment in {d for d, _, _ in mounts}:
            inference = [m for d, c, m in mounts if d == deployment and c == "inference"]
            assert inference == expected, (record, deployment)


@pytest.mark.parametrize("name", ["shared", "base"])
def test_an_endpoint_named_like_a_shared_directory_may_not_sync_into_it(name: str) -> None:
    """Its sync would write /models/{name}: what every endpoint reads."""
    options = RenderOptions(model_read_scope="endpoint", model_shared_dirs=("shared", "base/llama"))
    with pytest.raises(InvalidEndpointError) as caught:
        render(name, options=options, model_source=S3)
    (field, message), *_ = caught.value.problems
    assert field == "endpoint_name" and "MODEL_SHARED_DIRS" in message
    assert render(name, options=options, model_path="/models/x")  # no sync: nothing written


def test_the_settings_choose_the_scope_and_the_shared_directories() -> None:
    default = load_settings({})
    assert default.model_read_scope == "share" and default.model_shared_directories == ()
    settings = load_settings({"MODEL_READ_SCOPE": "endpoint", "MODEL_SHARED_DIRS": " shared , /base/llama/ "})
    options = RenderOptions.from_settings(settings)
    assert options.model_read_scope == "endpoint"
    assert options.model_shared_dirs == ("shared", "base/llama")


@pytest.mark.parametrize(
    ("variable", "value"),
    [("MODEL_READ_SCOPE", "everything"), ("MODEL_SHARED_DIRS", "../etc"), ("MODEL_SHARED_DIRS", "a b")],
)
def test_bad_model_settings_stop_the_process_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        load_settings({variable: value})
