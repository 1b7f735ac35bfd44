"""What a caller acts on in an order's answer, whatever version and options it was read with."""

from __future__ import annotations

import hashlib

from proxy.core.models import OrderStatusView


def fingerprint(status_code: int, view: OrderStatusView | None) -> str:
    """A short digest of an answer's state: HTTP status, order status, each refund's status,
    the mandate's and each chargeback's. Two variants of one order (another `version`, the
    gateway response or not) have the same fingerprint while the order has not changed, so
    a fresh read of one variant can tell that the others are out of date."""
    parts: list[str] = [str(status_code)]
    if view is not None:
        parts.append(view.status or "")
        parts.append(",".join(sorted(refund.status or "" for refund in view.refunds or ())))
        mandate = view.mandate.mandate_status if view.mandate is not None else None
        parts.append(str(mandate) if mandate is not None else "")
        chargebacks = [
            f"{cb.dispute_status}/{cb.status}" for cb in view.chargebacks or () if cb is not None
        ]
        parts.append(",".join(sorted(chargebacks)))
    return hashlib.blake2b("|".join(parts).encode(), digest_size=6).hexdigest()
