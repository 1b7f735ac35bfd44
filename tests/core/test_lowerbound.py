"""A webhook as a lower bound: what each event family says, and which reads show less."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from proxy.core import lowerbound
from proxy.core.lowerbound import Floor, floor_of, lags
from proxy.core.models import OrderStatusView, WebhookEvent, family_of


def event(name: str, content: dict[str, Any]) -> WebhookEvent:
    body = {"id": "evt_1", "event_name": name, "date_created": "2026-12-05T08:00:00Z"}
    return msgspec.json.decode(msgspec.json.encode({**body, "content": content}), type=WebhookEvent)


def view(**order: Any) -> OrderStatusView:
    return msgspec.json.decode(msgspec.json.encode(order), type=OrderStatusView)


def refund(key: str, status: str) -> dict[str, Any]:
    return {"id": f"id_{key}", "unique_request_id": key, "status": status, "amount": 1.0}


REFUNDED = {"order_id": "O1", "status": "CHARGED", "refunds": [refund("r1", "SUCCESS")]}


def floor(name: str, content: dict[str, Any]) -> Floor | None:
    return floor_of(event(name, content), family_of(name))


# (case, event name, content, the read Juspay answered, lags?)
CASES: list[tuple[str, str, dict[str, Any], dict[str, Any], bool]] = [
    # --- order family
    ("order: paid, read still pending", "ORDER_SUCCEEDED",
     {"order": {"order_id": "O1", "status": "CHARGED"}}, {"status": "PENDING_VBV"}, True),
    ("order: paid, read paid", "ORDER_SUCCEEDED",
     {"order": {"order_id": "O1", "status": "CHARGED"}}, {"status": "CHARGED"}, False),
    ("order: failed, read still new", "ORDER_FAILED",
     {"order": {"order_id": "O1", "status": "AUTHORIZATION_FAILED"}}, {"status": "NEW"}, True),
    ("order: failed, read the attempt before", "ORDER_FAILED",
     {"order": {"order_id": "O1", "status": "AUTHORIZATION_FAILED"}},
     {"status": "PENDING_VBV"}, True),
    ("order: failed, read paid (a retry succeeded)", "ORDER_FAILED",
     {"order": {"order_id": "O1", "status": "AUTHORIZATION_FAILED"}}, {"status": "CHARGED"},
     False),
    ("order: paid, read failed", "ORDER_SUCCEEDED",
     {"order": {"order_id": "O1", "status": "CHARGED"}},
     {"status": "AUTHENTICATION_FAILED"}, True),
    ("order: unknown status on either side", "ORDER_SUCCEEDED",
     {"order": {"order_id": "O1", "status": "SOMETHING_NEW"}}, {"status": "NEW"}, False),
    ("order: older update stamp", "ORDER_SUCCEEDED",
     {"order": {"order_id": "O1", "status": "CHARGED", "date_updated": "2026-12-05T08:00:05Z"}},
     {"status": "CHARGED", "date_updated": "2026-12-05T08:00:01Z"}, True),
    ("order: same update stamp", "ORDER_SUCCEEDED",
     {"order": {"order_id": "O1", "status": "CHARGED", "last_updated": "2026-12-05T08:00:05Z"}},
     {"status": "CHARGED", "last_updated": "2026-12-05T08:00:05Z"}, False),
    # --- refund family
    ("refund: read without the refund", "ORDER_REFUNDED", {"order": REFUNDED},
     {"status": "CHARGED", "refunds": []}, True),
    ("refund: read with it pending", "ORDER_REFUNDED", {"order": REFUNDED},
     {"status": "CHARGED", "refunds": [refund("r1", "PENDING")]}, True),
    ("refund: read with it settled", "ORDER_REFUNDED", {"order": REFUNDED},
     {"status": "CHARGED", "refunds": [refund("r1", "SUCCESS")]}, False),
    ("refund: read with another refund only", "ORDER_REFUNDED", {"order": REFUNDED},
     {"status": "CHARGED", "refunds": [refund("r2", "SUCCESS")]}, True),
    ("refund: read with it and a newer one", "ORDER_REFUNDED", {"order": REFUNDED},
     {"status": "CHARGED", "refunds": [refund("r1", "SUCCESS"), refund("r2", "PENDING")]},
     False),
    ("refund failed: read with it pending", "ORDER_REFUND_FAILED",
     {"order": {**REFUNDED, "refunds": [refund("r1", "FAILURE")]}},
     {"status": "CHARGED", "refunds": [refund("r1", "MANUAL_REVIEW")]}, True),
    ("auto refund: read still charged", "AUTO_REFUND_SUCCEEDED",
     {"order": {"order_id": "O1", "status": "AUTO_REFUNDED"}}, {"status": "PENDING_VBV"}, True),
    # --- txn family
    ("txn: created, read still new", "TXN_CREATED",
     {"order": {"order_id": "O1", "status": "PENDING_VBV"}}, {"status": "NEW"}, True),
    # --- chargeback family
    ("chargeback: read without one", "CHARGEBACK_RECEIVED",
     {"chargeback": {"id": "cb1", "order_id": "O1"}}, {"status": "CHARGED"}, True),
    ("chargeback: read with it", "CHARGEBACK_RECEIVED",
     {"chargeback": {"id": "cb1", "order_id": "O1"}},
     {"status": "CHARGED", "chargebacks": [{"dispute_status": "OPEN"}]}, False),
    # --- mandate family
    ("mandate: active, read still created", "MANDATE_ACTIVATED",
     {"mandate": {"order_id": "O1", "mandate_status": "ACTIVE"}},
     {"status": "CHARGED", "mandate": {"mandate_status": "CREATED"}}, True),
    ("mandate: revoked, read active", "MANDATE_REVOKED",
     {"mandate": {"order_id": "O1", "mandate_status": "REVOKED"}},
     {"status": "CHARGED", "mandate": {"mandate_status": "ACTIVE"}}, True),
    ("mandate: active, read revoked", "MANDATE_ACTIVATED",
     {"mandate": {"order_id": "O1", "mandate_status": "ACTIVE"}},
     {"status": "CHARGED", "mandate": {"mandate_status": "REVOKED"}}, False),
    ("mandate: unknown status", "MANDATE_PAUSED",
     {"mandate": {"order_id": "O1", "mandate_status": "ON_HOLD"}},
     {"status": "CHARGED", "mandate": {"mandate_status": "CREATED"}}, False),
]  # fmt: skip


@pytest.mark.parametrize(("name", "content", "read", "lagging"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])  # fmt: skip
def test_a_read_lags_a_webhook_only_when_it_shows_less(
    name: str, content: dict[str, Any], read: dict[str, Any], lagging: bool
) -> None:
    bound = floor(name, content)
    assert bound is not None
    assert lags(view(**read), bound) is lagging


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("NOTIFICATION_SUCCEEDED", {"mandate": {"order_id": "O1"}}),
        ("TXN_CHARGED", {"txn": {"order_id": "O1", "status": "CHARGED"}}),
        ("ORDER_SUCCEEDED", {"order": {"order_id": "O1"}}),
        ("ORDER_SUCCEEDED", {}),
    ],
)
def test_a_webhook_that_shows_nothing_comparable_sets_no_floor(
    name: str, content: dict[str, Any]
) -> None:
    assert floor(name, content) is None


def test_an_odd_copy_in_the_webhook_is_read_loosely() -> None:
    odd = {"order": {"order_id": "O1", "status": 7, "refunds": "none", "chargebacks": {"x": 1},
                     "mandate": ["ACTIVE"], "date_updated": 12}}  # fmt: skip
    assert floor("ORDER_REFUNDED", odd) is None
    refunds = {"order": {"order_id": "O1", "refunds": [5, {"status": "SUCCESS"}]}}
    bound = floor("ORDER_REFUNDED", refunds)
    assert bound == Floor("ORDER_REFUNDED", refunds=(("", "SUCCESS"),))
    assert lags(view(status="CHARGED", refunds=[]), bound)  # fewer refunds than it showed
    assert not lags(view(status="CHARGED", refunds=[refund("x", "PENDING")]), bound)


def test_a_stored_floor_round_trips_and_a_hostile_one_is_ignored() -> None:
    bound = floor("ORDER_REFUNDED", {"order": REFUNDED})
    assert bound is not None
    assert lowerbound.decode(lowerbound.encode(bound)) == bound
    assert lowerbound.decode(b"\xc1 not msgpack") is None
    assert lowerbound.decode(msgspec.msgpack.encode([[[[1]]]])) is None
