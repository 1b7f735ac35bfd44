"""Juspay-shaped bodies the simulator serves: published samples, orders built on one, errors."""

from __future__ import annotations

import copy
import json
import time
from importlib import resources
from typing import Any

# Juspay's numeric ids for each status (keyed on the string everywhere else).
STATUS_IDS = {
    "NEW": 10,
    "STARTED": 20,
    "CHARGED": 21,
    "JUSPAY_DECLINED": 22,
    "PENDING_VBV": 23,
    "VBV_SUCCESSFUL": 24,
    "AUTHORIZED": 25,
    "AUTHENTICATION_FAILED": 26,
    "AUTHORIZATION_FAILED": 27,
    "AUTHORIZING": 28,
    "COD_INITIATED": 29,
    "VOIDED": 31,
    "VOID_INITIATED": 32,
    "CAPTURE_INITIATED": 33,
    "CAPTURE_FAILED": 34,
    "VOID_FAILED": 35,
    "AUTO_REFUNDED": 36,
    "NOT_FOUND": 40,
}
# The published samples the simulator serves as they are (valid JSON, one per order id).
SEED_SAMPLES = (
    "pp-card.json",
    "pp-netbanking.json",
    "pp-wallets.json",
    "ec-emi.json",
    "ec-mandate.json",
)
TEMPLATE_SAMPLE = "pp-card.json"
# Orders seeded still in progress (`seed_in_progress`): id -> the statuses they go through.
IN_PROGRESS_SEEDS = {
    "SIM-PENDING-1": ("PENDING_VBV", "CHARGED"),
    "SIM-AUTHORIZING-1": ("AUTHORIZING", "AUTHORIZATION_FAILED"),
}
# CHARGED with a refund PENDING that settles to SUCCESS.
REFUND_SEED = "SIM-REFUND-1"
REFUND_STATUSES = ("PENDING", "SUCCESS", "FAILURE", "MANUAL_REVIEW")


def load_sample(name: str) -> bytes:
    return resources.files("proxy.devtools").joinpath("samples", name).read_bytes()


def sample_names() -> list[str]:
    folder = resources.files("proxy.devtools").joinpath("samples")
    return sorted(item.name for item in folder.iterdir() if item.name.endswith((".json", ".txt")))


def load_template() -> dict[str, Any]:
    body: dict[str, Any] = json.loads(load_sample(TEMPLATE_SAMPLE))
    return body


def now_stamp() -> str:
    """Juspay's timestamp format: UTC, one-second resolution."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def order_body(
    template: dict[str, Any],
    merchant_id: str,
    order_id: str,
    status: str,
    refunds: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A realistic order body (from the card sample) with the given id and status; `extra`
    replaces whole top-level fields (offers, mandate, chargebacks, txn_detail, ...)."""
    body: dict[str, Any] = copy.deepcopy(template)
    settled = [r for r in refunds or [] if r.get("status") == "SUCCESS"]
    body.update(
        order_id=order_id,
        merchant_id=merchant_id,
        status=status,
        status_id=STATUS_IDS.get(status, 0),
        refunds=list(refunds or []),
        refunded=bool(refunds) and len(settled) == len(refunds or []),
        amount_refunded=sum(r.get("amount", 0) for r in settled),
    )
    body["txn_detail"]["order_id"] = order_id
    body["txn_detail"]["status"] = status
    body.update(copy.deepcopy(extra))
    return body


def refund(order_id: str, number: int, amount: float, status: str) -> dict[str, Any]:
    """A refund as Juspay lists it in `refunds[]`; a PENDING one is not yet sent to the gateway
    (Juspay queues refunds for about 15 minutes first)."""
    return {
        "id": f"rf_{order_id}_{number}",
        "unique_request_id": f"rf_{order_id}_{number}",
        "amount": amount,
        "status": status,
        "sent_to_gateway": status != "PENDING",
        "initiated_by": "API",
        "refund_type": "STANDARD",
        "created": now_stamp(),
    }


def error_body(status: int, error_code: str, message: str, code: str) -> dict[str, Any]:
    """Juspay's error shape."""
    return {
        "status": "error",
        "error_code": error_code,
        "error_message": message,
        "error_info": {
            "user_message": message,
            "developer_message": message,
            "code": code,
            "category": "USER_ERROR" if status < 500 else "SERVER_ERROR",
        },
    }


def not_found_body(order_id: str) -> dict[str, Any]:
    """Juspay's answer for an order it does not know (sent with HTTP 400)."""
    return {
        "status": "NOT_FOUND",
        "error_info": {
            "user_message": "Order Not Found",
            "developer_message": "Order Not Found",
            "code": "RESOURCE_NOT_FOUND",
            "category": "USER_ERROR",
        },
        "status_id": 40,
        "order_id": order_id,
    }
