"""Decoding Juspay's published sample bodies: the valid ones fully, the broken ones refused."""

from __future__ import annotations

import json

import msgspec
import pytest

from proxy.core.models import Decoders, Order
from proxy.devtools.simulator import load_sample, sample_names

VALID = [n for n in sample_names() if n.endswith(".json")]
MALFORMED = [n for n in sample_names() if n.endswith(".malformed.txt")]


def test_samples_are_packaged() -> None:
    assert len(VALID) >= 8
    assert len(MALFORMED) >= 3


@pytest.mark.parametrize("name", VALID)
def test_every_valid_sample_decodes_into_the_full_order(name: str) -> None:
    raw = load_sample(name)
    decoders = Decoders()
    order = decoders.order.decode(raw)
    source = json.loads(raw)
    assert order.order_id == source["order_id"]
    assert order.status == source["status"]
    assert order.amount == source["amount"]
    # Every documented top-level field present in the sample lands in a typed attribute.
    known = set(Order.__struct_fields__)
    assert set(source) <= known, set(source) - known
    view = decoders.status_view.decode(raw)
    assert (view.order_id, view.status) == (order.order_id, order.status)


def test_nested_blocks_are_typed() -> None:
    decoders = Decoders()
    card = decoders.order.decode(load_sample("pp-card.json"))
    assert card.card is not None
    assert card.card.card_brand == "VISA"
    assert card.refunds is not None
    assert card.refunds[0].status == "SUCCESS"
    assert card.txn_detail is not None
    assert card.txn_detail.gateway == "RAZORPAY"
    assert card.payment_gateway_response is not None
    emi = decoders.order.decode(load_sample("ec-emi.json"))
    assert emi.card is not None
    assert emi.card.token is not None
    assert emi.card.token.tokenization_status == "ACTIVE"
    mandate = decoders.order.decode(load_sample("ec-mandate.json"))
    assert mandate.mandate is not None
    assert mandate.mandate.mandate_status == "ACTIVE"


def test_unknown_fields_are_accepted() -> None:
    raw = json.dumps({"order_id": "X1", "status": "NEW", "brand_new_field": {"a": [1]}}).encode()
    assert Decoders().order.decode(raw).order_id == "X1"


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_samples_are_refused_cleanly(name: str) -> None:
    raw = load_sample(name)
    decoders = Decoders()
    with pytest.raises(msgspec.DecodeError):
        decoders.order.decode(raw)
    with pytest.raises(msgspec.DecodeError):
        decoders.status_view.decode(raw)


def test_wrong_types_are_a_validation_error_not_a_crash() -> None:
    with pytest.raises(msgspec.ValidationError):
        Decoders().status_view.decode(b'{"order_id": 5, "status": "CHARGED"}')
