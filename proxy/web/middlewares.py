"""The request middleware: request id, error mapping, metrics and the one log line per request."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from proxy.appkeys import METRICS, RECORD, RequestRecord
from proxy.core import validators
from proxy.core.errors import (
    MethodNotAllowed,
    NotFoundError,
    PayloadTooLarge,
    ProxyError,
)
from proxy.observe import accesslog
from proxy.observe.accesslog import REQUEST_ID, AccessLine
from proxy.observe.tracing import CURRENT, Tracing, finish_trace, request_trace
from proxy.web.errors import error_response
from proxy.web.routes import UNMATCHED, Route

log = structlog.get_logger("proxy.access")

_HTTP_ERRORS: dict[int, type[ProxyError]] = {
    404: NotFoundError,
    405: MethodNotAllowed,
    413: PayloadTooLarge,
}


def make_observe(
    routes: Mapping[web.AbstractRoute, Route],
    *,
    log_requests: bool,
    tracing: Tracing | None = None,
) -> Middleware:
    """The outermost middleware. `routes`: the route table's row of each of the app's routes
    (filled as they are registered); `log_requests` is False when info lines are filtered out;
    `tracing`: set when spans are exported (the caller's trace context is continued anyway)."""

    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        return await _observe(request, handler, routes, log_requests, tracing)

    return observe


async def _observe(  # noqa: PLR0915 - a request's whole life, the hot path, top to bottom
    request: web.Request,
    handler: Handler,
    routes: Mapping[web.AbstractRoute, Route],
    log_requests: bool,
    tracing: Tracing | None,
) -> web.StreamResponse:
    started = time.perf_counter()
    row = routes.get(request.match_info.route, UNMATCHED)
    route = row.name
    record = RequestRecord(
        request_id=validators.request_id(request.headers.get("X-Request-Id")), route=route
    )
    request[RECORD] = record
    metrics = request.app[METRICS]
    counted = row.counted
    token = REQUEST_ID.set(record.request_id)
    # The caller's trace, continued (a header lookup when there is none and nothing samples).
    trace = request_trace(request, route, tracing)
    if trace is not None:
        record.trace_id = trace.trace_id
        trace_token = CURRENT.set(trace)
    if counted:
        metrics.requests_in_flight += 1
    status = 499  # what the log says if the caller went away before an answer
    try:
        try:
            response = await handler(request)
        except ProxyError as err:
            record.error_code = err.error_code
            response = error_response(err)
        except web.HTTPException as exc:
            mapped = _HTTP_ERRORS.get(exc.status)
            if mapped is None:
                raise
            mapped_err = mapped(exc.reason)
            record.error_code = mapped_err.error_code
            allow = exc.headers.get("Allow")
            response = error_response(mapped_err, {"Allow": allow} if allow else None)
        except Exception:
            # A bug: answer in Juspay's shape, keep the traceback in the log, not the answer.
            log.exception("unhandled_error", route=route)
            internal = ProxyError("internal error")
            record.error_code = internal.error_code
            response = error_response(internal)
        response.headers["X-Request-Id"] = record.request_id
        status = response.status
        return response
    finally:
        duration = time.perf_counter() - started
        if counted:
            metrics.requests_in_flight -= 1
            # A recorded trace's id rides along as the latency's exemplar.
            exemplar = record.trace_id if trace is not None and trace.span is not None else None
            metrics.observe_request(route, status, record.cache, duration, exemplar)
        if trace is not None:
            finish_trace(trace, record, status)
            CURRENT.reset(trace_token)
        if log_requests or status >= 500:
            if accesslog.fast_path():
                _write_request_line(request, record, status, duration, counted)
            else:
                _log_request(request, record, status, duration, counted)
        REQUEST_ID.reset(token)


def _write_request_line(
    request: web.Request, record: RequestRecord, status: int, duration: float, counted: bool
) -> None:
    """The request line of `_log_request`, field for field, through the allow-listed Struct."""
    info = counted or status >= 400 or record.route == "other"
    level = logging.INFO if info else logging.DEBUG
    sink = accesslog.fast_sink(level)
    if sink is None:
        return
    # Positional: the field order of AccessLine (cheaper than keywords, on every request).
    head = (
        record.request_id,
        "request",
        request.method,
        record.route,
        status,
        accesslog.milliseconds(duration),
        "info" if info else "debug",
        accesslog.timestamp(),
    )
    if counted:
        line = AccessLine(
            *head,
            record.cache,
            record.merchant_id,
            record.order_id,
            record.order_status,
            record.upstream_status,
            record.error_code,
            record.upstream_ms,
            record.coalesced,
            trace_id=record.trace_id,
        )
    else:
        line = AccessLine(
            *head, path=request.path[:200] if info else None, trace_id=record.trace_id
        )
    sink.write_line(accesslog.encode_line(line))


def _log_request(
    request: web.Request, record: RequestRecord, status: int, duration: float, counted: bool
) -> None:
    """The request line through structlog (LOG_FORMAT=console, or logging not configured)."""
    fields: dict[str, object] = {
        "method": request.method,
        "route": record.route,
        "status": status,
        "duration_ms": accesslog.milliseconds(duration),
    }
    if record.trace_id is not None:
        fields["trace_id"] = record.trace_id
    if counted:
        fields["cache"] = record.cache
        for name in ("merchant_id", "order_id", "order_status", "upstream_status", "error_code"):
            value = getattr(record, name)
            if value is not None:
                fields[name] = value
        if record.upstream_ms is not None:
            fields["upstream_ms"] = record.upstream_ms
        if record.coalesced:
            fields["coalesced"] = True
        log.info("request", **fields)
    elif status >= 400 or record.route == "other":
        log.info("request", path=request.path[:200], **fields)
    else:
        log.debug("request", **fields)
