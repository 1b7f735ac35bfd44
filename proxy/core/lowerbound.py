"""A webhook as a lower bound: the least Juspay's state of an order is once it has told us.

Juspay caches order status on its side, so the read that follows a webhook can lag it. The
webhook's own copy of the order is never served (it is not authenticated as an answer, and it
follows the webhook version, not the caller's), but it is evidence: Juspay's state is at least
what it shows. `floor_of` keeps the comparable part of it; `lags` tells whether a read shows
less. What cannot be compared (an unknown status, a field absent on either side) is "not
older": the floor only ever shortens how long an answer is cached, it never refuses one.
"""

from __future__ import annotations

from typing import Any

import msgspec

from proxy.core.models import OrderStatusView, WebhookEvent

# Where a status sits in an order's life. A failed attempt can be retried (back to
# in progress) or succeed, so failures and attempts in progress share a rank.
_STATUS_RANK = {
    "NEW": 0,
    "CREATED": 0,
    "STARTED": 1,
    "PENDING_VBV": 1,
    "AUTHORIZING": 1,
    "VBV_SUCCESSFUL": 1,
    "COD_INITIATED": 1,
    "PARTIAL_CHARGED": 1,
    "AUTHENTICATION_FAILED": 1,
    "AUTHORIZATION_FAILED": 1,
    "JUSPAY_DECLINED": 1,
    "CAPTURE_FAILED": 1,
    "VOID_FAILED": 1,
    "CHARGED": 2,
    "AUTO_REFUNDED": 2,
    "VOIDED": 2,
}
_ATTEMPTS = 1
_REFUND_RANK = {"PENDING": 0, "MANUAL_REVIEW": 0, "SUCCESS": 1, "FAILURE": 1}
_MANDATE_RANK = {
    "CREATED": 0,
    "ACTIVE": 1,
    "PAUSED": 1,
    "REVOKED": 2,
    "FAILED": 2,
    "EXPIRED": 2,
}


class Floor(msgspec.Struct, array_like=True, frozen=True):
    """The comparable part of a webhook: what Juspay's state is at least."""

    event: str
    status: str | None = None
    # (refund key: unique_request_id or id, "" when it has neither; its status)
    refunds: tuple[tuple[str, str], ...] = ()
    chargebacks: int = 0
    mandate_status: str | None = None
    updated: str | None = None


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Floor).decode


def encode(floor: Floor) -> bytes:
    return _encode(floor)


def decode(raw: bytes) -> Floor | None:
    """A stored floor, or None when it cannot be read (written by another build, hostile)."""
    try:
        return _decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _key(value: Any) -> str:
    if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
        return str(value)
    return ""


def _refund_key(refund: Any) -> str:
    """A refund's identity: unique_request_id, else id ("" when it has neither)."""
    if isinstance(refund, dict):
        return _key(refund.get("unique_request_id")) or _key(refund.get("id"))
    return _key(getattr(refund, "unique_request_id", None)) or _key(getattr(refund, "id", None))


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def floor_of(event: WebhookEvent, family: str) -> Floor | None:
    """The lower bound a webhook sets, or None when it shows nothing comparable."""
    name = (event.event_name or "")[:80]
    content = event.content
    if content is None:
        return None
    order = content.order
    status = updated = mandate = None
    refunds: tuple[tuple[str, str], ...] = ()
    chargebacks = 0
    if order is not None:
        status = _str(order.status)
        refunds = tuple(
            (_refund_key(r), _str(r.get("status")) or "")
            for r in _list(order.refunds)[:1000]
            if isinstance(r, dict)
        )
        chargebacks = len([c for c in _list(order.chargebacks) if c is not None])
        updated = _str(order.date_updated) or _str(order.last_updated)
        if isinstance(order.mandate, dict):
            mandate = _str(order.mandate.get("mandate_status"))
    if family == "chargeback":
        chargebacks = max(chargebacks, 1)  # the event itself says there is one
    if family == "mandate" and isinstance(content.mandate, dict):
        mandate = _str(content.mandate.get("mandate_status")) or mandate
    floor = Floor(name, status, refunds, chargebacks, mandate, updated)
    return None if floor == Floor(name) else floor


def lags(view: OrderStatusView, floor: Floor) -> bool:
    """Whether an answer shows less than the webhook did: an earlier status in the order's
    life, a refund missing or less settled, fewer chargebacks, a mandate less advanced, or an
    older update stamp. Anything it cannot compare counts as not older."""
    ours = _STATUS_RANK.get(view.status or "")
    theirs = _STATUS_RANK.get(floor.status or "")
    if ours is not None and theirs is not None:
        if ours < theirs:
            return True
        if ours == theirs == _ATTEMPTS and view.status != floor.status:
            # Attempts and their failures alternate (a failed payment is retried): which of
            # two is newer cannot be told, so the read has not shown the webhook's yet.
            return True
    if _refunds_lag(view, floor.refunds):
        return True
    if len([c for c in view.chargebacks or () if c is not None]) < floor.chargebacks:
        return True
    mandate = view.mandate.mandate_status if view.mandate is not None else None
    ours = _MANDATE_RANK.get(mandate) if isinstance(mandate, str) else None
    theirs = _MANDATE_RANK.get(floor.mandate_status or "")
    if ours is not None and theirs is not None and ours < theirs:
        return True
    updated = _str(view.date_updated) or _str(view.last_updated)
    return updated is not None and floor.updated is not None and updated < floor.updated


def _refunds_lag(view: OrderStatusView, floor: tuple[tuple[str, str], ...]) -> bool:
    if not floor:
        return False
    refunds = list(view.refunds or ())
    if len(refunds) < len(floor):
        return True
    seen = {_refund_key(r): r.status or "" for r in refunds}
    for key, status in floor:
        if not key:
            continue  # counted above; nothing else to match it by
        if key not in seen:
            return True
        ours, theirs = _REFUND_RANK.get(seen[key]), _REFUND_RANK.get(status)
        if ours is not None and theirs is not None and ours < theirs:
            return True
    return False
