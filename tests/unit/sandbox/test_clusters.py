"""The sandbox's clusters: one per region from a factory (the stand-in by default), each with its own
kubeconfig; a factory failing half-way leaves nothing running."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from gco_sandbox.clusters import standin_cluster, start_clusters, stop_clusters


def test_each_region_gets_its_own_stand_in_and_kubeconfig(tmp_path: Path) -> None:
    clusters = start_clusters(["us-east-1", "eu-west-1"], tmp_path, standin_cluster)
    try:
        urls = {cluster.url for cluster in clusters.values()}
        assert len(urls) == 2, "one API server per region"
        east = yaml.safe_load(clusters["us-east-1"].kubeconfig.read_text())
        assert clusters["us-east-1"].kubeconfig == tmp_path / "us-east-1" / "kubeconfig.yaml"
        assert east["current-context"] == "sandbox-us-east-1"
        assert east["clusters"][0]["cluster"]["server"] == clusters["us-east-1"].url
    finally:
        stop_clusters(clusters)


@dataclass
class Fake:
    region: str
    kubeconfig: Path
    stopped: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"https://{self.region}.example"

    def stop(self) -> None:
        self.stopped.append(self.region)


def test_a_failing_factory_stops_the_clusters_already_started(tmp_path: Path) -> None:
    stopped: list[str] = []

    def factory(region: str, workdir: Path) -> Fake:
        if region == "eu-west-1":
            raise RuntimeError("no capacity")
        return Fake(region, workdir / "kubeconfig", stopped)

    with pytest.raises(RuntimeError, match="no capacity"):
        start_clusters(["us-east-1", "eu-west-1"], tmp_path, factory)
    assert stopped == ["us-east-1"]
    assert (tmp_path / "eu-west-1").is_dir(), "each region has its own directory for the factory"
