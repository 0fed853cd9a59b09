"""The region list is botocore's: ``core.regions.AWS_COMMERCIAL_REGIONS`` is the generated block that
``python -m gco_tasks.cli.regions_data`` writes from the locked botocore's endpoint data (the ``aws``
partition), and the typo guess still prefers the busiest regions."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from gco_tasks.cli import app
from gco_tasks.cli.regions_data import REGIONS_MODULE, commercial_regions, generated_block
from gco_tasks.core.regions import AWS_COMMERCIAL_REGIONS, closest_region, known_regions


def test_the_list_is_botocores_aws_partition() -> None:
    regions = commercial_regions()
    assert regions == AWS_COMMERCIAL_REGIONS, "botocore moved: run python -m gco_tasks.cli.regions_data"
    assert generated_block(regions) in REGIONS_MODULE.read_text()
    assert {"us-east-1", "eu-west-1", "ap-southeast-7", "mx-central-1"} <= set(regions)
    assert not [r for r in regions if re.match(r"(us-gov|cn|us-iso)", r)], "commercial partition only"
    assert known_regions("") == regions and known_regions("eu-west-1, us-east-1") == (
        "eu-west-1",
        "us-east-1",
    )


def test_did_you_mean_survives(dynamodb_url: str) -> None:
    assert closest_region("us-est-1", AWS_COMMERCIAL_REGIONS) == "us-east-1"
    assert closest_region("eu-wst-1", AWS_COMMERCIAL_REGIONS) == "eu-west-1"
    result = CliRunner().invoke(app, ["endpoints", "deploy", "z", "-i", "nginx:1.27", "-r", "us-est-1"])
    assert result.exit_code == 1
    assert "did you mean 'us-east-1'? (add it to KNOWN_REGIONS" in result.output
