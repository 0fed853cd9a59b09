"""Log lines of the fleet: readable text by default, one JSON object per line with ``LOG_FORMAT=json``, each
carrying the endpoint, region and task it belongs to.

Where it stands in the flow: around every process. More in docs/architecture.md.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import Iterator, Mapping
from contextvars import ContextVar, Token
from types import MappingProxyType
from typing import Any, Final

from pythonjsonlogger.json import JsonFormatter

#: The context fields every line can carry, in the order a JSON line shows them.
CONTEXT_FIELDS: Final = ("endpoint", "region", "task_id", "result", "duration_ms")
MULTIPROCESSING_LOGGER: Final = "multiprocessing"  # billiard's, configured by Celery
TEXT_FORMAT: Final = "[%(asctime)s: %(levelname)s/%(processName)s] %(name)s: %(message)s"
#: What Celery's task lines carry in ``extra={"data": ...}`` that no line of ours shows: a task's
#: arguments (an older or forged message may carry a record, env values included) and the traceback
#: of an expected failure (an unexpected one has ``exc_info``).
CELERY_DATA_DROPPED: Final = frozenset({"args", "kwargs", "traceback"})

#: Libraries whose DEBUG lines carry credentials or table and object bodies: botocore logs each request's
#: headers (the access key id in ``Authorization``, ``X-Amz-Security-Token``) and each response body
#: (records, env values included); urllib3 and the Kubernetes client log requests and response bodies.
#: They never log below INFO, whatever the process's level (``--loglevel DEBUG`` included).
CLAMPED_LOGGERS: Final = ("botocore", "boto3", "s3transfer", "urllib3", "kubernetes")
CLAMPED_LEVEL: Final = logging.INFO

_context: ContextVar[Mapping[str, Any]] = ContextVar("gco_log_context", default=MappingProxyType({}))
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s/]+@", re.I)


# --------------------------------------------------------------------------- context


def bind(**fields: Any) -> Token[Mapping[str, Any]]:
    """Add ``fields`` to the context of every following line of this task (or thread); ``None`` values
    remove a field. Returns the token ``restore`` takes."""
    merged = {**_context.get(), **fields}
    return _context.set({key: value for key, value in merged.items() if value is not None})


def restore(token: Token[Mapping[str, Any]]) -> None:
    """Back to the context before the ``bind`` that returned ``token``."""
    _context.reset(token)


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """``bind`` for the duration of a block."""
    token = bind(**fields)
    try:
        yield
    finally:
        restore(token)


def current_context() -> dict[str, Any]:
    return dict(_context.get())


def redact(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``."""
    return _URL_PASSWORD.sub(r"\g<head>***@", text) if "://" in text else text


# --------------------------------------------------------------------------- filters and formatters


class ContextFilter(logging.Filter):
    """Puts the bound context (and ``defaults``, e.g. the process's region) on each record, without
    overriding what a call passed as ``extra``; redacts passwords in URLs; drops the DEBUG lines of
    ``CLAMPED_LOGGERS``."""

    def __init__(self, defaults: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.defaults = dict(defaults or {})

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < CLAMPED_LEVEL and record.name.partition(".")[0] in CLAMPED_LOGGERS:
            return False
        for key, value in {**self.defaults, **_context.get()}.items():
            if key not in record.__dict__:
                setattr(record, key, value)
        data = record.__dict__.get("data")
        if isinstance(data, Mapping) and CELERY_DATA_DROPPED & set(data):
            record.data = {key: value for key, value in data.items() if key not in CELERY_DATA_DROPPED}
        if "://" in str(record.msg) or record.args:
            try:
                message = record.getMessage()
            except Exception:  # a bad format string: logging reports it when the handler formats
                return True
            cleaned = redact(message)
            if cleaned != message:
                record.msg, record.args = cleaned, None
        return True


class FleetJsonFormatter(JsonFormatter):
    """One JSON object per line: timestamp, level, logger, message, the context fields, then extras."""

    def __init__(self) -> None:
        super().__init__(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp=True,
            json_ensure_ascii=False,
        )

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        super().add_fields(log_data, record, message_dict)
        ordered = {key: log_data.pop(key) for key in ("timestamp", "level", "logger", "message")}
        ordered.update((key, log_data.pop(key)) for key in CONTEXT_FIELDS if key in log_data)
        ordered.update(log_data)
        log_data.clear()
        log_data.update(ordered)


def make_formatter(log_format: str) -> logging.Formatter:
    return FleetJsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def prepare_handler(handler: logging.Handler, log_format: str, defaults: Mapping[str, Any]) -> None:
    """Give ``handler`` our context filter (once) and, in JSON mode, the JSON formatter; in text mode the
    handler keeps its own (Celery's) format."""
    if not any(isinstance(f, ContextFilter) for f in handler.filters):
        handler.addFilter(ContextFilter(defaults))
    if log_format == "json" and not isinstance(handler.formatter, FleetJsonFormatter):
        handler.setFormatter(FleetJsonFormatter())


def clamp_library_loggers() -> None:
    """Raise ``CLAMPED_LOGGERS`` to at least INFO where the process's level would let DEBUG through, so
    those lines are not even built (the handlers' filter drops any that a later setup lets through)."""
    for name in CLAMPED_LOGGERS:
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < CLAMPED_LEVEL:
            logger.setLevel(CLAMPED_LEVEL)


def celery_logger_ready(logger: logging.Logger, log_format: str, defaults: Mapping[str, Any]) -> None:
    """After Celery set up ``logger`` (the root or the task logger): prepare each of its handlers, and,
    with the root, those of the pool's ``multiprocessing`` logger, which Celery sets up beside it and
    which does not propagate (it reports a killed pool child)."""
    loggers = [logger]
    if logger is logging.getLogger():
        loggers.append(logging.getLogger(MULTIPROCESSING_LOGGER))
    for each in loggers:
        for handler in each.handlers:
            prepare_handler(handler, log_format, defaults)
    clamp_library_loggers()


def configure(log_format: str, level: int | str = logging.INFO, region: str | None = None) -> None:
    """Logging of a process Celery does not set up: one stderr handler on the root logger."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(make_formatter(log_format))
    prepare_handler(handler, log_format, {"region": region} if region else {})
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    clamp_library_loggers()
