"""POST /webhooks/juspay: Juspay's webhooks are signals that an order changed, not answers.

The handler authenticates, reads the whole body (bounded), decodes it defensively, and for
the order the event names invalidates every cached variant on every replica, then refreshes
the default variant with a read from Juspay in the background (coalesced, fenced, checked by
the policy like any read). The webhook's own copy of the order is never stored or served: it
is not byte-for-byte what the order-status API answers, and a webhook credential must not be
a way to write anyone's cached answer.

Juspay retries anything but a 200 for a day, so the answer means exactly this: 200 once the
invalidation has taken effect (or there is nothing for us to do: an event we do not act on,
a merchant we do not serve); 503 with Retry-After when Redis could not confirm it; 401 for
bad credentials and 400 for a body that is not a webhook (nothing is changed for either).
"""

from __future__ import annotations

import msgspec
import structlog
from aiohttp import hdrs, web

from proxy import validation
from proxy.errors import BadRequest, CacheUnavailableError, Unauthorized, error_response
from proxy.keys import DECODERS, METRICS, ORDER_SERVICE, RECORD, SETTINGS, WEBHOOK_AUTH

log = structlog.get_logger("proxy.webhooks")

# Events whose `content.order` names the order that changed (Juspay's webhook documentation).
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
# Seconds Juspay (or whoever retries) should wait when the invalidation could not be confirmed.
_RETRY_AFTER = 5
_ok = msgspec.json.Encoder()


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole request body, however it arrives (segments, chunked), up to `limit` bytes."""
    if request.content_length is not None and request.content_length > limit:
        raise BadRequest(f"webhook body over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.readany():
        size += len(chunk)
        if size > limit:
            raise BadRequest(f"webhook body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


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
    body = await read_body(request, settings.server.max_request_body_bytes)
    try:
        event = app[DECODERS].webhook.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        # RecursionError: hostile nesting is a bad body like any other, never a 500.
        metrics.webhook_events.labels(event="invalid", result="rejected").inc()
        raise BadRequest("the body is not a Juspay webhook event") from None
    name = event.event_name or ""
    label = name.lower() if name in ORDER_EVENTS else "other"
    order = event.content.order if event.content is not None else None
    if name not in ORDER_EVENTS or order is None or order.order_id is None:
        metrics.webhook_events.labels(event=label, result="ignored").inc()
        return _answer("ignored")

    order_id = validation.order_id(order.order_id)
    record = request[RECORD]
    record.order_id = order_id
    merchant_id = order.merchant_id or settings.default_merchant
    if merchant_id is None or settings.merchant(merchant_id) is None:
        metrics.webhook_events.labels(event=label, result="unknown_merchant").inc()
        return _answer("unknown_merchant")
    record.merchant_id = merchant_id
    service = app[ORDER_SERVICE]
    try:
        await service.invalidate(merchant_id, order_id, "webhook")
    except CacheUnavailableError as exc:
        metrics.webhook_events.labels(event=label, result="unavailable").inc()
        log.warning("webhook_not_applied", event_name=name, order_id=order_id)
        exc.retry_after = _RETRY_AFTER
        raise
    service.refresh_later(merchant_id, order_id)
    metrics.webhook_events.labels(event=label, result="invalidated").inc()
    log.info("webhook", event_name=name, event_id=event.id, order_id=order_id)
    return _answer("invalidated")
