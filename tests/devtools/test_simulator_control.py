"""The simulator's control API: any field or a whole body, 400s that name the problem, and
stats that stay true across faults and resets. A real simulator app on loopback."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from proxy.devtools.simulator import SimulatorState, create_simulator_app

MERCHANT, KEY = "m_sim", "sim_key_0123"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()}
Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def sim(aiohttp_client: Callable[..., Awaitable[Client]]) -> Client:
    state = SimulatorState({MERCHANT: KEY})
    state.seed_samples()
    return await aiohttp_client(create_simulator_app(state))


async def put(sim: Client, **body: Any) -> tuple[int, Any]:
    resp = await sim.post("/__sim/orders", json=body)
    return resp.status, await resp.json()


async def read(sim: Client, order_id: str) -> dict[str, Any]:
    resp = await sim.get(f"/orders/{order_id}", headers=AUTH)
    assert resp.status == 200
    body: dict[str, Any] = await resp.json()
    return body


# --- any field, or a whole body ---------------------------------------------------------


FIELDS = {
    "offers": [{"offer_id": "o1", "offer_code": "BOID", "status": "INITIATED"}],
    "mandate": {"mandate_id": "m1", "mandate_status": "ACTIVE", "mandate_type": "EMANDATE"},
    "chargebacks": [{"id": "cb1", "amount": 1.0, "dispute_status": "RECEIVED"}],
    "txn_detail": {"txn_id": "t-1", "status": "CHARGED", "gateway": "PAYU"},
    "payment_gateway_response": {"resp_code": "E000", "rrn": "123"},
}


@pytest.mark.parametrize("name", sorted(FIELDS))
async def test_any_field_of_an_order_can_be_put(sim: Client, name: str) -> None:
    status, answer = await put(sim, order_id="F1", status="CHARGED", fields={name: FIELDS[name]})
    assert status == 200
    assert answer["order"][name] == FIELDS[name]
    served = await read(sim, "F1")
    assert served[name] == FIELDS[name]
    assert (served["order_id"], served["status"], served["merchant_id"]) == (
        "F1",
        "CHARGED",
        MERCHANT,
    )


async def test_fields_of_an_order_already_served_change_and_the_rest_stays(sim: Client) -> None:
    await put(sim, order_id="F2", status="CHARGED", fields={"offers": FIELDS["offers"]})
    status, _ = await put(sim, order_id="F2", fields={"chargebacks": FIELDS["chargebacks"]})
    assert status == 200
    served = await read(sim, "F2")
    assert served["offers"] == FIELDS["offers"]
    assert served["chargebacks"] == FIELDS["chargebacks"]
    assert served["status"] == "CHARGED"


async def test_a_whole_body_is_served_exactly(sim: Client) -> None:
    body = {"order_id": "W1", "status": "CHARGED", "something_new": {"x": [1, 2]}}
    assert (await put(sim, order_id="W1", body=body))[0] == 200
    assert await read(sim, "W1") == body


async def test_a_script_of_stages_with_fields_moves_after_reads(sim: Client) -> None:
    stages = [
        {"status": "CHARGED", "fields": {"offers": [{"offer_id": "o", "status": "INITIATED"}]}},
        {"status": "CHARGED", "fields": {"offers": [{"offer_id": "o", "status": "AVAILED"}]}},
    ]
    assert (await put(sim, order_id="S1", statuses=stages, after_reads=2))[0] == 200
    seen = [(await read(sim, "S1"))["offers"][0]["status"] for _ in range(3)]
    assert seen == ["INITIATED", "INITIATED", "AVAILED"]


async def test_a_refund_keeps_the_fields_put_before(sim: Client) -> None:
    await put(sim, order_id="R1", status="CHARGED", fields={"offers": FIELDS["offers"]})
    resp = await sim.post("/__sim/refunds", json={"order_id": "R1", "amount": 2})
    assert resp.status == 200
    served = await read(sim, "R1")
    assert served["offers"] == FIELDS["offers"]
    assert [(r["amount"], r["status"]) for r in served["refunds"]] == [(2, "PENDING")]


# --- bad requests are 400s naming the problem -------------------------------------------


BAD = [
    ("/__sim/orders", {"order_id": "NEW1"}, 400, "'status' is required"),
    ("/__sim/orders", {"status": "CHARGED"}, 400, "'order_id' is required"),
    ("/__sim/orders", {"order_id": "X", "status": 21}, 400, "'status' must be"),
    ("/__sim/orders", {"order_id": "X", "stauts": "CHARGED"}, 400, "unknown field(s) ['stauts']"),
    ("/__sim/orders", {"order_id": "X", "status": "CHARGED", "fields": []}, 400, "'fields'"),
    ("/__sim/orders", {"order_id": "X", "body": {}, "status": "NEW"}, 400, "'body'"),
    ("/__sim/orders", {"order_id": "X", "statuses": []}, 400, "'statuses'"),
    ("/__sim/orders", {"order_id": "X", "statuses": ["NEW"], "after_reads": 0}, 400, "after_reads"),
    ("/__sim/orders", {"order_id": "X", "status": "NEW", "refunds": [1]}, 400, "'refunds'"),
    ("/__sim/orders", {"order_id": "X", "status": "NEW", "merchant_id": "nobody"}, 400, "nobody"),
    ("/__sim/advance", {"order_id": "NOPE"}, 404, "no order 'NOPE'"),
    ("/__sim/refunds", {"order_id": "JP1636474794", "status": "DONE"}, 400, "'status' must be"),
    ("/__sim/refunds", {"order_id": "JP1636474794", "amount": -1}, 400, "'amount'"),
    ("/__sim/faults", {"kind": "explode"}, 400, "'kind' must be one of"),
    ("/__sim/faults", {"kind": "latency", "delay": "soon"}, 400, "'delay'"),
    ("/__sim/faults", {"kind": "status", "status": 700}, 400, "'status'"),
    ("/__sim/faults", {"kind": "latency", "dealy": 1}, 400, "unknown field(s) ['dealy']"),
    ("/__sim/wait_in_flight", {"count": 0}, 400, "'count'"),
    ("/__sim/webhooks", {"order_id": "JP1636474794", "url": "ftp://x"}, 400, "'url'"),
    ("/__sim/webhooks", {"order_id": "JP1636474794", "url": "http://x", "auth": "x"}, 400, "auth"),
]


@pytest.mark.parametrize(("path", "body", "status", "names"), BAD)
async def test_a_bad_control_request_is_refused_naming_the_problem(
    sim: Client, path: str, body: dict[str, Any], status: int, names: str
) -> None:
    before = (await (await sim.get("/__sim/orders")).json(), await read(sim, "JP1636474794"))
    resp = await sim.post(path, json=body)
    assert resp.status == status
    assert names in (await resp.json())["error"]
    after = (await (await sim.get("/__sim/orders")).json(), await read(sim, "JP1636474794"))
    assert after == before  # nothing changed


@pytest.mark.parametrize("raw", [b"nope", b"[1]", b'"x"', b"{"])
async def test_a_body_that_is_not_a_json_object_is_a_400(sim: Client, raw: bytes) -> None:
    resp = await sim.post("/__sim/orders", data=raw)
    assert resp.status == 400
    assert "JSON object" in (await resp.json())["error"]


# --- stats stay true across faults and resets -------------------------------------------


async def stats(sim: Client) -> dict[str, Any]:
    result: dict[str, Any] = await (await sim.get("/__sim/stats")).json()
    return result


async def test_reset_answers_held_reads_first_so_its_stats_are_true(sim: Client) -> None:
    await sim.post("/__sim/faults", json={"kind": "timeout", "delay": 60})
    held = asyncio.ensure_future(sim.get("/orders/JP1636474794", headers=AUTH))
    waited = await sim.post("/__sim/wait_in_flight", json={"count": 1, "timeout": 5})
    assert (await waited.json())["reached"] is True
    started = time.monotonic()
    after = await (await sim.post("/__sim/reset")).json()
    assert (after["in_flight"], after["total"], after["faults"]) == (0, 0, [])
    assert (await held).status == 504  # released at once, not after 60 s
    assert time.monotonic() - started < 30
    assert (await stats(sim))["in_flight"] == 0
    none = await sim.post("/__sim/wait_in_flight", json={"count": 1, "timeout": 0.2})
    assert (await none.json()) == {"reached": False, "in_flight": 0}
    # A read after the reset is counted, and answered normally.
    assert (await sim.get("/orders/JP1636474794", headers=AUTH)).status == 200
    assert (await stats(sim))["calls"] == {"JP1636474794": 1}


async def test_a_read_whose_caller_gave_up_is_no_longer_in_flight(sim: Client) -> None:
    await sim.post("/__sim/faults", json={"kind": "timeout", "delay": 60})
    url = sim.make_url("/orders/JP1636474794")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.3)) as session:
        with pytest.raises(TimeoutError):
            await session.get(url, headers=AUTH)
    # The server notices the closed connection on its own schedule: bounded poll.
    deadline = time.monotonic() + 5
    while (await stats(sim))["in_flight"] != 0:
        assert time.monotonic() < deadline, "the abandoned read still counts as in flight"
        await asyncio.sleep(0.02)
    seen = await stats(sim)
    assert seen["faults_applied"] == {"timeout": 1}
    assert seen["max_in_flight"] == 1
    await sim.post("/__sim/reset")
