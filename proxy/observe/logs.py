"""structlog set-up: JSON lines on stdout (or console rendering), one pipeline for all loggers.

structlog's own loggers take the fast native path; the standard library's (aiohttp, asyncio,
redis) are rendered by the same processors through ProcessorFormatter, so every line on stdout
has one shape. A redaction step masks any field whose name says it holds a secret or a
customer's personal data, whatever code logged it.

Everything goes to stdout through one `LogSink` (proxy.observe.accesslog): buffered, written in
batches, bounded, so a slow stdout never blocks the event loop. The per-request access line
does not go through structlog at all: it is built from an allow-listed msgspec Struct
(proxy.observe.accesslog.AccessLine) when the format is JSON, and through structlog otherwise.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO, cast

import structlog
from aiohttp.http_exceptions import HttpProcessingError

from proxy.config.secrets import MASK
from proxy.observe import accesslog

_SENSITIVE = (
    "authorization",
    "api_key",
    "apikey",
    "password",
    "secret",
    "token",
    "customer_email",
    "customer_phone",
    "card",
    "cookie",
)


def redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in event:
        lowered = key.lower()
        if any(word in lowered for word in _SENSITIVE):
            event[key] = MASK
    return event


def add_request_id(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """The id of the request being handled, on every line logged while handling it."""
    request_id = accesslog.REQUEST_ID.get()
    if request_id is not None:
        event.setdefault("request_id", request_id)
    return event


def _no_request_bytes(record: logging.LogRecord) -> bool:
    """aiohttp's HTTP parser errors quote the raw request (a client key, say): such an
    exception is logged by its kind only, whoever logs it."""
    exc = record.exc_info[1] if record.exc_info else None
    if isinstance(exc, HttpProcessingError):
        record.msg = f"{record.getMessage()}: {type(exc).__name__}"
        record.args = None
        record.exc_info = None
        record.exc_text = None
    return True


def configure_logging(level: str = "info", fmt: str = "json", stream: TextIO | None = None) -> None:
    raw = stream if stream is not None else sys.stdout
    numeric = logging.getLevelNamesMapping()[level.upper()]
    sink = accesslog.LogSink(raw)
    accesslog.install_sink(sink)
    accesslog.configure(json_lines=fmt != "console", level=numeric)
    out = cast(TextIO, accesslog.SinkFile(sink, raw))
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        add_request_id,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
    ]
    renderer: structlog.typing.Processor
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=raw.isatty())
    else:
        renderer = structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        # Cached loggers keep the stream they first saw: only cache when writing to stdout
        # (tests and tools that pass their own stream reconfigure freely).
        cache_logger_on_first_use=stream is None,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    handler.addFilter(_no_request_bytes)
    root = logging.getLogger()
    root.handlers = [handler]
    # Python's warnings too become JSON lines (on stdout, with the rest), never plain text.
    logging.captureWarnings(True)
    root.setLevel(numeric)
    # aiohttp's access log is replaced by our own per-request line.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
