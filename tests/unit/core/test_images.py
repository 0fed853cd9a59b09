"""Image references (``gco_tasks.core.images``) and the settings that use them: ``MODEL_SYNC_IMAGE`` accepts
``repo:tag`` and ``repo:tag@sha256:<64 hex>``; ``REQUIRE_IMAGE_DIGESTS=true`` refuses a tag-only one at
start, with a message naming both variables and how to resolve a digest."""

from __future__ import annotations

import pytest

from gco_tasks.core.config import ConfigError, load_settings
from gco_tasks.core.images import check_image_reference, is_pinned

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
