"""Settings from the environment: GCO's names and defaults, and errors that name the variable."""

from __future__ import annotations

import pytest

from gco_tasks.core.config import ConfigError, load_settings


def test_defaults_match_gco_monitor() -> None:
    settings = load_settings({})
    assert settings.inference_endpoints_table_name == "gco-inference-endpoints"
    assert settings.inference_namespace == "gco-inference"
    assert settings.reconcile_interval_seconds == 15
    assert settings.k8s_api_timeout == 30
    assert settings.inference_unhealthy_threshold_seconds == 300
    assert settings.status_heartbeat_seconds == 300


def test_dynamodb_region_falls_back_to_region() -> None:
    assert load_settings({"REGION": "eu-west-1"}).table_region == "eu-west-1"
    assert load_settings({"REGION": "eu-west-1", "DYNAMODB_REGION": "us-east-1"}).table_region == "us-east-1"


def test_queue_is_per_region() -> None:
    assert load_settings({"REGION": "ap-south-1"}).queue == "gco.ap-south-1"


def test_bad_values_name_every_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(
            {"RECONCILE_INTERVAL_SECONDS": "soon", "REDIS_URL": "localhost:6379", "K8S_API_TIMEOUT": "0"}
        )
    message = str(caught.value)
    assert "RECONCILE_INTERVAL_SECONDS" in message and "'soon'" in message
    assert "REDIS_URL" in message
    assert "K8S_API_TIMEOUT" in message


def test_soft_limit_must_be_below_hard_limit() -> None:
    with pytest.raises(ConfigError, match="TASK_SOFT_TIME_LIMIT_SECONDS"):
        load_settings({"TASK_SOFT_TIME_LIMIT_SECONDS": "200", "TASK_TIME_LIMIT_SECONDS": "100"})


def test_visibility_timeout_is_above_hard_limit() -> None:
    settings = load_settings({"TASK_TIME_LIMIT_SECONDS": "2000", "TASK_SOFT_TIME_LIMIT_SECONDS": "1900"})
    assert settings.visibility_timeout_seconds > settings.task_time_limit_seconds


def test_log_format_and_metrics_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("METRICS_PORT", raising=False)  # tests/conftest.py sets 0 (pydantic-settings reads it)
    defaults = load_settings({})
    assert (defaults.log_format, defaults.metrics_port) == ("text", 9808)
    assert load_settings({"LOG_FORMAT": " JSON "}).log_format == "json"
    assert load_settings({"METRICS_PORT": "0"}).metrics_port == 0
    with pytest.raises(ConfigError) as caught:
        load_settings({"LOG_FORMAT": "yaml", "METRICS_PORT": "70000"})
    message = str(caught.value)
    assert "LOG_FORMAT: Input should be 'text' or 'json' (got 'yaml')" in message
    assert "METRICS_PORT" in message and "'70000'" in message
