"""The shared setup of the consistency tests: an operator client, a Basic webhook secret, a
settled refund, and the settings, bodies and helpers the races use."""

from __future__ import annotations

import base64
import json
from dataclasses import replace

from aiohttp.test_utils import TestServer

from proxy.config.secrets import Secret
from proxy.config.settings import ClientSettings, Settings, WebhookSettings
from proxy.devtools.simulator import Fault, SimulatorState
from proxy.web.auth import hash_key
from tests.conftest import MERCHANT, make_settings

OPS_KEY = "opk_consistency_operator_0123456789abcdef"
OPS = {"Authorization": "Basic " + base64.b64encode(f"{OPS_KEY}:".encode()).decode()}
HOOK = {"Authorization": "Basic " + base64.b64encode(b"juspay:hook-secret").decode()}
REFUND_SETTLED = {"id": "rf1", "unique_request_id": "rf1", "status": "SUCCESS", "amount": 1}


def consistent(simulator: TestServer, redis_url: str | None, **cache: object) -> Settings:
    settings = make_settings(
        simulator.make_url(""),
        redis_url=redis_url,
        clients=(ClientSettings("ops", hash_key(OPS_KEY), ("*",), operator=True),),
        webhook=WebhookSettings("juspay", Secret("hook-secret", "test")),
    )
    return replace(settings, cache=replace(settings.cache, **cache))


def webhook(state: SimulatorState, order_id: str, name: str = "ORDER_REFUNDED") -> bytes:
    # Real webhook bodies are several KB (metadata, gateway responses).
    order = state.order_body(MERCHANT, order_id, "CHARGED", udf5="u" * 3000)
    return json.dumps(
        {"id": "evt_1", "event_name": name, "date_created": "2026-11-23T10:00:00Z",
         "content": {"order": order}}
    ).encode()  # fmt: skip


async def refunds(resp: object) -> list[str]:
    body = await resp.json()  # type: ignore[attr-defined]
    return [refund["status"] for refund in body["refunds"]]


async def hold_read(state: SimulatorState, order_id: str, seconds: float) -> None:
    """Make the next read of `order_id` take `seconds` (it answers what it saw at its start)."""
    state.add_fault(Fault(kind="latency", delay=seconds, order_id=order_id, remaining=1))
