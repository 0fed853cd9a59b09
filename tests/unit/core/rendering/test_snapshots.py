"""Snapshots of canonical endpoints, as `gco-tasks render NAME -r us-east-1` prints them, for a reviewer
to read: tests/unit/core/rendering/snapshots/<case>.yaml. Each file opens with the record it renders.

A change in rendering shows up here as a readable diff. To accept one on purpose:
``UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/unit/core/rendering/test_snapshots.py`` writes the changed files
and still fails (so a run with the variable set can never pass on a changed rendering); review
``git diff``, then re-run without ``UPDATE_SNAPSHOTS``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gco_tasks.cli.render import format_objects
from gco_tasks.core.records import Endpoint
from gco_tasks.core.rendering import RenderOptions, render_endpoint

SNAPSHOTS = Path(__file__).parent / "snapshots"
REGION = "us-east-1"


def record(name: str, spec: dict[str, Any], state: str = "running") -> dict[str, Any]:
    return {
        "endpoint_name": name,
        "desired_state": state,
        "target_regions": [REGION, "eu-west-1"],
        "namespace": "gco-inference",
        "spec": spec,
        "ingress_path": f"/inference/{name}",
    }


CASES: dict[str, dict[str, Any]] = {
    "vllm-1gpu": record(
        "llama3-8b",
        {
            "image": "vllm/vllm-openai:v0.6.3",
            "gpu_count": 1,
            "args": ["--model", "meta-llama/Meta-Llama-3-8B-Instruct", "--max-model-len", "8192"],
            "env": {"HF_TOKEN_PATH": "/secrets/hf", "VLLM_LOGGING_LEVEL": "INFO"},
            "capacity_type": "spot",
        },
    ),
    "tgi-s3-model": record(
        "mistral-7b",
        {
            "image": "ghcr.io/huggingface/text-generation-inference:2.4.0",
            "gpu_count": 1,
            "model_source": "s3://gco-models-123456789012/mistral-7b-instruct/",
            "model_path": "/models/mistral-7b",
            "args": ["--model-id", "/models/mistral-7b"],
            "resources": {
                "requests": {"cpu": "4", "memory": "24Gi"},
                "limits": {"cpu": "8", "memory": "32Gi"},
            },
        },
    ),
    "non-root-s3-model": record(
        "qwen-7b",
        {
            "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/vllm-nonroot:v0.6.3",
            "gpu_count": 1,
            "model_source": "s3://gco-models-123456789012/qwen2.5-7b-instruct/",
            "args": ["--model", "/models/qwen-7b"],
            "run_as_non_root": True,
            "run_as_user": 1000,
        },
    ),
    "triton-neuron": record(
        "bert-inf2",
        {
            "image": "public.ecr.aws/neuron/tritonserver:24.05-neuronx",
            "accelerator": "neuron",
            "gpu_count": 2,
            "port": 8000,
            "health_check_path": "/v2/health/ready",
            "command": ["tritonserver"],
            "args": ["--model-repository=/models/bert-inf2", "--http-port=8000"],
            "model_path": "/models/bert-inf2",
            "tolerations": [
                {"key": "aws.amazon.com/neuroncore", "operator": "Exists", "effect": "NoSchedule"}
            ],
            "region_image_uris": {
                REGION: "123456789012.dkr.ecr.us-east-1.amazonaws.com/tritonserver:24.05-neuronx"
            },
        },
    ),
    "canary-20": record(
        "demo",
        {
            "image": "vllm/vllm-openai:v0.6.3",
            "replicas": 2,
            "region_image_uris": {REGION: "123456789012.dkr.ecr.us-east-1.amazonaws.com/vllm-openai:v0.6.3"},
            "canary": {"image": "vllm/vllm-openai:v0.7.0", "weight": 20, "replicas": 1},
        },
    ),
    "autoscaling": record(
        "chat",
        {
            "image": "vllm/vllm-openai:v0.6.3",
            "replicas": 2,
            "autoscaling": {
                "enabled": True,
                "min_replicas": 2,
                "max_replicas": 8,
                "metrics": [{"type": "cpu", "target": 60}, {"type": "memory", "target": 80}],
            },
        },
    ),
    "stopped": record(
        "demo",
        {
            "image": "vllm/vllm-openai:v0.6.3",
            "replicas": 2,
            "autoscaling": {"enabled": True},
            "canary": {"image": "vllm/vllm-openai:v0.7.0", "weight": 20},
        },
        state="stopped",
    ),
}


def snapshot_text(case: str) -> str:
    item = CASES[case]
    objects = render_endpoint(Endpoint.from_item(item), REGION, RenderOptions())
    header = [f"# gco-tasks render {item['endpoint_name']} --region {REGION}", "# record:"]
    header += [f"#   {line}" for line in json.dumps(item, indent=2).splitlines()]
    return "\n".join(header) + "\n" + format_objects(objects, "yaml")


def compare_snapshot(path: Path, text: str, update: bool) -> None:
    """Pass only when ``path`` holds ``text``. With ``update``, a missing or different file is written
    and the test fails all the same: the new snapshot must be reviewed and pass on a run of its own."""
    if path.exists() and path.read_text() == text:
        return
    if update:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        pytest.fail(f"snapshots updated ({path.name}); review git diff and re-run without UPDATE_SNAPSHOTS")
    if not path.exists():
        pytest.fail(f"missing snapshot {path}; run with UPDATE_SNAPSHOTS=1")
    pytest.fail(f"{path.stem} rendering changed; review, run with UPDATE_SNAPSHOTS=1, then without it")


@pytest.mark.parametrize("case", sorted(CASES))
def test_snapshot(case: str) -> None:
    update = bool(os.environ.get("UPDATE_SNAPSHOTS"))
    compare_snapshot(SNAPSHOTS / f"{case}.yaml", snapshot_text(case), update)


def test_updating_a_snapshot_writes_it_and_still_fails(tmp_path: Path) -> None:
    path = tmp_path / "snapshots" / "case.yaml"
    with pytest.raises(pytest.fail.Exception, match="missing snapshot"):
        compare_snapshot(path, "new\n", update=False)
    with pytest.raises(pytest.fail.Exception, match="re-run without UPDATE_SNAPSHOTS"):
        compare_snapshot(path, "new\n", update=True)
    assert path.read_text() == "new\n"
    compare_snapshot(path, "new\n", update=True)  # unchanged: passes, even with the variable set
    with pytest.raises(pytest.fail.Exception, match="rendering changed"):
        compare_snapshot(path, "newer\n", update=False)
    assert path.read_text() == "new\n", "without the variable nothing is written"


def test_snapshots_are_loadable_yaml_streams() -> None:
    for path in SNAPSHOTS.glob("*.yaml"):
        documents = list(yaml.safe_load_all(path.read_text()))
        assert documents and all(doc["metadata"]["labels"]["gco.io/type"] == "inference" for doc in documents)
    assert {p.stem for p in SNAPSHOTS.glob("*.yaml")} == set(CASES)


@pytest.mark.parametrize("case", sorted(CASES))
def test_snapshot_objects_validate_strictly(case: str) -> None:
    """The canonical endpoints straight through kubernetes-validate (no caching), 1.30 and 1.33."""
    for obj in render_endpoint(Endpoint.from_item(CASES[case]), REGION, RenderOptions()):
        for version in ("1.30.0", "1.33.0"):
            kubernetes_validate.validate(obj, version, strict=True)
