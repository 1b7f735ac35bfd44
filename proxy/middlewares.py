"""The request middleware: request id, error mapping, metrics and the one log line per request."""

from __future__ import annotations

import time

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from proxy import validation
from proxy.errors import (
    MethodNotAllowed,
    NotFoundError,
    PayloadTooLarge,
    ProxyError,
    error_response,
)
from proxy.keys import METRICS, RECORD, RequestRecord
from proxy.metrics import ROUTES

log = structlog.get_logger("proxy.access")

_HTTP_ERRORS: dict[int, type[ProxyError]] = {
    404: NotFoundError,
    405: MethodNotAllowed,
    413: PayloadTooLarge,
}


def _route_name(request: web.Request) -> str:
    route = request.match_info.route
    name = route.name if route is not None else None
    return name or "other"


def make_observe(*, log_requests: bool) -> Middleware:
    """The outermost middleware; `log_requests` is False when info lines are filtered out."""

    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        return await _observe(request, handler, log_requests)

    return observe


async def _observe(
    request: web.Request, handler: Handler, log_requests: bool
) -> web.StreamResponse:
    started = time.perf_counter()
    route = _route_name(request)
    record = RequestRecord(
        request_id=validation.request_id(request.headers.get("X-Request-Id")), route=route
    )
    request[RECORD] = record
    metrics = request.app[METRICS]
    counted = route in ROUTES
    structlog.contextvars.bind_contextvars(request_id=record.request_id)
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
            metrics.observe_request(route, status, record.cache, duration)
        if log_requests or status >= 500:
            _log_request(request, record, status, duration, counted)
        structlog.contextvars.unbind_contextvars("request_id")


def _log_request(
    request: web.Request, record: RequestRecord, status: int, duration: float, counted: bool
) -> None:
    fields: dict[str, object] = {
        "method": request.method,
        "route": record.route,
        "status": status,
        "duration_ms": round(duration * 1000, 3),
    }
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
