"""msgspec types: Juspay's order, the status view, webhooks, the batch body and error bodies.

Reads decode only the small status view (what the caching policy needs); the full `Order` is
Juspay's documented shape, kept so the samples and benchmarks can check it.

Juspay's documents disagree on some field types (an "Integer" that samples show as a string,
ids that are sometimes null), so identifier-like fields accept strings and numbers. Every field
is optional with a default, and unknown fields are accepted: Juspay adds fields over time.
"""

from __future__ import annotations

from typing import Any

import msgspec

Text = str | None
Number = float | None
Flag = bool | None
# Documented as one type, published as another in some samples.
Loose = str | int | float | None
JsonObject = dict[str, Any] | None


class PaymentLinks(msgspec.Struct, kw_only=True):
    web: Text = None
    mobile: Text = None
    iframe: Text = None


class CardToken(msgspec.Struct, kw_only=True):
    card_reference: Text = None
    card_fingerprint: Text = None
    last_four_digits: Text = None
    card_isin: Text = None
    expiry_year: Text = None
    expiry_month: Text = None
    par: Text = None
    tokenization_status: Text = None


class Card(msgspec.Struct, kw_only=True):
    expiry_year: Text = None
    card_reference: Text = None
    saved_to_locker: Flag = None
    expiry_month: Text = None
    name_on_card: Text = None
    card_issuer: Text = None
    last_four_digits: Text = None
    using_saved_card: Flag = None
    card_fingerprint: Text = None
    card_isin: Text = None
    card_type: Text = None
    card_brand: Text = None
    using_token: Flag = None
    tokenization_user_consent: Flag = None
    token_created: CardToken | None = None
    token: CardToken | None = None
    card_issuer_country: Text = None
    juspay_bank_code: Text = None
    extended_card_type: Text = None


class Refund(msgspec.Struct, kw_only=True):
    id: Loose = None
    amount: Number = None
    unique_request_id: Text = None
    ref: Loose = None
    created: Text = None
    status: Text = None
    error_message: Text = None
    error_code: Text = None
    sent_to_gateway: Flag = None
    initiated_by: Text = None
    refund_source: Text = None
    refund_type: Text = None
    arn: Loose = None
    metadata: JsonObject = None


class TxnDetail(msgspec.Struct, kw_only=True):
    txn_id: Text = None
    order_id: Text = None
    status: Text = None
    error_code: Loose = None
    error_message: Text = None
    net_amount: Number = None
    surcharge_amount: Number = None
    tax_amount: Number = None
    txn_amount: Number = None
    offer_deduction_amount: Number = None
    gateway_id: Loose = None
    currency: Text = None
    express_checkout: Flag = None
    redirect: Flag = None
    txn_uuid: Text = None
    gateway: Text = None
    created: Text = None
    txn_object_type: Text = None
    source_object: Text = None
    source_object_id: Loose = None
    txn_flow_type: Text = None
    metadata: JsonObject = None


class PaymentGatewayResponse(msgspec.Struct, kw_only=True):
    resp_code: Loose = None
    rrn: Loose = None
    created: Text = None
    epg_txn_id: Loose = None
    resp_message: Text = None
    auth_id_code: Loose = None
    txn_id: Text = None
    offer_type: Text = None
    offer_availed: Flag = None
    discount_amount: Number = None
    # Present when the caller asks for options.add_full_gateway_response=true.
    gateway_response: JsonObject = None


class CalculationInfo(msgspec.Struct, kw_only=True):
    value: Number = None
    calculation_rule: Text = None
    max_amount: Number = None


class OfferBenefit(msgspec.Struct, kw_only=True):
    type: Text = None
    amount: Number = None
    calculation_info: CalculationInfo | None = None


class Offer(msgspec.Struct, kw_only=True):
    offer_id: Text = None
    offer_code: Text = None
    status: Text = None
    benefits: list[OfferBenefit] | None = None


class Upi(msgspec.Struct, kw_only=True):
    payer_vpa: Text = None
    txn_flow_type: Text = None
    payer_app: Text = None


class Mandate(msgspec.Struct, kw_only=True):
    mandate_id: Text = None
    mandate_token: Text = None
    mandate_status: Text = None
    mandate_type: Text = None
    start_date: Loose = None
    end_date: Loose = None
    frequency: Text = None
    rule_type: Text = None
    rule_value: Loose = None
    amount_rule: Text = None
    max_amount: Number = None
    revokable_by_customer: Flag = None
    block_fund: Flag = None


class Order(msgspec.Struct, kw_only=True):
    """Juspay's order-status response, every documented field."""

    id: Text = None
    order_id: Text = None
    merchant_id: Text = None
    status: Text = None
    status_id: int | None = None
    amount: Number = None
    effective_amount: Number = None
    currency: Text = None
    date_created: Text = None
    customer_id: Text = None
    customer_email: Text = None
    customer_phone: Text = None
    return_url: Text = None
    product_id: Text = None
    payment_links: PaymentLinks | None = None
    udf1: Text = None
    udf2: Text = None
    udf3: Text = None
    udf4: Text = None
    udf5: Text = None
    udf6: Text = None
    udf7: Text = None
    udf8: Text = None
    udf9: Text = None
    udf10: Text = None
    txn_id: Text = None
    txn_uuid: Text = None
    payment_method_type: Text = None
    payment_method: Text = None
    auth_type: Text = None
    card: Card | None = None
    refunded: Flag = None
    amount_refunded: Number = None
    maximum_eligible_refund_amount: Number = None
    refunds: list[Refund] | None = None
    resp_code: Loose = None
    resp_message: Text = None
    bank_error_code: Loose = None
    bank_error_message: Text = None
    txn_detail: TxnDetail | None = None
    payment_gateway_response: PaymentGatewayResponse | None = None
    gateway_id: Loose = None
    gateway_reference_id: Loose = None
    metadata: JsonObject = None
    offers: list[Offer] | None = None
    payer_vpa: Text = None
    upi: Upi | None = None
    mandate: Mandate | None = None
    emi_bank: Text = None
    emi_tenure: Loose = None


class RefundStatusView(msgspec.Struct, kw_only=True):
    status: Text = None
    # Which refund it is (compared with a webhook's copy, see lowerbound.py); any JSON value.
    id: Any = None
    unique_request_id: Any = None


# The mandate, offer and chargeback leaves take any JSON value: a 200 whose status view fails to
# decode is refused as a bad body, and these blocks are not the documented core of an order.
class MandateStatusView(msgspec.Struct, kw_only=True):
    mandate_status: Any = None


class OfferStatusView(msgspec.Struct, kw_only=True):
    status: Any = None


class ChargebackStatusView(msgspec.Struct, kw_only=True):
    dispute_status: Any = None
    status: Any = None
    date_resolved: Any = None


class OrderStatusView(msgspec.Struct, kw_only=True):
    """Only what the caching decision needs; decoding it skips everything else in the body."""

    order_id: Text = None
    merchant_id: Text = None
    status: Text = None
    refunds: list[RefundStatusView] | None = None
    mandate: MandateStatusView | None = None
    chargebacks: list[ChargebackStatusView | None] | None = None
    offers: list[OfferStatusView | None] | None = None
    # Update stamps where present (compared with a webhook's, see lowerbound.py).
    date_updated: Any = None
    last_updated: Any = None


class WebhookOrder(msgspec.Struct, kw_only=True):
    """What names the order in a webhook, and what its copy says of the order's state (a
    lower bound for the reads that follow, see lowerbound.py; never served). The state fields
    take any JSON value: an odd copy must not cost the webhook."""

    order_id: Text = None
    merchant_id: Text = None
    status: Any = None
    refunds: Any = None
    chargebacks: Any = None
    mandate: Any = None
    date_updated: Any = None
    last_updated: Any = None


class WebhookContent(msgspec.Struct, kw_only=True):
    """What an event is about. Order, refund and transaction events carry the order; mandate
    and chargeback events carry their own objects, whose webhook shape Juspay does not publish:
    those are read loosely (any JSON), only for the order and merchant ids they may hold."""

    order: WebhookOrder | None = None
    mandate: Any = None
    chargeback: Any = None
    txn: Any = None


# Juspay's documented webhook event names, by what they are about (the proxy labels its
# metrics with them; the simulator may send any other upper-case name too).
ORDER_EVENTS = frozenset(
    {
        "ORDER_SUCCEEDED",
        "ORDER_FAILED",
        "ORDER_REFUNDED",
        "ORDER_REFUND_FAILED",
        "REFUND_MANUAL_REVIEW_NEEDED",
        "AUTO_REFUND_SUCCEEDED",
        "AUTO_REFUND_FAILED",
        "TXN_CREATED",
    }
)
MANDATE_EVENTS = frozenset(
    {
        "MANDATE_CREATED",
        "MANDATE_ACTIVATED",
        "MANDATE_FAILED",
        "MANDATE_PAUSED",
        "MANDATE_RESUMED",
        "MANDATE_REVOKED",
        "MANDATE_EXPIRED",
    }
)
CHARGEBACK_EVENTS = frozenset(
    {
        "CHARGEBACK_RECEIVED",
        "CHARGEBACK_UNDER_REVIEW",
        "CHARGEBACK_EVIDENCE_REQUIRED",
        "CHARGEBACK_RESOLVED_IN_MERCHANT_FAVOUR",
        "CHARGEBACK_RESOLVED_IN_CUSTOMER_FAVOUR",
        "CHARGEBACK_CANCELLED",
        "CHARGEBACK_REFUNDED",
        "CHARGEBACK_EXPIRED",
    }
)


def family_of(name: str) -> str:
    """An event name's family (order, refund, txn, mandate, chargeback, notification, other):
    a bounded label, whatever Juspay adds; the proxy and the simulator class names alike."""
    if "REFUND" in name and not name.startswith("CHARGEBACK_"):
        return "refund"
    for prefix, family in (
        ("ORDER_", "order"),
        ("TXN_", "txn"),
        ("MANDATE_", "mandate"),
        ("CHARGEBACK_", "chargeback"),
        ("NOTIFICATION_", "notification"),
    ):
        if name.startswith(prefix):
            return family
    return "other"


class WebhookEvent(msgspec.Struct, kw_only=True):
    """Juspay's webhook envelope: {"id", "event_name", "date_created", "content": {...}}."""

    id: Text = None
    event_name: Text = None
    date_created: Text = None
    content: WebhookContent | None = None


class BatchRequest(msgspec.Struct, forbid_unknown_fields=True):
    """POST /orders:batchGet body (our own API, so unknown fields are mistakes)."""

    order_ids: list[str]


class ErrorInfo(msgspec.Struct, kw_only=True):
    code: str
    category: str
    user_message: str
    developer_message: str


class ErrorBody(msgspec.Struct, kw_only=True):
    status: str
    error_code: str
    error_message: str
    error_info: ErrorInfo


class Decoders:
    """One reusable decoder per type, built once per application."""

    def __init__(self) -> None:
        self.order = msgspec.json.Decoder(Order)
        self.status_view = msgspec.json.Decoder(OrderStatusView)
        self.webhook = msgspec.json.Decoder(WebhookEvent)
        self.batch_request = msgspec.json.Decoder(BatchRequest)
