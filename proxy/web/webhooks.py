"""POST /webhooks/juspay: Juspay's webhooks are signals that an order changed, not answers.

The handler authenticates, reads the whole body (bounded), decodes it defensively, and for
the order the event names invalidates every cached variant on every replica, then refreshes
the default variant with a read from Juspay in the background (coalesced, fenced, checked by
the policy like any read). The webhook's own copy of the order is never stored or served: it
is not byte-for-byte what the order-status API answers, and a webhook credential must not be
a way to write anyone's cached answer.

Who may send what:
- Basic: the credentials are compared with every configured pair (constant time) and give
  the merchants they speak for; the body must name one of them (the order's `merchant_id`,
  the mandate's or chargeback's, else the default merchant), or it is a 403 with nothing
  changed. A merchant with JWT keys takes plain webhooks only with a Basic pair of its own.
- JWT (`{"JWT": "<compact JWE>"}`): the kid in the token's header picks the merchant's
  keyring; the token must decrypt, verify and be fresh (else 401, nothing changed); the event
  inside must be that merchant's. A token already handled is answered 200 `duplicate`: its
  first copy took effect. A token is remembered only once its webhook took effect.

Every event family: order, refund and transaction events name the order in `content.order`;
mandate and chargeback events carry their own objects, searched for an order id. An event
without one, or of a family the proxy does not read, is acknowledged (`ignored`) and counted.

Juspay retries anything but a 200 for a day, so the answer means exactly this: 200 once the
invalidation has taken effect (or there is nothing for us to do: an event we do not act on,
a merchant we do not serve, a duplicate); 503 with Retry-After when Redis could not confirm
it; 401/403 for credentials or tokens refused and 400 for a body that is not a webhook
(nothing is changed for any of them).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import msgspec
import structlog
from aiohttp import hdrs, web

from proxy.appkeys import DECODERS, METRICS, ORDER_SERVICE, RECORD, SETTINGS, WEBHOOK_AUTH
from proxy.core import validators
from proxy.core.errors import (
    BadRequest,
    CacheUnavailableError,
    Forbidden,
    Unauthorized,
)
from proxy.core.lowerbound import floor_of
from proxy.core.models import (
    CHARGEBACK_EVENTS,
    MANDATE_EVENTS,
    ORDER_EVENTS,
    WebhookEvent,
    family_of,
)
from proxy.observe.metrics import Metrics
from proxy.web import webhook_jwt
from proxy.web.auth import WebhookAuth
from proxy.web.errors import error_response
from proxy.web.webhook_jwt import JwtKeyring, VerifiedWebhook, WebhookTokenError
from proxy.web.webhook_limits import WEBHOOK_LIMITS, cheap_refusal

log = structlog.get_logger("proxy.webhooks")

# Juspay's documented event names (proxy.core.models); their lower-cased name is the metric
# label, any other name counts as `other` (and by name class in
# order_proxy_webhook_unknown_events_total).
KNOWN_EVENTS = ORDER_EVENTS | MANDATE_EVENTS | CHARGEBACK_EVENTS
# Name classes (a bounded label), from the event name.
FAMILIES = ("order", "refund", "txn", "mandate", "chargeback", "notification", "other")
# Seconds Juspay (or whoever retries) should wait when the invalidation could not be confirmed.
_RETRY_AFTER = 5
_ok = msgspec.json.Encoder()
_BASIC_CHALLENGE: dict[str, str] = {hdrs.WWW_AUTHENTICATE: 'Basic realm="order-proxy webhooks"'}


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


@dataclass(frozen=True, slots=True)
class Target:
    """What an event is about, as it says (unchecked): the order id and merchant id, if any."""

    order_id: str | None
    merchant_id: str | None


def _text(value: Any, *path: str) -> str | None:
    """A non-empty string at `path` inside loosely read JSON, else None."""
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value if isinstance(value, str) and value else None


def _first(value: Any, paths: tuple[tuple[str, ...], ...]) -> str | None:
    for path in paths:
        found = _text(value, *path)
        if found is not None:
            return found
    return None


# Where a mandate or chargeback object (or a bare transaction) may name its order and merchant.
_NESTED_ORDER = (
    ("order_id",),
    ("order", "order_id"),
    ("txn", "order_id"),
    ("txn_detail", "order_id"),
)
_NESTED_MERCHANT = (
    ("merchant_id",),
    ("order", "merchant_id"),
    ("txn", "merchant_id"),
    ("txn_detail", "merchant_id"),
)


def target_of(event: WebhookEvent, family: str) -> Target:
    """The order (and merchant) an event names: `content.order` for every family that has it,
    else the family's own object (mandate, chargeback, txn), searched defensively."""
    content = event.content
    if content is None or family in ("notification", "other"):
        return Target(None, None)
    order = content.order
    if order is not None and order.order_id is not None:
        return Target(order.order_id, order.merchant_id)
    own = {"mandate": content.mandate, "chargeback": content.chargeback}.get(family)
    for source in (own, content.txn):
        order_id = _first(source, _NESTED_ORDER)
        if order_id is not None:
            return Target(order_id, _first(source, _NESTED_MERCHANT))
    merchant_id = order.merchant_id if order is not None else None
    return Target(None, merchant_id or _first(own, _NESTED_MERCHANT))


def _event_label(name: str) -> str:
    return name.lower() if name in KNOWN_EVENTS else "other"


def _refuse(
    metrics: Metrics, reason: str, error: Unauthorized | Forbidden, *, basic: bool = False
) -> web.Response:
    metrics.auth_failures.labels(reason=reason).inc()
    return error_response(error, _BASIC_CHALLENGE if basic else None)


async def juspay_webhook(request: web.Request) -> web.Response:
    app = request.app
    metrics = app[METRICS]
    auth = app[WEBHOOK_AUTH]
    if not auth.enabled:
        return _refuse(
            metrics,
            "webhook_credentials",
            Unauthorized("webhooks are not configured"),
            basic=True,
        )
    # Compared with every configured pair, before anything from the body is looked at.
    allowed = auth.merchants_for(request.headers.get(hdrs.AUTHORIZATION))
    if not allowed and not auth.has_jwt:
        return _refuse(
            metrics,
            "webhook_credentials",
            Unauthorized("webhook credentials are missing or wrong"),
            basic=True,
        )
    settings = app[SETTINGS]
    limit = settings.server.max_request_body_bytes
    if allowed:
        body = await read_body(request, limit)
    else:
        # JWT webhooks: the token is the credential, so this body's sender is not known yet.
        async with app[WEBHOOK_LIMITS].unauthenticated_body():
            body = await read_body(request, limit)
    try:
        token = webhook_jwt.token_of(body)
    except WebhookTokenError:
        token = None
        if _has_jwt_member(body):
            # {"JWT": <not a token>}: a JWT webhook that cannot be read, whatever else came.
            return _jwt_refused(metrics, WebhookTokenError(webhook_jwt.MALFORMED))
    except RecursionError:
        token = None  # hostile nesting: a bad body (below), never a 500
    if token is not None:
        return await _jwt_webhook(request, auth, token)
    if not allowed:
        return _refuse(
            metrics,
            "webhook_credentials",
            Unauthorized("webhook credentials are missing or wrong"),
            basic=True,
        )
    event = _decode(request, body)
    return await _apply(request, event, allowed, auth, None)


class _JwtProbe(msgspec.Struct):
    jwt: msgspec.Raw = msgspec.field(default=msgspec.Raw(), name="JWT")


_jwt_probe = msgspec.json.Decoder(_JwtProbe)


def _has_jwt_member(body: bytes) -> bool:
    """Whether the body is a JSON object with a non-null "JWT" member (of any shape)."""
    try:
        member = bytes(_jwt_probe.decode(body).jwt)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return False
    return member not in (b"", b"null")


async def _jwt_webhook(request: web.Request, auth: WebhookAuth, token: str) -> web.Response:
    metrics = request.app[METRICS]
    found = auth.keyring_for(webhook_jwt.peek_kid(token))
    if found is None:
        return _jwt_refused(metrics, WebhookTokenError(webhook_jwt.UNKNOWN_KID))
    merchant_id, keyring = found
    cheap = cheap_refusal(token)
    if cheap is not None:
        return _jwt_refused(metrics, cheap)
    try:
        # RSA decryption and verification cost about a millisecond of CPU: off the event loop,
        # a bounded number at once (the keyring is thread-safe: its replay memory is locked,
        # key files re-read safely).
        verified = await request.app[WEBHOOK_LIMITS].decrypt(partial(keyring.verify_token, token))
    except WebhookTokenError as exc:
        if exc.reason == webhook_jwt.REPLAYED:
            # Authentic, fresh, and handled before (Juspay retries): its first copy took effect.
            label = _replayed_label(request, exc.payload)
            metrics.webhook_events.labels(event=label, result="duplicate").inc()
            return _answer("duplicate")
        return _jwt_refused(metrics, exc)
    event = _decode(request, verified.payload)
    return await _apply(request, event, frozenset({merchant_id}), auth, (keyring, verified))


def _replayed_label(request: web.Request, payload: bytes | None) -> str:
    """The event label of a copy already handled: its signed event's name, as when first seen."""
    if payload is None:
        return "other"
    try:
        name = request.app[DECODERS].webhook.decode(payload).event_name
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return "other"  # its first copy was refused as a bad body, and counted then
    return _event_label(name or "")


def _jwt_refused(metrics: Metrics, exc: WebhookTokenError) -> web.Response:
    log.info("webhook_jwt_refused", reason=exc.reason, kid=exc.kid)
    return _refuse(
        metrics, f"jwt_{exc.reason}", Unauthorized(f"the JWT webhook was refused: {exc.reason}")
    )


def _decode(request: web.Request, body: bytes) -> WebhookEvent:
    try:
        return request.app[DECODERS].webhook.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        # RecursionError: hostile nesting is a bad body like any other, never a 500.
        request.app[METRICS].webhook_events.labels(event="invalid", result="rejected").inc()
        raise BadRequest("the body is not a Juspay webhook event") from None


async def _apply(
    request: web.Request,
    event: WebhookEvent,
    allowed: frozenset[str],
    auth: WebhookAuth,
    jwt: tuple[JwtKeyring, VerifiedWebhook] | None,
) -> web.Response:
    """Check the event's merchant against the credentials, then invalidate what it names."""
    app = request.app
    metrics = app[METRICS]
    settings = app[SETTINGS]
    name = event.event_name or ""
    label = _event_label(name)
    family = family_of(name)
    if name not in KNOWN_EVENTS:
        metrics.webhook_unknown_events.labels(family=family).inc()
    target = target_of(event, family)

    merchant_id = target.merchant_id
    if merchant_id is None:
        # The event does not say: the default merchant if these credentials speak for it,
        # else the only merchant they speak for.
        if settings.default_merchant is not None and settings.default_merchant in allowed:
            merchant_id = settings.default_merchant
        elif len(allowed) == 1:
            merchant_id = next(iter(allowed))
    if merchant_id not in allowed:
        if jwt is None and merchant_id is not None and settings.merchant(merchant_id) is None:
            # A merchant this proxy does not serve: nothing of it can be cached here.
            metrics.webhook_events.labels(event=label, result="unknown_merchant").inc()
            return _answer("unknown_merchant")
        reason = "webhook_wrong_merchant"
        if jwt is None and merchant_id is not None and auth.requires_jwt(merchant_id):
            reason = "webhook_jwt_required"
        log.warning("webhook_wrong_merchant", event_name=name[:80], reason=reason)
        return _refuse(
            metrics,
            reason,
            Forbidden(
                "these webhook credentials may not speak for the merchant the event names"
                if reason == "webhook_wrong_merchant"
                else "this merchant's webhooks must be JWT webhooks"
            ),
        )
    record = request[RECORD]
    record.merchant_id = merchant_id

    if target.order_id is None:
        metrics.webhook_events.labels(event=label, result="ignored").inc()
        _handled(jwt)
        return _answer("ignored")
    order_id = validators.order_id(target.order_id)
    record.order_id = order_id
    service = app[ORDER_SERVICE]
    try:
        # What the event shows of the order is the least Juspay's state now is: the reads
        # that follow (on every replica) are held to it (core/lowerbound.py).
        await service.invalidate(merchant_id, order_id, "webhook", floor_of(event, family))
    except CacheUnavailableError as exc:
        metrics.webhook_events.labels(event=label, result="unavailable").inc()
        log.warning("webhook_not_applied", event_name=name[:80], order_id=order_id)
        exc.retry_after = _RETRY_AFTER
        raise
    _handled(jwt)
    service.refresh_later(merchant_id, order_id)
    metrics.webhook_events.labels(event=label, result="invalidated").inc()
    log.info(
        "webhook",
        event_name=name[:80],
        event_id=(event.id or "")[:80],
        order_id=order_id,
        jwt=jwt is not None,
    )
    return _answer("invalidated")


def _handled(jwt: tuple[JwtKeyring, VerifiedWebhook] | None) -> None:
    """Remember a JWT webhook once it took effect, so a copy of it is answered `duplicate`."""
    if jwt is not None:
        keyring, verified = jwt
        keyring.mark_handled(verified)
