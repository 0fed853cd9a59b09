"""How Celery and RedBeat reach the region's Redis: their settings derived from ``REDIS_URL`` in every form it
takes (plain, TLS with verification, Sentinel), and a guard around a kombu 5.7 failure.

Where it stands in the flow: under the Celery app (``gco_tasks.worker.app`` merges ``redis_config`` into its
configuration). More in docs/architecture.md.
"""

from __future__ import annotations

from typing import Any

from gco_tasks.core.config import Settings
from gco_tasks.core.redis_target import RedisTarget


def guard_detached_redis_channels() -> None:
    """Make kombu's Redis channels fail like a lost connection, not with ``AttributeError``, once their
    connection was closed after a broker loss (kombu 5.7).

    When Redis goes away, Celery 5.7 collects and then closes the broker connection, which detaches
    kombu's transport (``client = None``) while channels still hold unacknowledged messages: the
    channel's close then tries to restore them, and a task that finishes later acknowledges its message,
    both through ``Channel._connparams``, which reads ``client.hostname`` of ``None``. ``AttributeError``
    is no connection error, so the worker stops ("Unrecoverable error") instead of reconnecting; with
    late acks a task is in flight almost whenever Redis restarts or fails over. Raising redis-py's
    ``ConnectionError`` instead lets Celery's own handling apply (restore skipped, "Couldn't ack"
    logged); the messages stay in Redis's unacked set and return after the visibility timeout, and the
    next fan-out sends the work again sooner. Idempotent. Shown by tests/chaos/test_redis_restart.py
    (a reconcile in flight when Redis dies); remove once kombu guards this itself.
    """
    from kombu.transport import redis as kombu_redis
    from redis.exceptions import ConnectionError as RedisConnectionError

    original: Any = kombu_redis.Channel._connparams
    if getattr(original, "gco_guarded", False):
        return

    def _connparams(self: Any, asynchronous: bool = False) -> Any:
        transport = self.connection
        if transport is None or transport.client is None:
            raise RedisConnectionError("this channel's broker connection was closed after it was lost")
        return original(self, asynchronous)

    _connparams.gco_guarded = True  # type: ignore[attr-defined]
    setattr(kombu_redis.Channel, "_connparams", _connparams)  # noqa: B010


def redis_config(settings: Settings) -> dict[str, Any]:
    """Broker, result backend and RedBeat on the region's Redis, in the form ``REDIS_URL`` takes."""
    target = settings.redis_target
    transport: dict[str, Any] = {
        "visibility_timeout": settings.visibility_timeout_seconds,
        "socket_timeout": 10,
        "socket_connect_timeout": 5,
        "socket_keepalive": True,
        "health_check_interval": 30,
    }
    conf: dict[str, Any] = {
        "broker_url": target.url(),  # masked by Celery (inspect conf, Flower, banner)
        "result_backend": target.url(),  # masked by Celery
        "broker_transport_options": transport,
        "redbeat_redis_url": target.redbeat_url(),  # no credentials
        "redbeat_redis_options": redbeat_options(target),  # its "password" is masked by Celery
    }
    if target.is_sentinel:
        transport["master_name"] = target.master_name
        conf["result_backend_transport_options"] = {"master_name": target.master_name}
    ssl_options = target.ssl_options()
    if ssl_options:
        conf.update(broker_use_ssl=ssl_options, redis_backend_use_ssl=ssl_options)
        conf["redbeat_redis_use_ssl"] = ssl_options
    return conf


def redbeat_options(target: RedisTarget) -> dict[str, Any]:
    """RedBeat's own client options: bounded sockets, the credentials (never in its URL), and for
    Sentinel the sentinels and the primary's name."""
    options: dict[str, Any] = {"socket_timeout": 5, "socket_connect_timeout": 5, "health_check_interval": 30}
    if target.password is not None:
        options["password"] = target.password
    if target.username:
        options["username"] = target.username
    if target.is_sentinel:
        options.update(
            sentinels=[[host, port] for host, port in target.nodes],
            service_name=target.master_name,
            db=target.db,
        )
    return options
