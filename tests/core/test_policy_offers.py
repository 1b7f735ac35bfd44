"""The caching policy on Juspay's offers: a final order with an offer still INITIATED changes."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import pytest

from proxy.core.models import Decoders
from proxy.core.policy import (
    FINAL_STATUSES,
    OPEN_OFFER_STATUSES,
    SETTLED_OFFER_STATUSES,
    CachePolicy,
    StatusClass,
    decide,
)

ID = "JP1636474794"
POLICY = CachePolicy(final_ttl=86400, failure_ttl=31, refund_pending_ttl=32, changing_ttl=33)
DECODERS = Decoders()


def offer(status: object) -> dict[str, Any]:
    """An offer shaped like the one in Juspay's offer-order-status sample."""
    return {
        "offer_id": "ed2743f5-6c22-4890-87a0-c56f4ba2fd92",
        "offer_code": "BOID",
        "status": status,
        "benefits": [{"type": "DISCOUNT", "amount": 100}],
    }


def verdict(status: str, offers: object) -> tuple[StatusClass, int]:
    body = json.dumps({"order_id": ID, "status": status, "offers": offers}).encode()
    decision = decide(200, DECODERS.status_view.decode(body), ID, POLICY)
    return decision.status_class, decision.ttl


@pytest.mark.parametrize("order_status", sorted(FINAL_STATUSES))
@pytest.mark.parametrize(
    ("offers", "expected"),
    [
        # "Offer is redeemed, awaiting transaction status for final redemption": still moving.
        ([offer("INITIATED")], (StatusClass.OFFER_PENDING, 33)),
        ([offer("AVAILED")], (StatusClass.FINAL, 86400)),
        ([offer("REFUNDED")], (StatusClass.FINAL, 86400)),
        ([offer("FAILED")], (StatusClass.FINAL, 86400)),
        ([offer("availed")], (StatusClass.FINAL, 86400)),  # compared upper-cased
        ([offer("AVAILED"), offer("INITIATED")], (StatusClass.OFFER_PENDING, 33)),
        ([offer("SOMETHING_NEW")], (StatusClass.OFFER_PENDING, 33)),  # unknown: may change
        ([offer(None)], (StatusClass.OFFER_PENDING, 33)),  # no status at all
        ([offer({"code": 1})], (StatusClass.OFFER_PENDING, 33)),  # not a string
        ([None, offer("AVAILED")], (StatusClass.FINAL, 86400)),
        ([], (StatusClass.FINAL, 86400)),
        (None, (StatusClass.FINAL, 86400)),
    ],
)
def test_a_final_order_with_an_offer_in_flight_is_cached_briefly(
    order_status: str, offers: object, expected: tuple[StatusClass, int]
) -> None:
    assert verdict(order_status, offers) == expected


def test_offer_status_sets_cover_juspays_list() -> None:
    documented = {"INITIATED", "AVAILED", "REFUNDED", "FAILED"}
    assert documented == OPEN_OFFER_STATUSES | SETTLED_OFFER_STATUSES
    assert not OPEN_OFFER_STATUSES & SETTLED_OFFER_STATUSES


def test_a_pending_offer_is_not_final_for_a_failed_or_moving_order() -> None:
    assert verdict("AUTHORIZATION_FAILED", [offer("INITIATED")]) == (StatusClass.FAILURE, 31)
    assert verdict("PENDING_VBV", [offer("INITIATED")]) == (StatusClass.IN_PROGRESS, 0)


def test_a_pending_refund_names_the_class_before_a_pending_offer() -> None:
    body = {"order_id": ID, "status": "CHARGED", "refunds": [{"status": "PENDING"}]}
    view = DECODERS.status_view.decode(json.dumps({**body, "offers": [offer("INITIATED")]}))
    assert decide(200, view, ID, POLICY).status_class is StatusClass.REFUND_PENDING


def test_per_status_overrides_never_lengthen_an_order_with_a_pending_offer() -> None:
    policy = CachePolicy(changing_ttl=30, status_ttls=(("CHARGED", 604800),))
    body = json.dumps({"order_id": ID, "status": "CHARGED", "offers": [offer("INITIATED")]})
    assert decide(200, DECODERS.status_view.decode(body), ID, policy).ttl == 30


def test_juspays_offer_sample_with_its_offer_availed_is_final() -> None:
    sample = resources.files("proxy.devtools").joinpath("samples", "offer-response.json")
    view = DECODERS.status_view.decode(sample.read_bytes())
    assert view.offers is not None
    assert view.offers[0] is not None
    assert view.offers[0].status == "AVAILED"
    assert decide(200, view, ID, POLICY).status_class is StatusClass.FINAL
