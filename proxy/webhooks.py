"""POST /webhooks/juspay: Juspay's order and refund webhooks refresh or drop cache entries.

Juspay retries anything but a 200 for hours, so the answer is fast and final: a request with
bad credentials gets 401, a malformed or oversized body 400 (and changes nothing), and every
well-formed event 200, whether it was applied, ignored (an event we do not act on) or stale.
"""

from __future__ import annotations

import datetime as dt

import msgspec
import structlog
from aiohttp import hdrs, web

from proxy import validation
from proxy.errors import BadRequest, Unauthorized, error_response
from proxy.keys import DECODERS, METRICS, ORDER_SERVICE, RECORD, SETTINGS, WEBHOOK_AUTH

log = structlog.get_logger("proxy.webhooks")

# Events whose payload carries the full order (see Juspay's webhook documentation).
ORDER_EVENTS = frozenset(
    {
        "ORDER_SUCCEEDED",
        "ORDER_FAILED",
        "ORDER_REFUNDED",
        "ORDER_REFUND_FAILED",
        "REFUND_MANUAL_REVIEW_NEEDED",
        "AUTO_REFUND_SUCCEEDED",
        "AUTO_REFUND_FAILED",
        "TXN_CREATED",
    }
)
_ok = msgspec.json.Encoder()


def _event_time(value: str | None) -> float | None:
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


async def _read_capped(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise BadRequest(f"webhook body over {limit} bytes")
    body = await request.content.read(limit + 1)
    if len(body) > limit:
        raise BadRequest(f"webhook body over {limit} bytes")
    return body


def _answer(result: str) -> web.Response:
    return web.Response(
        body=_ok.encode({"status": "ok", "result": result}), content_type="application/json"
    )


async def juspay_webhook(request: web.Request) -> web.Response:
    app = request.app
    metrics = app[METRICS]
    credentials = app.get(WEBHOOK_AUTH)
    if credentials is None or not credentials.check(request.headers.get(hdrs.AUTHORIZATION)):
        metrics.auth_failures.labels(reason="webhook_credentials").inc()
        return error_response(
            Unauthorized("webhook credentials are missing or wrong"),
            {hdrs.WWW_AUTHENTICATE: 'Basic realm="order-proxy webhooks"'},
        )
    settings = app[SETTINGS]
    decoders = app[DECODERS]
    body = await _read_capped(request, settings.server.max_request_body_bytes)
    try:
        event = decoders.webhook.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        metrics.webhook_events.labels(event="invalid", result="rejected").inc()
        raise BadRequest("the body is not a Juspay webhook event") from None
    name = event.event_name or ""
    label = name.lower() if name in ORDER_EVENTS else "other"
    order_body = bytes(event.content.order) if event.content is not None else b""
    if name not in ORDER_EVENTS or order_body in (b"", b"null"):
        metrics.webhook_events.labels(event=label, result="ignored").inc()
        return _answer("ignored")

    try:
        view = decoders.status_view.decode(order_body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        metrics.webhook_events.labels(event=label, result="rejected").inc()
        raise BadRequest("content.order is not an order") from None
    order_id = validation.order_id(view.order_id)
    record = request[RECORD]
    record.order_id = order_id
    merchant_id = view.merchant_id or settings.default_merchant
    if merchant_id is None or settings.merchant(merchant_id) is None:
        metrics.webhook_events.labels(event=label, result="unknown_merchant").inc()
        return _answer("unknown_merchant")
    record.merchant_id = merchant_id
    result = await app[ORDER_SERVICE].absorb_webhook(
        merchant_id, order_id, order_body, view, _event_time(event.date_created)
    )
    record.order_status = view.status
    metrics.webhook_events.labels(event=label, result=result).inc()
    log.info("webhook", event_name=name, event_id=event.id, order_id=order_id, result=result)
    return _answer(result)
