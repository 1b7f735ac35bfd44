"""Juspay's webhook events as the simulator sends them: names, families and payloads.

What Juspay documents (its webhook pages, "Webhook Events and Sample Payloads"):
- The standard envelope: `{"id": "evt_V2_…", "event_name", "date_created": "…Z",
  "content": {"order": <the order, as the order-status API answers it>}}`, for the order,
  refund and transaction events (TXN_CREATED's sample carries the order too).
- "Mandate and Notification webhook events do not follow the standard structure"; mandate
  events are named MANDATE_CREATED, _ACTIVATED, _FAILED, _PAUSED, _RESUMED, _REVOKED, _EXPIRED.
- Chargeback events (received, under review, evidence required, resolved in the merchant's or
  the customer's favour, cancelled, refunded, expired) are listed among the standard events.

What is inferred here, as no sample of them was found: a mandate event's content is
`{"mandate": <the order's mandate block, with the order_id and merchant_id it belongs to>}`, and
a chargeback event, following the standard structure, carries the order (whose `chargebacks[]`
says what changed).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from proxy.core.models import family_of
from proxy.devtools.simulator.bodies import now_stamp
from proxy.devtools.simulator.errors import ControlError

# Juspay's documented names (proxy.core.models) or any other upper-case name (to try how an
# unknown event is handled).
_EVENT_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
_FAILED = frozenset({"AUTHENTICATION_FAILED", "AUTHORIZATION_FAILED", "JUSPAY_DECLINED"})


def default_event(order: dict[str, Any]) -> str:
    """The event Juspay would send for the order as it is now."""
    refunds = [r for r in order.get("refunds") or [] if isinstance(r, dict)]
    if refunds:
        last = refunds[-1].get("status")
        if last == "FAILURE":
            return "ORDER_REFUND_FAILED"
        if last == "MANUAL_REVIEW":
            return "REFUND_MANUAL_REVIEW_NEEDED"
        return "ORDER_REFUNDED"
    status = order.get("status")
    if status == "CHARGED":
        return "ORDER_SUCCEEDED"
    if status == "AUTO_REFUNDED":
        return "AUTO_REFUND_SUCCEEDED"
    if status in _FAILED:
        return "ORDER_FAILED"
    return "TXN_CREATED"


def check_name(name: object) -> str:
    if not isinstance(name, str) or _EVENT_NAME.fullmatch(name) is None:
        raise ControlError(
            "'event_name' must be an upper-case event name such as ORDER_SUCCEEDED, "
            f"MANDATE_ACTIVATED or CHARGEBACK_RECEIVED, not {name!r}"
        )
    return name


def event(name: str, merchant_id: str, order: dict[str, Any]) -> dict[str, Any]:
    """The whole event for one order, stamped now (Juspay: one-second resolution)."""
    # The merchant it is sent to (a seeded sample names the merchant of Juspay's example).
    order = {**order, "merchant_id": merchant_id}
    if family_of(name) == "mandate":
        mandate = order.get("mandate")
        if not isinstance(mandate, dict):
            raise ControlError(
                f"{name} needs the order's mandate block: put one first "
                '(POST /__sim/orders with "fields": {"mandate": {...}})'
            )
        content: dict[str, Any] = {
            "mandate": {
                **mandate,
                "order_id": order.get("order_id"),
                "merchant_id": order["merchant_id"],
            }
        }
    else:
        content = {"order": order}
    return {
        "id": f"evt_V2_{uuid.uuid4().hex}",
        "event_name": name,
        "date_created": now_stamp(),
        "content": content,
    }
