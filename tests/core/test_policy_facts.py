"""The caching policy against Juspay's facts: every status, live mandates, open chargebacks."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import pytest

from proxy.core.models import Decoders
from proxy.core.policy import (
    CLOSED_CHARGEBACK_STATUSES,
    FINAL_MANDATE_STATUSES,
    FINAL_STATUSES,
    OPEN_CHARGEBACK_STATUSES,
    OPEN_MANDATE_STATUSES,
    CachePolicy,
    StatusClass,
    decide,
)

ID = "JP1636474794"
POLICY = CachePolicy(
    final_ttl=86400, failure_ttl=31, refund_pending_ttl=32, changing_ttl=33, not_found_ttl=0
)
TTL = {
    StatusClass.FINAL: 86400,
    StatusClass.FAILURE: 31,
    StatusClass.REFUND_PENDING: 32,
    StatusClass.CHARGEBACK_OPEN: 33,
    StatusClass.MANDATE_OPEN: 33,
}
DECODERS = Decoders()


def answer(status: str, **fields: Any) -> tuple[StatusClass, int]:
    """The policy's verdict on a 200 answer, decoded from JSON as Juspay's bytes would be."""
    body = json.dumps({"order_id": ID, "status": status, **fields}).encode()
    decision = decide(200, DECODERS.status_view.decode(body), ID, POLICY)
    assert decision.ttl == TTL.get(decision.status_class, 0)
    return decision.status_class, decision.ttl


# Every status in Juspay's published list (juspay-facts: "Order status values"), NOP too.
FACTS = [
    ("NEW", 10, StatusClass.IN_PROGRESS),
    ("STARTED", 20, StatusClass.IN_PROGRESS),
    ("CHARGED", 21, StatusClass.FINAL),
    ("JUSPAY_DECLINED", 22, StatusClass.FAILURE),
    ("PENDING_VBV", 23, StatusClass.IN_PROGRESS),  # "keep polling"
    ("VBV_SUCCESSFUL", 24, StatusClass.IN_PROGRESS),
    ("AUTHORIZED", 25, StatusClass.IN_PROGRESS),  # pre-auth: changes on capture or void
    ("AUTHENTICATION_FAILED", 26, StatusClass.FAILURE),
    ("AUTHORIZATION_FAILED", 27, StatusClass.FAILURE),
    ("AUTHORIZING", 28, StatusClass.IN_PROGRESS),  # "keep polling"
    ("COD_INITIATED", 29, StatusClass.IN_PROGRESS),  # changes on delivery
    ("VOIDED", 31, StatusClass.FINAL),
    ("VOID_INITIATED", 32, StatusClass.IN_PROGRESS),
    ("CAPTURE_INITIATED", 33, StatusClass.IN_PROGRESS),
    ("CAPTURE_FAILED", 34, StatusClass.FAILURE),
    ("VOID_FAILED", 35, StatusClass.FAILURE),
    ("AUTO_REFUNDED", 36, StatusClass.FINAL),
    ("NOT_FOUND", 40, StatusClass.UNKNOWN),  # only Juspay's 400/404 answer is NOT_FOUND
    ("PARTIAL_CHARGED", None, StatusClass.IN_PROGRESS),  # changes after payment
    ("NOP", -1, StatusClass.UNKNOWN),  # appears in Juspay's code; not final
    ("SETTLED_SOMEDAY", 99, StatusClass.UNKNOWN),  # a status added after we were written
]


@pytest.mark.parametrize(("status", "status_id", "status_class"), FACTS)
def test_every_documented_status_is_cached_only_if_final_or_failed(
    status: str, status_id: int | None, status_class: StatusClass
) -> None:
    assert answer(status, status_id=status_id) == (status_class, TTL.get(status_class, 0))


@pytest.mark.parametrize(
    "status", ["AUTHORIZED", "COD_INITIATED", "VOID_INITIATED", "CAPTURE_INITIATED", "NOP", "NEW"]
)
def test_orders_that_will_change_again_are_never_stored(status: str) -> None:
    decision = decide(
        200, DECODERS.status_view.decode(json.dumps({"order_id": ID, "status": status})), ID, POLICY
    )
    assert not decision.store


def mandate(status: object) -> dict[str, Any]:
    return {
        "mandate_id": "3XMEcS1z2212Gq7fbfVYbzj",
        "mandate_type": "EMANDATE",
        "mandate_status": status,
    }


@pytest.mark.parametrize("order_status", sorted(FINAL_STATUSES))
@pytest.mark.parametrize(
    ("mandate_status", "status_class"),
    [
        ("CREATED", StatusClass.MANDATE_OPEN),
        ("ACTIVE", StatusClass.MANDATE_OPEN),  # lasts until revoked or expired
        ("PAUSED", StatusClass.MANDATE_OPEN),
        ("REVOKED", StatusClass.FINAL),
        ("FAILURE", StatusClass.FINAL),
        ("EXPIRED", StatusClass.FINAL),
        ("SUSPENDED_SOMEHOW", StatusClass.MANDATE_OPEN),  # unknown: may still change
        (None, StatusClass.MANDATE_OPEN),
        (7, StatusClass.MANDATE_OPEN),  # not a string: decoded anyway, treated as unknown
    ],
)
def test_a_final_order_with_a_live_mandate_is_cached_briefly(
    order_status: str, mandate_status: object, status_class: StatusClass
) -> None:
    assert answer(order_status, mandate=mandate(mandate_status))[0] is status_class


def test_mandate_status_sets_cover_juspays_list() -> None:
    documented = {"CREATED", "ACTIVE", "PAUSED", "REVOKED", "FAILURE", "EXPIRED"}
    assert documented == OPEN_MANDATE_STATUSES | FINAL_MANDATE_STATUSES
    assert not OPEN_MANDATE_STATUSES & FINAL_MANDATE_STATUSES


def test_a_charged_order_without_a_mandate_block_is_final() -> None:
    assert answer("CHARGED", mandate=None) == (StatusClass.FINAL, 86400)
    assert answer("CHARGED", chargebacks=[]) == (StatusClass.FINAL, 86400)
    assert answer("CHARGED", chargebacks=None) == (StatusClass.FINAL, 86400)


def chargeback(dispute_status: object = None, **fields: object) -> dict[str, object]:
    return {"id": "cb_1", "amount": 10.0, "dispute_status": dispute_status, **fields}


@pytest.mark.parametrize(
    ("chargebacks", "status_class"),
    [
        ([chargeback("RECEIVED")], StatusClass.CHARGEBACK_OPEN),
        ([chargeback("UNDER_REVIEW")], StatusClass.CHARGEBACK_OPEN),
        ([chargeback("EVIDENCE_REQUIRED")], StatusClass.CHARGEBACK_OPEN),
        ([chargeback("CHARGEBACK_RECEIVED")], StatusClass.CHARGEBACK_OPEN),
        ([chargeback("RESOLVED_IN_MERCHANT_FAVOUR")], StatusClass.FINAL),
        ([chargeback("RESOLVED_IN_CUSTOMER_FAVOUR")], StatusClass.FINAL),
        ([chargeback("resolved in customer favor")], StatusClass.FINAL),
        ([chargeback("CANCELLED")], StatusClass.FINAL),
        ([chargeback("REFUNDED")], StatusClass.FINAL),
        ([chargeback("CHARGEBACK_EXPIRED")], StatusClass.FINAL),
        (
            [chargeback(None, status="EXPIRED")],
            StatusClass.FINAL,
        ),  # `status` when no dispute_status
        ([chargeback("RECEIVED", date_resolved="2024-01-02T10:00:00Z")], StatusClass.FINAL),
        ([chargeback("SOMETHING_NEW")], StatusClass.CHARGEBACK_OPEN),  # unknown: may still change
        ([chargeback(None)], StatusClass.CHARGEBACK_OPEN),  # no status at all
        ([chargeback({"code": 3})], StatusClass.CHARGEBACK_OPEN),  # not a string
        ([chargeback("REFUNDED"), chargeback("RECEIVED")], StatusClass.CHARGEBACK_OPEN),
        ([None, chargeback("EXPIRED")], StatusClass.FINAL),
    ],
)
def test_a_final_order_with_an_open_chargeback_is_cached_briefly(
    chargebacks: list[object], status_class: StatusClass
) -> None:
    for order_status in FINAL_STATUSES:
        assert answer(order_status, chargebacks=chargebacks)[0] is status_class


def test_chargeback_status_sets_are_disjoint() -> None:
    assert not OPEN_CHARGEBACK_STATUSES & CLOSED_CHARGEBACK_STATUSES


@pytest.mark.parametrize(
    ("fields", "status_class"),
    [
        # A pending refund names the class first; all three are short-lived.
        (
            {"refunds": [{"status": "PENDING"}], "chargebacks": [chargeback("RECEIVED")]},
            StatusClass.REFUND_PENDING,
        ),
        (
            {"chargebacks": [chargeback("RECEIVED")], "mandate": mandate("ACTIVE")},
            StatusClass.CHARGEBACK_OPEN,
        ),
        (
            {"refunds": [{"status": "SUCCESS"}], "mandate": mandate("ACTIVE")},
            StatusClass.MANDATE_OPEN,
        ),
        (
            {
                "refunds": [{"status": "SUCCESS"}],
                "chargebacks": [chargeback("RESOLVED_IN_MERCHANT_FAVOUR")],
                "mandate": mandate("REVOKED"),
            },
            StatusClass.FINAL,
        ),
    ],
)
def test_refunds_chargebacks_and_mandates_together(
    fields: dict[str, Any], status_class: StatusClass
) -> None:
    assert answer("CHARGED", **fields)[0] is status_class


def test_failure_statuses_keep_their_own_ttl_whatever_the_mandate() -> None:
    assert answer("AUTHORIZATION_FAILED", mandate=mandate("ACTIVE")) == (StatusClass.FAILURE, 31)


def test_per_status_overrides_never_lengthen_a_changing_order() -> None:
    policy = CachePolicy(changing_ttl=30, status_ttls=(("CHARGED", 604800),))
    view = DECODERS.status_view.decode(
        json.dumps({"order_id": ID, "status": "CHARGED", "mandate": mandate("ACTIVE")})
    )
    assert decide(200, view, ID, policy).ttl == 30
    assert policy.describe()["changing"] == 30


def test_juspays_mandate_sample_is_a_live_mandate() -> None:
    sample = resources.files("proxy.devtools").joinpath("samples", "ec-mandate.json").read_bytes()
    view = DECODERS.status_view.decode(sample)
    assert view.order_id is not None
    assert decide(200, view, view.order_id, POLICY).status_class is StatusClass.MANDATE_OPEN


@pytest.mark.parametrize("ttl", [0, 5])
def test_changing_ttl_comes_from_the_cache_section(tmp_path: Any, ttl: int) -> None:
    from proxy.config import load_settings  # noqa: PLC0415 - only this test needs settings

    config = tmp_path / "proxy.toml"
    config.write_text(f"[cache]\nchanging_ttl_seconds = {ttl}\n")
    env = {"JUSPAY_MERCHANT_ID": "m1", "JUSPAY_API_KEY": "key_m1_123"}
    settings = load_settings({**env, "PROXY_CONFIG_FILE": str(config)})
    assert settings.cache.policy.changing_ttl == ttl
    assert load_settings(env).cache.policy.changing_ttl == 30
