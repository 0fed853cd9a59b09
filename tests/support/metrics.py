"""Prometheus samples as the tests read them from a ``/metrics`` page: ``{(name, labels): value}``,
parsed by prometheus_client's own text parser."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_samples(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(port: int, host: str = "127.0.0.1", timeout: float = 5.0) -> Samples | None:
    """The samples served on ``http://host:port/metrics``; None when nothing answers (yet)."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=timeout) as response:
            text = response.read().decode()
    except OSError:
        return None
    return parse_samples(text)


def sample(samples: Samples, name: str, **labels: str) -> float | None:
    """The one series with exactly these labels, or None."""
    return samples.get((name, frozenset(labels.items())))


def total(samples: Samples, name: str) -> float:
    """The sum over every series of ``name``."""
    return sum(value for (series, _), value in samples.items() if series == name)
