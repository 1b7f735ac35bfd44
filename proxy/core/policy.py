"""The one decision on a Juspay answer: what kind it is, whether to cache it and how long.

Pure functions, no I/O; the order service asks `decide` once per upstream answer (a 200
that is not the order asked for is INVALID, which the service turns into a bad-body error).

The rules, from Juspay's own documentation:
- CHARGED, AUTO_REFUNDED and VOIDED no longer change once every refund is settled (SUCCESS or
  FAILURE): cached long.
- A refund that is still PENDING (or in MANUAL_REVIEW) changes the order: cached briefly.
- So does a mandate that is still live (CREATED, ACTIVE, PAUSED: it lasts until revoked or
  expired), a chargeback that is still open and an offer still INITIATED (redeemed, awaiting
  the transaction's final status): such a final order is cached briefly too, and never served
  stale.
- Failure statuses are not final: an order allows up to 25 attempts, and a late gateway success
  turns a failed order into CHARGED. Cached briefly.
- Juspay's NOT_FOUND answer may be cached briefly, off by default (an order created a moment
  later must be seen).
- Everything else (NEW, PENDING_VBV, AUTHORIZING, PARTIAL_CHARGED, any status we do not know,
  any body that is not the order asked for) is never cached.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from proxy.core.models import (
    ChargebackStatusView,
    MandateStatusView,
    OfferStatusView,
    OrderStatusView,
)

FINAL_STATUSES = frozenset({"CHARGED", "AUTO_REFUNDED", "VOIDED"})
FAILURE_STATUSES = frozenset(
    {
        "AUTHENTICATION_FAILED",
        "AUTHORIZATION_FAILED",
        "JUSPAY_DECLINED",
        "CAPTURE_FAILED",
        "VOID_FAILED",
    }
)
# Known statuses that are still moving: classed IN_PROGRESS (never cached), so metrics can tell
# them from statuses we do not know (UNKNOWN).
IN_PROGRESS_STATUSES = frozenset(
    {
        "NEW",
        "STARTED",
        "PENDING_VBV",
        "VBV_SUCCESSFUL",
        "AUTHORIZED",
        "AUTHORIZING",
        "COD_INITIATED",
        "VOID_INITIATED",
        "CAPTURE_INITIATED",
        "PARTIAL_CHARGED",
    }
)
NOT_FOUND = "NOT_FOUND"
SETTLED_REFUND_STATUSES = frozenset({"SUCCESS", "FAILURE"})
# Juspay's mandate statuses: CREATED, ACTIVE and PAUSED can still change; these cannot. Any other
# value (or none) counts as live, as an unknown order status counts as moving.
OPEN_MANDATE_STATUSES = frozenset({"CREATED", "ACTIVE", "PAUSED"})
FINAL_MANDATE_STATUSES = frozenset({"REVOKED", "FAILURE", "EXPIRED"})
# Juspay's chargeback lifecycle, from its chargeback webhook events: received, under review and
# evidence required are open; resolved (in the merchant's or the customer's favour), cancelled,
# refunded and expired are closed. The order-status pages do not publish the chargeback object,
# so a chargeback counts as closed only when its `dispute_status` (else `status`), upper-cased
# and without a `CHARGEBACK_` prefix, is one of these, or when it has a `date_resolved`;
# anything else, an unknown or missing status included, counts as open.
OPEN_CHARGEBACK_STATUSES = frozenset({"RECEIVED", "UNDER_REVIEW", "EVIDENCE_REQUIRED"})
CLOSED_CHARGEBACK_STATUSES = frozenset(
    {
        "RESOLVED",
        "RESOLVED_IN_MERCHANT_FAVOUR",
        "RESOLVED_IN_MERCHANT_FAVOR",
        "RESOLVED_IN_CUSTOMER_FAVOUR",
        "RESOLVED_IN_CUSTOMER_FAVOR",
        "CANCELLED",
        "CANCELED",
        "REFUNDED",
        "EXPIRED",
    }
)
# Juspay's offer statuses (offers[] in the order): INITIATED is redeemed but awaits the
# transaction's final status, so it will still turn AVAILED, REFUNDED or FAILED. AVAILED can
# become REFUNDED only through a refund, which the refund rules already cover. Any other value
# (or none) counts as open, as an unknown mandate status does; compared upper-cased.
OPEN_OFFER_STATUSES = frozenset({"INITIATED"})
SETTLED_OFFER_STATUSES = frozenset({"AVAILED", "REFUNDED", "FAILED"})
CACHEABLE_STATUSES = FINAL_STATUSES | FAILURE_STATUSES | {NOT_FOUND}


class StatusClass(enum.StrEnum):
    """What kind of answer Juspay gave; also a bounded label for metrics and logs."""

    FINAL = "final"
    REFUND_PENDING = "refund_pending"
    CHARGEBACK_OPEN = "chargeback_open"  # a final status with an open chargeback
    MANDATE_OPEN = "mandate_open"  # a final status whose mandate is still live
    OFFER_PENDING = "offer_pending"  # a final status with an offer still INITIATED
    FAILURE = "failure"
    NOT_FOUND = "not_found"
    IN_PROGRESS = "in_progress"
    UNKNOWN = "unknown"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """TTLs in seconds; 0 turns caching of that class off."""

    final_ttl: int = 24 * 3600
    failure_ttl: int = 30
    refund_pending_ttl: int = 30
    # A final status whose mandate is live, or with an open chargeback or a pending offer.
    changing_ttl: int = 30
    not_found_ttl: int = 0
    # Per-status overrides, only for statuses in CACHEABLE_STATUSES (checked by settings).
    status_ttls: tuple[tuple[str, int], ...] = ()

    def describe(self) -> dict[str, int]:
        out = {
            "final": self.final_ttl,
            "failure": self.failure_ttl,
            "refund_pending": self.refund_pending_ttl,
            "changing": self.changing_ttl,
            "not_found": self.not_found_ttl,
        }
        out.update({f"status:{status}": ttl for status, ttl in self.status_ttls})
        return out


@dataclass(frozen=True, slots=True)
class Decision:
    """The policy's verdict on one upstream answer."""

    status_class: StatusClass
    ttl: int  # seconds; 0 means do not store

    @property
    def store(self) -> bool:
        return self.ttl > 0


def _classify(http_status: int, view: OrderStatusView | None, order_id: str) -> StatusClass:
    """What kind of answer this is, for the order that was asked for."""
    if view is None:
        return StatusClass.INVALID
    # Juspay's unknown-order answer is an HTTP 400 (older docs: 404) with status NOT_FOUND.
    if http_status in (400, 404):
        if view.status == NOT_FOUND and view.order_id in (None, order_id):
            return StatusClass.NOT_FOUND
        return StatusClass.INVALID
    if http_status != 200 or view.order_id != order_id or not view.status:
        return StatusClass.INVALID
    status = view.status
    if status in FINAL_STATUSES:
        # Several may hold; the first of these names the class (all are short-lived).
        refunds = view.refunds or []
        if not all(refund.status in SETTLED_REFUND_STATUSES for refund in refunds):
            return StatusClass.REFUND_PENDING
        if any(chargeback_is_open(cb) for cb in view.chargebacks or []):
            return StatusClass.CHARGEBACK_OPEN
        if view.mandate is not None and mandate_is_open(view.mandate):
            return StatusClass.MANDATE_OPEN
        if any(offer_is_pending(offer) for offer in view.offers or []):
            return StatusClass.OFFER_PENDING
        return StatusClass.FINAL
    if status in FAILURE_STATUSES:
        return StatusClass.FAILURE
    if status in IN_PROGRESS_STATUSES:
        return StatusClass.IN_PROGRESS
    # NOT_FOUND in a 200, or a status Juspay added after we were written.
    return StatusClass.UNKNOWN


def mandate_is_open(mandate: MandateStatusView) -> bool:
    """A mandate that can still change: CREATED, ACTIVE, PAUSED, or a status we do not know."""
    status = mandate.mandate_status
    return not (isinstance(status, str) and status in FINAL_MANDATE_STATUSES)


def offer_is_pending(offer: OfferStatusView | None) -> bool:
    """An offer that can still change: INITIATED, or a status we do not know (or none)."""
    if offer is None:
        return False
    status = offer.status
    return not (isinstance(status, str) and status.strip().upper() in SETTLED_OFFER_STATUSES)


def chargeback_is_open(chargeback: ChargebackStatusView | None) -> bool:
    """A chargeback not (yet) known to be closed; see CLOSED_CHARGEBACK_STATUSES."""
    if chargeback is None:
        return False
    if chargeback.date_resolved not in (None, ""):
        return False
    raw = chargeback.dispute_status if chargeback.dispute_status is not None else chargeback.status
    if not isinstance(raw, str):
        return True
    status = raw.strip().upper().replace(" ", "_").replace("-", "_")
    status = status.removeprefix("CHARGEBACK_")
    return status not in CLOSED_CHARGEBACK_STATUSES


def decide(
    http_status: int, view: OrderStatusView | None, order_id: str, policy: CachePolicy
) -> Decision:
    """What kind of answer Juspay gave for `order_id`, whether to store it, and how long."""
    status_class = _classify(http_status, view, order_id)
    ttl = {
        StatusClass.FINAL: policy.final_ttl,
        StatusClass.REFUND_PENDING: policy.refund_pending_ttl,
        StatusClass.CHARGEBACK_OPEN: policy.changing_ttl,
        StatusClass.MANDATE_OPEN: policy.changing_ttl,
        StatusClass.OFFER_PENDING: policy.changing_ttl,
        StatusClass.FAILURE: policy.failure_ttl,
        StatusClass.NOT_FOUND: policy.not_found_ttl,
    }.get(status_class, 0)
    # A per-status override replaces the class TTL; a pending refund, a live mandate, an open
    # chargeback and a pending offer always keep their short ones.
    if status_class in _OVERRIDABLE and view is not None and view.status is not None:
        ttl = dict(policy.status_ttls).get(view.status, ttl)
    return Decision(status_class, ttl)


_OVERRIDABLE = frozenset({StatusClass.FINAL, StatusClass.FAILURE, StatusClass.NOT_FOUND})
