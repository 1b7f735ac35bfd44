"""The caching policy, table-driven over every Juspay status and refund state."""

from __future__ import annotations

import pytest

from proxy.core.models import OrderStatusView, RefundStatusView
from proxy.core.policy import (
    FAILURE_STATUSES,
    FINAL_STATUSES,
    IN_PROGRESS_STATUSES,
    CachePolicy,
    StatusClass,
    decide,
)

POLICY = CachePolicy(final_ttl=86400, failure_ttl=30, refund_pending_ttl=20, not_found_ttl=0)
ID = "ORD1"


def view(status: str | None, *refunds: str | None, order_id: str | None = ID) -> OrderStatusView:
    return OrderStatusView(
        order_id=order_id,
        status=status,
        refunds=[RefundStatusView(status=r) for r in refunds] if refunds else None,
    )


# Every status in Juspay's published list, with what the policy must do for a 200 answer.
STATUS_TABLE = [
    ("NEW", StatusClass.IN_PROGRESS, 0),
    ("STARTED", StatusClass.IN_PROGRESS, 0),
    ("CHARGED", StatusClass.FINAL, 86400),
    ("JUSPAY_DECLINED", StatusClass.FAILURE, 30),
    ("PENDING_VBV", StatusClass.IN_PROGRESS, 0),
    ("VBV_SUCCESSFUL", StatusClass.IN_PROGRESS, 0),
    ("AUTHORIZED", StatusClass.IN_PROGRESS, 0),
    ("AUTHENTICATION_FAILED", StatusClass.FAILURE, 30),
    ("AUTHORIZATION_FAILED", StatusClass.FAILURE, 30),
    ("AUTHORIZING", StatusClass.IN_PROGRESS, 0),
    ("COD_INITIATED", StatusClass.IN_PROGRESS, 0),
    ("VOIDED", StatusClass.FINAL, 86400),
    ("VOID_INITIATED", StatusClass.IN_PROGRESS, 0),
    ("CAPTURE_INITIATED", StatusClass.IN_PROGRESS, 0),
    ("CAPTURE_FAILED", StatusClass.FAILURE, 30),
    ("VOID_FAILED", StatusClass.FAILURE, 30),
    ("AUTO_REFUNDED", StatusClass.FINAL, 86400),
    ("PARTIAL_CHARGED", StatusClass.IN_PROGRESS, 0),
    ("NOT_FOUND", StatusClass.UNKNOWN, 0),  # NOT_FOUND inside a 200 is not Juspay's shape
    ("SOMETHING_NEW", StatusClass.UNKNOWN, 0),
    ("charged", StatusClass.UNKNOWN, 0),  # statuses are keyed exactly, case included
]


@pytest.mark.parametrize(("status", "status_class", "ttl"), STATUS_TABLE)
def test_every_status_is_classified_and_timed(
    status: str, status_class: StatusClass, ttl: int
) -> None:
    decision = decide(200, view(status), ID, POLICY)
    assert decision.status_class is status_class
    assert decision.ttl == ttl
    assert decision.store is (ttl > 0)


def test_table_covers_every_known_status() -> None:
    listed = {row[0] for row in STATUS_TABLE}
    assert listed >= FINAL_STATUSES | FAILURE_STATUSES | IN_PROGRESS_STATUSES


@pytest.mark.parametrize(
    ("status", "refunds", "status_class", "ttl"),
    [
        ("CHARGED", ("SUCCESS",), StatusClass.FINAL, 86400),
        ("CHARGED", ("SUCCESS", "FAILURE"), StatusClass.FINAL, 86400),
        ("CHARGED", ("PENDING",), StatusClass.REFUND_PENDING, 20),
        ("CHARGED", ("SUCCESS", "PENDING"), StatusClass.REFUND_PENDING, 20),
        ("CHARGED", ("MANUAL_REVIEW",), StatusClass.REFUND_PENDING, 20),
        ("CHARGED", (None,), StatusClass.REFUND_PENDING, 20),
        ("AUTO_REFUNDED", ("PENDING",), StatusClass.REFUND_PENDING, 20),
        ("VOIDED", ("SUCCESS",), StatusClass.FINAL, 86400),
    ],
)
def test_refunds_must_be_settled_for_the_long_ttl(
    status: str, refunds: tuple[str | None, ...], status_class: StatusClass, ttl: int
) -> None:
    decision = decide(200, view(status, *refunds), ID, POLICY)
    assert (decision.status_class, decision.ttl) == (status_class, ttl)


@pytest.mark.parametrize(
    ("http_status", "order_view"),
    [
        (200, view("CHARGED", order_id="OTHER")),
        (200, view("CHARGED", order_id=None)),
        (200, view(None)),
        (200, view("")),
        (200, None),
        (500, view("CHARGED")),
        (201, view("CHARGED")),
        (400, view("CHARGED")),
        (400, view("NOT_FOUND", order_id="OTHER")),
    ],
)
def test_anything_but_a_valid_order_for_the_id_asked_is_never_stored(
    http_status: int, order_view: OrderStatusView | None
) -> None:
    decision = decide(http_status, order_view, ID, POLICY)
    assert decision.status_class is StatusClass.INVALID
    assert not decision.store


def test_not_found_is_off_by_default_and_brief_when_on() -> None:
    assert not decide(400, view("NOT_FOUND"), ID, POLICY).store
    on = CachePolicy(not_found_ttl=5)
    assert decide(400, view("NOT_FOUND"), ID, on).ttl == 5
    assert decide(404, view("NOT_FOUND", order_id=None), ID, on).ttl == 5


def test_per_status_overrides_apply_but_never_to_pending_refunds() -> None:
    custom = CachePolicy(
        final_ttl=100, refund_pending_ttl=7, status_ttls=(("CHARGED", 5), ("VOID_FAILED", 0))
    )
    assert decide(200, view("CHARGED"), ID, custom).ttl == 5
    assert decide(200, view("VOIDED"), ID, custom).ttl == 100
    assert decide(200, view("VOID_FAILED"), ID, custom).ttl == 0
    assert decide(200, view("CHARGED", "PENDING"), ID, custom).ttl == 7
