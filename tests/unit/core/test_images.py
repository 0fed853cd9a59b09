"""Image references (``gco_tasks.core.images``) and the settings that use them: ``MODEL_SYNC_IMAGE`` accepts
``repo:tag`` and ``repo:tag@sha256:<64 hex>``; ``REQUIRE_IMAGE_DIGESTS=true`` refuses a tag-only one at
start, with a message naming both variables and how to resolve a digest."""

from __future__ import annotations

import pytest

from gco_tasks.core.config import ConfigError, load_settings
from gco_tasks.core.images import check_image_reference, image_repository, is_pinned, registry_allowed
from gco_tasks.core.records import Endpoint, InvalidEndpointError, parse_spec
from gco_tasks.core.rendering import RenderOptions, render_endpoint
from gco_tasks.core.rendering.policy import EndpointPolicy, policy_problems

DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize(
    "ref",
    [
        "public.ecr.aws/aws-cli/aws-cli:2.22.35",
        f"public.ecr.aws/aws-cli/aws-cli:2.22.35@{DIGEST}",
        f"public.ecr.aws/aws-cli/aws-cli@{DIGEST}",
        "111122223333.dkr.ecr.us-east-1.amazonaws.com/gco-tasks:0.1.0",
        "localhost:5000/team/aws_cli__x:v1",
        "nginx",
    ],
)
def test_well_formed_references_pass(ref: str) -> None:
    assert check_image_reference(ref) == ref


@pytest.mark.parametrize(
    "ref",
    [
        "",
        "aws cli:2",
        "Upper/case:1",
        "repo:tag@sha256:abc",
        f"repo:tag@sha256:{'A' * 64}",
        f"repo:tag@sha512:{'a' * 64}",
        "repo:-tag",
        "repo::tag",
        f"repo:tag@{DIGEST}@{DIGEST}",
    ],
)
def test_malformed_references_are_refused(ref: str) -> None:
    with pytest.raises(ValueError, match="repo:tag@sha256"):
        check_image_reference(ref)


def test_pinned_means_a_sha256_digest_at_the_end() -> None:
    assert is_pinned(f"aws-cli:2@{DIGEST}")
    assert not is_pinned("aws-cli:2")
    assert not is_pinned("aws-cli:sha256")


def test_model_sync_image_defaults_to_the_tag_and_digests_are_not_required_by_default() -> None:
    settings = load_settings({})
    assert settings.model_sync_image == "public.ecr.aws/aws-cli/aws-cli:2.22.35"
    assert settings.require_image_digests is False


def test_a_malformed_model_sync_image_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="MODEL_SYNC_IMAGE"):
        load_settings({"MODEL_SYNC_IMAGE": "aws-cli:2@sha256:short"})


def test_require_image_digests_refuses_a_tag_only_model_sync_image() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"REQUIRE_IMAGE_DIGESTS": "true"})
    message = str(caught.value)
    assert "MODEL_SYNC_IMAGE" in message and "REQUIRE_IMAGE_DIGESTS" in message
    assert "pin-image.sh" in message


def test_require_image_digests_accepts_a_pinned_model_sync_image() -> None:
    image = f"public.ecr.aws/aws-cli/aws-cli:2.22.35@{DIGEST}"
    settings = load_settings({"REQUIRE_IMAGE_DIGESTS": "true", "MODEL_SYNC_IMAGE": image})
    assert settings.model_sync_image == image and settings.require_image_digests


# --------------------------------------------------------------------------- registries (issue 22, 9)


@pytest.mark.parametrize(
    ("reference", "repository"),
    [
        ("nginx:1.27", "docker.io/library/nginx"),
        ("vllm/vllm-openai:v0.6.3", "docker.io/vllm/vllm-openai"),
        ("docker.io/vllm/vllm-openai", "docker.io/vllm/vllm-openai"),
        ("index.docker.io/library/nginx", "docker.io/library/nginx"),
        ("public.ecr.aws/aws-cli/aws-cli:2.22.35@sha256:" + "a" * 64, "public.ecr.aws/aws-cli/aws-cli"),
        ("localhost:5000/x/y:1", "localhost:5000/x/y"),
        (
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/tritonserver:24.05",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/tritonserver",
        ),
    ],
)
def test_the_repository_an_image_pulls_from(reference: str, repository: str) -> None:
    assert image_repository(reference) == repository


def test_registry_entries_match_a_registry_a_path_prefix_or_a_domain_suffix() -> None:
    allowed = ("public.ecr.aws", "docker.io/vllm", "*.dkr.ecr.us-east-1.amazonaws.com")
    assert registry_allowed("public.ecr.aws/aws-cli/aws-cli:2", allowed)
    assert registry_allowed("vllm/vllm-openai:v0.6.3", allowed)
    assert registry_allowed("123456789012.dkr.ecr.us-east-1.amazonaws.com/x:1", allowed)
    assert not registry_allowed("vllm-evil/vllm-openai:v0.6.3", allowed)  # a prefix is whole segments
    assert not registry_allowed("nginx:1.27", allowed)  # docker.io/library, not docker.io/vllm
    assert not registry_allowed("public.ecr.aws.evil.example/x:1", allowed)
    assert not registry_allowed("123456789012.dkr.ecr.eu-west-1.amazonaws.com/x:1", allowed)


def test_record_images_from_other_registries_are_refused_when_the_allowlist_is_on() -> None:
    """Issue 22, finding 9: with REQUIRE_IMAGE_DIGESTS=false in the base, a record could run any image.
    ALLOWED_IMAGE_REGISTRIES (off by default) refuses every image of the record (primary, per region,
    canary) from elsewhere, naming each field; main had no such setting."""
    spec = parse_spec(
        {
            "image": "vllm/vllm-openai:v0.6.3",
            "region_image_uris": {"us-east-1": "evil.example/vllm:1"},
            "canary": {"image": "ghcr.io/someone/server:2"},
        }
    )
    assert policy_problems(spec, "demo", EndpointPolicy()) == []  # off: any registry
    settings = load_settings({"ALLOWED_IMAGE_REGISTRIES": "docker.io/vllm, public.ecr.aws"})
    policy = RenderOptions.from_settings(settings).policy
    assert policy.allowed_image_registries == ("docker.io/vllm", "public.ecr.aws")
    found = dict(policy_problems(spec, "demo", policy))
    assert list(found) == ["spec.region_image_uris.us-east-1", "spec.canary.image"]
    assert "ghcr.io/someone/server is not from a registry" in found["spec.canary.image"]
    assert "ALLOWED_IMAGE_REGISTRIES" in found["spec.canary.image"]
    item = {"endpoint_name": "demo", "target_regions": ["us-east-1"], "spec": spec.to_dict()}
    with pytest.raises(InvalidEndpointError, match="ALLOWED_IMAGE_REGISTRIES"):
        render_endpoint(Endpoint.from_item(item), "us-east-1", RenderOptions(policy=policy))


@pytest.mark.parametrize("value", ["https://public.ecr.aws", "*.x/y", "bad registry"])
def test_a_malformed_registry_entry_stops_the_process_naming_the_variable(value: str) -> None:
    with pytest.raises(ConfigError, match="ALLOWED_IMAGE_REGISTRIES"):
        load_settings({"ALLOWED_IMAGE_REGISTRIES": value})
