"""Log lines: JSON objects with the task context, readable text by default, context bound and restored
per task, ``extra`` winning over the context, passwords in URLs redacted in both formats, and Celery's
handlers prepared once. Every test logs through its own logger and handler; the root logger is restored."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime

import pytest

from gco_tasks.adapters import logging_setup
from gco_tasks.adapters.logging_setup import (
    ContextFilter,
    FleetJsonFormatter,
    bind,
    celery_logger_ready,
    current_context,
    log_context,
    redact,
    restore,
)


@pytest.fixture()
def capture() -> Iterator[tuple[logging.Logger, io.StringIO, logging.Handler]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("gco_tasks.test_logging")
    logger.handlers, logger.propagate, logger.level = [handler], False, logging.DEBUG
    yield logger, stream, handler
    logger.handlers, logger.propagate, logger.level = [], True, logging.NOTSET


@pytest.fixture()
def root_restored() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers, root.level = handlers, level


@pytest.fixture()
def libraries_restored() -> Iterator[None]:
    """The clamped libraries' levels, restored (the clamp is process-wide)."""
    saved = {name: logging.getLogger(name).level for name in logging_setup.CLAMPED_LOGGERS}
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_the_context_in_a_fixed_order(
    capture: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, stream, handler = capture
    logging_setup.prepare_handler(handler, "json", {"region": "us-east-1"})
    with log_context(endpoint="my-llm", task_id="t-1"):
        logger.info("reconciled %s", "my-llm", extra={"result": "applied", "duration_ms": 41.5, "actions": 2})
    logger.warning("outside a task")
    first, second = lines(stream)
    assert list(first) == [
        "timestamp", "level", "logger", "message",
        "endpoint", "region", "task_id", "result", "duration_ms", "actions",
    ]  # fmt: skip
    assert first["message"] == "reconciled my-llm" and first["level"] == "INFO"
    assert first["logger"] == "gco_tasks.test_logging"
    assert (first["endpoint"], first["task_id"], first["result"]) == ("my-llm", "t-1", "applied")
    assert first["duration_ms"] == 41.5 and first["region"] == "us-east-1"
    assert datetime.fromisoformat(str(first["timestamp"])).utcoffset() is not None
    assert set(second) == {"timestamp", "level", "logger", "message", "region"}


def test_extra_wins_over_the_bound_context(
    capture: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, stream, handler = capture
    logging_setup.prepare_handler(handler, "json", {"region": "us-east-1"})
    with log_context(endpoint="a", region="eu-west-1"):
        logger.info("x", extra={"endpoint": "b"})
    (line,) = lines(stream)
    assert line["endpoint"] == "b" and line["region"] == "eu-west-1"


def test_exceptions_are_one_json_line(capture: tuple[logging.Logger, io.StringIO, logging.Handler]) -> None:
    logger, stream, handler = capture
    logging_setup.prepare_handler(handler, "json", {})
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("failed")
    (line,) = lines(stream)
    assert "RuntimeError: boom" in str(line["exc_info"])


def test_celerys_task_data_loses_the_arguments_and_the_expected_traceback(
    capture: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    """Celery's "succeeded"/"raised expected" lines carry the task's args and kwargs (a reconcile
    message's snapshot holds the record and its env values) in ``extra={"data": ...}``."""
    logger, stream, handler = capture
    logging_setup.prepare_handler(handler, "json", {})
    data = {
        "id": "t-1",
        "name": "gco_tasks.reconcile_endpoint",
        "return_value": "{'result': 'applied'}",
        "runtime": 0.02,
        "args": "['my-llm']",
        "kwargs": "{'snapshot': {'item': {'spec': {'env': {'HF_TOKEN': 'hf_secret'}}}}}",
        "traceback": "Traceback (most recent call last): ...",
    }
    logger.info("Task %(name)s[%(id)s] succeeded", data, extra={"data": data})
    (line,) = lines(stream)
    assert line["data"] == {
        "id": "t-1",
        "name": "gco_tasks.reconcile_endpoint",
        "return_value": "{'result': 'applied'}",
        "runtime": 0.02,
    }
    assert "hf_secret" not in stream.getvalue() and "kwargs" in data, "the caller's dict is left alone"


def test_text_mode_keeps_the_handlers_own_format(
    capture: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, stream, handler = capture
    logging_setup.prepare_handler(handler, "text", {"region": "us-east-1"})
    with log_context(endpoint="my-llm"):
        logger.info("plain %d", 1)
    assert stream.getvalue() == "INFO gco_tasks.test_logging: plain 1\n"


def test_passwords_in_urls_are_redacted_in_both_formats(
    capture: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, stream, handler = capture
    logging_setup.prepare_handler(handler, "text", {})
    logger.error("cannot reach %s", "rediss://:p4ss@cache.example:6379/0")
    logger.error("literal redis://user:p4ss@host/0 and http://example.com/a:b@c")
    handler.setFormatter(FleetJsonFormatter())
    logger.error("cannot reach %s", "redis://default:p4ss@host:6379")
    text = stream.getvalue()
    assert "p4ss" not in text
    assert "rediss://:***@cache.example:6379/0" in text and "redis://user:***@host/0" in text
    assert "http://example.com/a:b@c" in text, "no password there: left alone"


def test_redact() -> None:
    assert redact("redis://:secret@h:1/0") == "redis://:***@h:1/0"
    assert redact("redis://h:1/0") == "redis://h:1/0"
    assert redact("no url") == "no url"


def test_a_bad_format_string_is_not_the_filters_problem() -> None:
    record = logging.LogRecord("x", logging.INFO, "f", 1, "%d", ("a",), None)
    assert ContextFilter().filter(record) and record.msg == "%d"


def test_bind_and_restore_nest() -> None:
    assert current_context() == {}
    outer = bind(task_id="t-1", region="us-east-1")
    inner = bind(endpoint="my-llm", region=None)
    assert current_context() == {"task_id": "t-1", "endpoint": "my-llm"}
    restore(inner)
    assert current_context() == {"task_id": "t-1", "region": "us-east-1"}
    restore(outer)
    assert current_context() == {}


def test_celery_handlers_are_prepared_once_with_the_multiprocessing_logger(root_restored: None) -> None:
    root, pool = logging.getLogger(), logging.getLogger("multiprocessing")
    root_handler, pool_handler = logging.StreamHandler(io.StringIO()), logging.StreamHandler(io.StringIO())
    root.handlers = [root_handler]
    pool.handlers = [pool_handler]
    try:
        for _ in range(2):
            celery_logger_ready(root, "json", {"region": "us-east-1"})
        for handler in (root_handler, pool_handler):
            assert isinstance(handler.formatter, FleetJsonFormatter)
            assert sum(isinstance(f, ContextFilter) for f in handler.filters) == 1
    finally:
        pool.handlers = []


def test_configure_for_other_processes(root_restored: None, capsys: pytest.CaptureFixture[str]) -> None:
    logging_setup.configure("json", "WARNING", region="eu-west-1")
    logging.getLogger("gco_tasks.cli").warning("hello")
    logging.getLogger("gco_tasks.cli").info("dropped")
    (line,) = [json.loads(x) for x in capsys.readouterr().err.splitlines()]
    assert line["message"] == "hello" and line["region"] == "eu-west-1"


@pytest.mark.parametrize("log_format", ["text", "json"])
@pytest.mark.parametrize(
    "name", ["botocore.endpoint", "botocore.parsers", "urllib3.connectionpool", "kubernetes.client.rest"]
)
def test_library_debug_lines_never_carry_credentials_or_bodies(
    root_restored: None, libraries_restored: None, name: str, log_format: str
) -> None:
    """Issue 22, finding 10: with the process at DEBUG (``--loglevel DEBUG``), botocore logged each
    request's ``X-Amz-Security-Token`` and ``Authorization`` headers and each response body (records'
    env values), urllib3 and the Kubernetes client their requests and bodies. Those loggers are clamped
    to INFO, and the handlers' filter drops their DEBUG lines even where a level was set below it."""
    stream = io.StringIO()
    logging_setup.configure(log_format, level=logging.DEBUG)
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    library = logging.getLogger(name)
    library.debug("Sending http request: headers={'X-Amz-Security-Token': 'SessionToken-Planted'}")
    library.setLevel(logging.DEBUG)  # another setup lowers it again: the filter still drops the line
    library.debug('Response body: b\'{"env": {"API_KEY": {"S": "Env-Value-Planted"}}}\'')
    library.warning("Retrying after a broken connection")
    logging.getLogger("gco_tasks.flows.reconciler").debug("our own debug line")
    text = stream.getvalue()
    assert "Planted" not in text
    assert "Retrying after a broken connection" in text and "our own debug line" in text
