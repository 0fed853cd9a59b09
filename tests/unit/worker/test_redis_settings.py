"""REDIS_URL in every documented form, what the Celery app derives from it, and the other bounds of
issue 12 as pure functions: no password on any surface Celery shows, verification on by default, the
visibility timeout from the time limit, the DynamoDB call bound, a server's Retry-After honoured."""

from __future__ import annotations

import json
from typing import Any

import pytest
from celery.app.utils import filter_hidden_settings
from kubernetes.client.exceptions import ApiException

from gco_tasks.adapters.cluster import retry_after_seconds
from gco_tasks.core.config import ConfigError, load_settings, region_problem
from gco_tasks.core.redis_target import mask_url, parse_redis_url
from gco_tasks.worker.app import celery_config

SECRET = "s3cr3t-planted"
URLS = {
    "plain": f"redis://:{SECRET}@redis.internal:6379/0",
    "elasticache": f"rediss://:{SECRET}@master.gco.abc123.use1.cache.amazonaws.com:6379/0",
    "tls with ca": f"rediss://app:{SECRET}@r:6380/2?ssl_cert_reqs=required&ssl_ca_certs=/etc/ca.pem",
    "sentinel": f"sentinel://:{SECRET}@10.0.0.1:26379;sentinel://10.0.0.2:26379;sentinel://10.0.0.3:26379/1",
}


def config_for(url: str) -> dict[str, Any]:
    return celery_config(load_settings({"REDIS_URL": url, "REDIS_SENTINEL_MASTER": "gco"}))


@pytest.mark.parametrize("form", URLS)
def test_no_setting_celery_shows_holds_the_password(form: str) -> None:
    shown = json.dumps(
        filter_hidden_settings(config_for(URLS[form])), default=repr
    )  # what inspect conf sends
    assert SECRET not in shown
    assert (
        load_settings({"REDIS_URL": URLS[form], "REDIS_SENTINEL_MASTER": "gco"}).redis_target.password
        == SECRET
    )


def test_tls_verification_is_on_by_default_and_reaches_broker_backend_and_redbeat() -> None:
    conf = config_for(URLS["elasticache"])
    for key in ("broker_use_ssl", "redis_backend_use_ssl", "redbeat_redis_use_ssl"):
        assert conf[key] == {"ssl_cert_reqs": "required"}
    assert conf["redbeat_redis_url"] == "rediss://master.gco.abc123.use1.cache.amazonaws.com:6379/0"
    conf = config_for(URLS["tls with ca"])
    assert conf["broker_use_ssl"] == {"ssl_cert_reqs": "required", "ssl_ca_certs": "/etc/ca.pem"}
    assert conf["redbeat_redis_options"]["username"] == "app"


def test_unverified_tls_only_when_explicitly_allowed() -> None:
    url = f"rediss://:{SECRET}@r:6379/0?ssl_cert_reqs=none"
    with pytest.raises(ConfigError) as refused:
        load_settings({"REDIS_URL": url})
    assert "REDIS_ALLOW_UNVERIFIED_TLS" in str(refused.value) and SECRET not in str(refused.value)
    allowed = load_settings({"REDIS_URL": url, "REDIS_ALLOW_UNVERIFIED_TLS": "true"})
    assert celery_config(allowed)["broker_use_ssl"] == {"ssl_cert_reqs": "none"}


def test_sentinel_form() -> None:
    conf = config_for(URLS["sentinel"])
    assert conf["broker_transport_options"]["master_name"] == "gco"
    assert conf["result_backend_transport_options"] == {"master_name": "gco"}
    assert conf["broker_url"].count(SECRET) == 1  # on the first part only, as kombu reads it
    options = conf["redbeat_redis_options"]
    assert options["sentinels"] == [["10.0.0.1", 26379], ["10.0.0.2", 26379], ["10.0.0.3", 26379]]
    assert (options["service_name"], options["db"], options["password"]) == ("gco", 1, SECRET)
    assert conf["redbeat_redis_url"].startswith("redis-sentinel://")
    with pytest.raises(ConfigError, match="REDIS_SENTINEL_MASTER"):
        load_settings({"REDIS_URL": URLS["sentinel"]})


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (f"redis://:{SECRET}@host:port/0", "port that is not a number"),
        (f"http://:{SECRET}@host/0", "must start with redis://"),
        (f"redis://:{SECRET}@/0", "no host name"),
        (f"redis://:{SECRET}@h/zero", "database number"),
        (f"redis://:{SECRET}@h/0?ssl_cert_reqs=required", "not rediss://"),
        (f"rediss://:{SECRET}@h/0?timeout=3", "unknown options"),
        (f"redis://:{SECRET}@a:1;redis://b:2", "only sentinel://"),
    ],
)
def test_a_malformed_url_is_named_and_masked(url: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"REDIS_URL": url, "REDIS_SENTINEL_MASTER": "m"})
    message = str(caught.value)
    assert "REDIS_URL" in message and problem in message and SECRET not in message
    assert ":***@" in message


def test_mask_url() -> None:
    assert mask_url(f"redis://:{SECRET}@h:1/0") == "redis://:***@h:1/0"
    assert mask_url(f"rediss://user:{SECRET}@h") == "rediss://user:***@h"
    assert mask_url(f"redis://{SECRET}@h") == "redis://***@h"
    assert (
        mask_url(f"sentinel://:{SECRET}@a:1;sentinel://:{SECRET}@b:2")
        == "sentinel://:***@a:1;sentinel://:***@b:2"
    )
    assert mask_url("redis://h:6379/0") == "redis://h:6379/0"


def test_target_repr_and_masked_url_hide_the_password() -> None:
    target = parse_redis_url(URLS["tls with ca"])
    assert SECRET not in repr(target) and SECRET not in target.masked()
    assert SECRET not in repr(load_settings({"REDIS_URL": URLS["plain"]}))


def test_visibility_timeout_is_derived_from_the_time_limit() -> None:
    settings = load_settings({})
    assert settings.visibility_timeout_seconds == 60 + 150 + 30  # longest retry + hard limit + margin
    assert config_for(URLS["plain"])["broker_transport_options"]["visibility_timeout"] == 240
    longer = load_settings({"TASK_TIME_LIMIT_SECONDS": "600", "TASK_SOFT_TIME_LIMIT_SECONDS": "500"})
    assert longer.visibility_timeout_seconds == 690


def test_dynamodb_call_bound() -> None:
    assert load_settings({}).dynamodb_call_bound_seconds == 3 * (2 + 5) + 1 + 2
    fast = {"DYNAMODB_CONNECT_TIMEOUT_SECONDS": "1", "DYNAMODB_READ_TIMEOUT_SECONDS": "1"}
    assert load_settings({**fast, "DYNAMODB_MAX_ATTEMPTS": "2"}).dynamodb_call_bound_seconds == 5


def test_known_regions() -> None:
    assert region_problem(load_settings({"REGION": "eu-west-1"})) is None
    problem = str(region_problem(load_settings({"REGION": "eu-wset-1"})))
    assert problem.startswith("REGION: unknown region 'eu-wset-1'") and "did you mean 'eu-west-1'?" in problem
    assert "REGION is not set" in str(region_problem(load_settings({})))
    local = load_settings({"REGION": "local-1", "KNOWN_REGIONS": "local-1, local-2"})
    assert region_problem(local) is None


def api_exception(status: int, headers: dict[str, str], body: dict[str, Any]) -> ApiException:
    exc = ApiException(status=status, reason="Too Many Requests")
    exc.headers, exc.body = headers, json.dumps(body).encode()
    return exc


def test_retry_after_from_header_then_body() -> None:
    assert retry_after_seconds(api_exception(429, {"Retry-After": "7"}, {})) == 7.0
    assert retry_after_seconds(api_exception(429, {}, {"details": {"retryAfterSeconds": 2}})) == 2.0
    assert retry_after_seconds(api_exception(503, {"retry-after": "soon"}, {})) is None
