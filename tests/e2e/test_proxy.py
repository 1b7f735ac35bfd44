"""End to end: a caller, the proxy, a real Redis and the simulator as Juspay, all on loopback."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from proxy import __version__
from proxy.app import create_app
from proxy.appkeys import BUS, ORDER_SERVICE
from proxy.config.secrets import Secret
from proxy.config.settings import CacheSettings, WebhookSettings
from proxy.core.orders import OrderQuery
from proxy.core.policy import CachePolicy
from proxy.devtools.simulator import Fault, SimulatorState
from tests.conftest import (
    API_KEY,
    MERCHANT,
    OTHER_API_KEY,
    OTHER_MERCHANT,
    ProxyFactory,
    make_settings,
)
from tests.support.rawhttp import raw_get

CHARGED = "JP1636474794"  # a published sample: CHARGED, its one refund SUCCESS


def calls(state: SimulatorState, order_id: str) -> int:
    return state.calls[order_id]


async def test_upstream_receives_exactly_the_contract_headers(
    make_proxy: ProxyFactory, simulator_state: SimulatorState
) -> None:
    proxy = await make_proxy()
    resp = await proxy.get(
        f"/orders/{CHARGED}",
        headers={
            "Authorization": "Basic Y2FsbGVyLWtleTo=",  # the caller's own: must be dropped
            "x-routing-id": "customer_1122",
            "version": "2023-01-01",
            "Cookie": "session=abc",
            "X-Forwarded-For": "10.0.0.9",
            "X-Custom": "nope",
        },
    )
    assert resp.status == 200
    sent = simulator_state.requests[-1]
    expected_auth = "Basic " + base64.b64encode(f"{API_KEY}:".encode()).decode()
    assert sent.headers["authorization"] == expected_auth
    assert sent.headers["x-merchantid"] == MERCHANT
    assert sent.headers["version"] == "2023-01-01"
    assert sent.headers["x-routing-id"] == "customer_1122"
    for leaked in ("cookie", "x-forwarded-for", "x-custom"):
        assert leaked not in sent.headers
    allowed = {
        "authorization", "x-merchantid", "version", "x-routing-id", "accept",
        "content-type", "user-agent", "host", "accept-encoding",
    }  # fmt: skip
    assert set(sent.headers) <= allowed
    assert sent.path == f"/orders/{CHARGED}"
    assert sent.query == {}


async def test_default_version_is_sent_when_caller_sends_none(
    simulator_state: SimulatorState, make_proxy: ProxyFactory
) -> None:
    client = await make_proxy()
    await client.get(f"/orders/{CHARGED}")
    assert simulator_state.requests[-1].headers["version"] == "2023-06-30"
    assert "x-routing-id" not in simulator_state.requests[-1].headers


async def test_final_order_is_a_miss_then_a_hit_with_age_and_same_bytes(
    make_proxy: ProxyFactory, simulator_state: SimulatorState
) -> None:
    proxy = await make_proxy()
    first = await proxy.get(f"/orders/{CHARGED}")
    first_body = await first.read()
    second = await proxy.get(f"/orders/{CHARGED}")
    second_body = await second.read()
    assert first.headers["X-Cache"] == "MISS"
    assert "Age" not in first.headers
    assert second.headers["X-Cache"] == "HIT"
    assert int(second.headers["Age"]) >= 0
    assert first_body == second_body
    assert json.loads(second_body)["status"] == "CHARGED"
    assert second.headers["ETag"] == first.headers["ETag"]
    assert calls(simulator_state, CHARGED) == 1


async def test_body_is_juspays_byte_for_byte(
    make_proxy: ProxyFactory, simulator_state: SimulatorState
) -> None:
    simulator_state.put_order(MERCHANT, "BYTES1", "NEW", note="spacing  kept")
    raw = json.dumps(simulator_state.orders[(MERCHANT, "BYTES1")].stages[0].body).encode()
    proxy = await make_proxy()
    resp = await proxy.get("/orders/BYTES1")
    assert await resp.read() == raw


async def test_no_cache_forces_an_upstream_read_that_refreshes_the_entry(
    make_proxy: ProxyFactory, simulator_state: SimulatorState
) -> None:
    proxy = await make_proxy()
    await proxy.get(f"/orders/{CHARGED}")
    bypass = await proxy.get(f"/orders/{CHARGED}", headers={"Cache-Control": "no-cache"})
    assert bypass.headers["X-Cache"] == "BYPASS"
    assert calls(simulator_state, CHARGED) == 2
    hit = await proxy.get(f"/orders/{CHARGED}")
    assert hit.headers["X-Cache"] == "HIT"
    # The refreshed entry is the one served: its age restarted at the bypass read.
    assert int(hit.headers["Age"]) <= 1
    assert calls(simulator_state, CHARGED) == 2


async def test_pending_order_is_never_cached_and_charged_is_seen_at_once(
    make_proxy: ProxyFactory, simulator_state: SimulatorState
) -> None:
    simulator_state.lifecycle(MERCHANT, "PEND1", ["NEW", "PENDING_VBV", "CHARGED"])
    proxy = await make_proxy()
    seen = []
    for step in range(3):
        resp = await proxy.get("/orders/PEND1")
        body = await resp.json()
        seen.append((body["status"], resp.headers["X-Cache"]))
        if step < 2:
            simulator_state.advance(MERCHANT, "PEND1")
    assert seen == [("NEW", "MISS"), ("PENDING_VBV", "MISS"), ("CHARGED", "MISS")]
    hit = await proxy.get("/orders/PEND1")
    assert hit.headers["X-Cache"] == "HIT"
    assert (await hit.json())["status"] == "CHARGED"
    assert calls(simulator_state, "PEND1") == 3


async def test_refund_pending_then_settled_is_cached_only_briefly(
    make_proxy: ProxyFactory, simulator_state: SimulatorState, redis_client: aioredis.Redis
) -> None:
    simulator_state.refund_lifecycle(MERCHANT, "REF1")
    proxy = await make_proxy()
    resp = await proxy.get("/orders/REF1")
    assert (await resp.json())["refunds"][0]["status"] == "PENDING"
    # The TTL is read from the real Redis entry.
    key = proxy.app[ORDER_SERVICE].key(OrderQuery(MERCHANT, "REF1", "2023-06-30"))
    ttl = await redis_client.ttl(key)
    assert 0 < ttl <= 30


async def test_merchants_never_share_entries(
    make_proxy: ProxyFactory, simulator_state: SimulatorState
) -> None:
    simulator_state.put_order(MERCHANT, "SHARED1", "CHARGED", amount=100)
    simulator_state.put_order(OTHER_MERCHANT, "SHARED1", "CHARGED", amount=999)
    proxy = await make_proxy()
    a1 = await (await proxy.get("/orders/SHARED1")).json()
    b1 = await (await proxy.get("/orders/SHARED1", headers={"x-merchantid": OTHER_MERCHANT})).json()
    b2 = await proxy.get("/orders/SHARED1", headers={"x-merchantid": OTHER_MERCHANT})
    assert (a1["merchant_id"], a1["amount"]) == (MERCHANT, 100)
    assert (b1["merchant_id"], b1["amount"]) == (OTHER_MERCHANT, 999)
    assert b2.headers["X-Cache"] == "HIT"
    assert (await b2.json())["merchant_id"] == OTHER_MERCHANT
    other_auth = "Basic " + base64.b64encode(f"{OTHER_API_KEY}:".encode()).decode()
    assert simulator_state.requests[-1].headers["authorization"] == other_auth


async def test_versions_and_gateway_option_are_separate_entries(
    make_proxy: ProxyFactory, simulator_state: SimulatorState
) -> None:
    proxy = await make_proxy()
    await proxy.get(f"/orders/{CHARGED}", headers={"version": "2023-06-30"})
    other_version = await proxy.get(f"/orders/{CHARGED}", headers={"version": "2021-01-01"})
    full = await proxy.get(f"/orders/{CHARGED}?options.add_full_gateway_response=true")
    assert other_version.headers["X-Cache"] == "MISS"
    assert full.headers["X-Cache"] == "MISS"
    assert "gateway_response" in (await full.json())["payment_gateway_response"]
    assert simulator_state.requests[-1].query == {"options.add_full_gateway_response": "true"}
    again = await proxy.get(f"/orders/{CHARGED}?options.add_full_gateway_response=true")
    assert again.headers["X-Cache"] == "HIT"
    assert calls(simulator_state, CHARGED) == 3


async def test_unknown_merchant_is_forbidden_without_upstream_call(
    make_proxy: ProxyFactory, simulator_state: SimulatorState
) -> None:
    client = await make_proxy()
    resp = await client.get(f"/orders/{CHARGED}", headers={"x-merchantid": "intruder"})
    assert resp.status == 403
    body = await resp.json()
    assert body["status"] == "error"
    assert body["error_code"] == "merchant_not_allowed"
    assert simulator_state.total_calls == 0


BAD_IDS = [
    "",
    "..",
    ".",
    "%2e%2e",
    "a%2Fb",
    "a%252Fb",
    "a%5Cb",
    "a/b",
    "..%2F..%2Fadmin",
    "%00",
    "a%0d%0aX-Injected:1",
    "a%20b",
    "x" * 65,
    "-leading-dash",
    "_leading",
    "a%3Fb",
    "a%23b",
    "caf%C3%A9",
    "a;b",
    "a@evil.example",
]


@pytest.mark.parametrize("bad_id", BAD_IDS)
async def test_bad_order_ids_answer_400_with_zero_upstream_calls(
    make_proxy: ProxyFactory, simulator_state: SimulatorState, bad_id: str
) -> None:
    proxy = await make_proxy()
    # Sent raw, exactly as written, so no client-side normalisation hides the attack.
    assert proxy.server.host is not None
    assert proxy.server.port is not None
    resp = await raw_get(proxy.server.host, proxy.server.port, "/orders/" + bad_id)
    assert resp.status == 400, bad_id
    body = resp.json()
    assert body["status"] == "error"
    assert body["error_info"]["category"] == "USER_ERROR"
    assert simulator_state.total_calls == 0


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("version", "2023-13-45"),
        ("version", "yesterday"),
        ("version", "2023-6-30"),
        ("x-routing-id", "r" * 129),
        ("x-merchantid", "bad id!"),
    ],
)
async def test_bad_headers_answer_400_without_upstream_call(
    make_proxy: ProxyFactory, simulator_state: SimulatorState, header: str, value: str
) -> None:
    proxy = await make_proxy()
    assert proxy.server.host is not None
    assert proxy.server.port is not None
    resp = await raw_get(
        proxy.server.host, proxy.server.port, f"/orders/{CHARGED}", {header: value}
    )
    assert resp.status == 400
    assert resp.json()["error_code"] == "invalid_request"
    assert simulator_state.total_calls == 0


async def test_control_characters_in_headers_are_refused_before_any_upstream_call(
    make_proxy: ProxyFactory, simulator_state: SimulatorState
) -> None:
    proxy = await make_proxy()
    assert proxy.server.host is not None
    assert proxy.server.port is not None
    # aiohttp's HTTP parser itself rejects these bytes, before our handlers run.
    resp = await raw_get(
        proxy.server.host, proxy.server.port, f"/orders/{CHARGED}", {"x-routing-id": "a\x7fb"}
    )
    assert resp.status == 400
    assert simulator_state.total_calls == 0


async def test_query_order_id_must_match_the_path(
    make_proxy: ProxyFactory, simulator_state: SimulatorState
) -> None:
    proxy = await make_proxy()
    same = await proxy.get(f"/orders/{CHARGED}?order_id={CHARGED}&merchant_id=x&foo=bar")
    assert same.status == 200
    # Unknown parameters are accepted but never forwarded.
    assert simulator_state.requests[-1].query == {}
    other = await proxy.get(f"/orders/{CHARGED}?order_id=JPAYNEW032")
    assert other.status == 400
    bad_flag = await proxy.get(f"/orders/{CHARGED}?options.add_full_gateway_response=maybe")
    assert bad_flag.status == 400
    assert simulator_state.total_calls == 1


async def test_legacy_order_status_path_serves_the_same_entry(
    make_proxy: ProxyFactory, simulator_state: SimulatorState
) -> None:
    proxy = await make_proxy()
    first = await proxy.get("/order/status", params={"order_id": "JPAYNEW032"})
    second = await proxy.get("/orders/JPAYNEW032")
    assert first.status == 200
    assert (await first.json())["order_id"] == "JPAYNEW032"
    assert second.headers["X-Cache"] == "HIT"
    missing = await proxy.get("/order/status")
    assert missing.status == 400


async def test_etag_revalidation_answers_304(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy()
    first = await proxy.get(f"/orders/{CHARGED}")
    etag = first.headers["ETag"]
    not_modified = await proxy.get(f"/orders/{CHARGED}", headers={"If-None-Match": etag})
    assert not_modified.status == 304
    assert await not_modified.read() == b""
    assert not_modified.headers["ETag"] == etag
    changed = await proxy.get(f"/orders/{CHARGED}", headers={"If-None-Match": '"other"'})
    assert changed.status == 200


async def test_request_id_is_echoed_or_created(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy()
    given = await proxy.get(f"/orders/{CHARGED}", headers={"X-Request-Id": "req-123"})
    assert given.headers["X-Request-Id"] == "req-123"
    made = await proxy.get(f"/orders/{CHARGED}")
    assert len(made.headers["X-Request-Id"]) == 32
    junk = await proxy.get(f"/orders/{CHARGED}", headers={"X-Request-Id": "bad id\t"})
    assert junk.headers["X-Request-Id"] != "bad id\t"


async def test_unknown_order_passes_juspays_400_through_and_is_not_cached(
    make_proxy: ProxyFactory, simulator_state: SimulatorState
) -> None:
    proxy = await make_proxy()
    first = await proxy.get("/orders/NOPE123")
    body = await first.json()
    assert first.status == 400
    assert body["status"] == "NOT_FOUND"
    assert body["error_info"]["code"] == "RESOURCE_NOT_FOUND"
    second = await proxy.get("/orders/NOPE123")
    assert second.headers["X-Cache"] == "MISS"
    assert calls(simulator_state, "NOPE123") == 2


async def test_not_found_is_cached_briefly_when_enabled(
    make_proxy: ProxyFactory, simulator_state: SimulatorState
) -> None:
    proxy = await make_proxy(
        cache=CacheSettings(policy=CachePolicy(not_found_ttl=5), verify_sample_rate=0.0)
    )
    await proxy.get("/orders/NOPE124")
    second = await proxy.get("/orders/NOPE124")
    assert second.status == 400
    assert second.headers["X-Cache"] == "HIT"
    assert calls(simulator_state, "NOPE124") == 1


async def test_fifty_concurrent_requests_make_one_upstream_call(
    make_proxy: ProxyFactory, simulator_state: SimulatorState
) -> None:
    simulator_state.put_order(MERCHANT, "BURST1", "PENDING_VBV")
    # Hold the upstream answer long enough for every request to arrive while it is in flight.
    simulator_state.add_fault(Fault(kind="latency", delay=0.5, order_id="BURST1"))
    proxy = await make_proxy()
    responses = await asyncio.gather(*(proxy.get("/orders/BURST1") for _ in range(50)))
    statuses = {r.status for r in responses}
    bodies = {json.loads(await r.read())["status"] for r in responses}
    assert statuses == {200}
    assert bodies == {"PENDING_VBV"}  # not cacheable, still shared with every waiter
    assert calls(simulator_state, "BURST1") == 1


async def test_coalesced_waiters_share_the_leaders_error(
    make_proxy: ProxyFactory, simulator_state: SimulatorState
) -> None:
    simulator_state.put_order(MERCHANT, "BURST2", "CHARGED")
    simulator_state.add_fault(Fault(kind="latency", delay=0.3, order_id="BURST2", remaining=1))
    simulator_state.add_fault(Fault(kind="status", status=500, order_id="BURST2"))
    proxy = await make_proxy()
    responses = await asyncio.gather(*(proxy.get("/orders/BURST2") for _ in range(10)))
    assert {r.status for r in responses} == {200}
    assert calls(simulator_state, "BURST2") == 1


async def test_in_process_cache_serves_hits_without_redis(
    make_proxy: ProxyFactory, simulator_state: SimulatorState
) -> None:
    proxy = await make_proxy(memory=True)
    await proxy.get(f"/orders/{CHARGED}")
    hit = await proxy.get(f"/orders/{CHARGED}")
    assert hit.headers["X-Cache"] == "HIT"
    ready = await (await proxy.get("/readyz")).json()
    assert ready["cache"] == {"layer": "memory"}


async def test_health_and_readiness(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy()
    assert (await proxy.get("/healthz")).status == 200
    await asyncio.wait_for(proxy.app[BUS].subscribed.wait(), timeout=5)
    ready = await proxy.get("/readyz")
    assert ready.status == 200
    assert await ready.json() == {
        "status": "ready",
        "cache": {"layer": "redis", "redis": "up", "bus": "up"},
    }


async def test_unknown_route_is_a_juspay_shaped_404(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy()
    resp = await proxy.get("/admin")
    assert resp.status == 404
    assert (await resp.json())["error_code"] == "route_not_found"
    post = await proxy.post(f"/orders/{CHARGED}")
    assert post.status == 405


async def test_simulator_refuses_a_wrong_key_like_juspay(simulator: TestServer) -> None:
    # The simulator itself enforces Juspay's auth: a wrong key is a 401 access_denied.
    async with aiohttp.ClientSession() as session:
        bad = base64.b64encode(b"wrong:").decode()
        async with session.get(
            simulator.make_url(f"/orders/{CHARGED}"),
            headers={"Authorization": f"Basic {bad}", "x-merchantid": MERCHANT},
        ) as resp:
            assert resp.status == 401
            assert (await resp.json())["error_code"] == "access_denied"


async def test_every_spelling_of_the_gateway_option_shares_one_entry(
    make_proxy: ProxyFactory, simulator_state: SimulatorState
) -> None:
    proxy = await make_proxy()
    option = "options.add_full_gateway_response"
    on = [
        (await proxy.get(f"/orders/{CHARGED}?{option}={value}")).headers["X-Cache"]
        for value in ("TRUE", "1", "true", "True")
    ]
    assert on == ["MISS", "HIT", "HIT", "HIT"]
    assert simulator_state.requests[-1].query == {option: "true"}  # one spelling upstream
    off = [
        (await proxy.get(f"/orders/{CHARGED}?{option}={value}")).headers["X-Cache"]
        for value in ("FALSE", "0", "false")
    ]
    assert off == ["MISS", "HIT", "HIT"]
    assert simulator_state.requests[-1].query == {}
    assert (await proxy.get(f"/orders/{CHARGED}")).headers["X-Cache"] == "HIT"  # off is absent
    assert (await proxy.get(f"/orders/{CHARGED}?{option}=yes")).status == 400
    assert calls(simulator_state, CHARGED) == 2


async def test_txn_uuid_is_validated_forwarded_and_keyed(
    make_proxy: ProxyFactory, simulator_state: SimulatorState
) -> None:
    hook = WebhookSettings("juspay", Secret("hook-pw-123", "test"))
    proxy = await make_proxy(webhook=hook)
    attempt, other = "eulwh5QbZSBvw35eWnH", "moztmUw6ryK1DZXwBEV"
    first = await proxy.get(f"/orders/{CHARGED}?txn_uuid={attempt}")
    assert (first.status, first.headers["X-Cache"]) == (200, "MISS")
    assert simulator_state.requests[-1].query == {"txn_uuid": attempt}
    assert simulator_state.requests[-1].path == f"/orders/{CHARGED}?txn_uuid={attempt}"
    assert (await proxy.get(f"/orders/{CHARGED}?txn_uuid={attempt}")).headers["X-Cache"] == "HIT"
    legacy = await proxy.get(f"/order/status?order_id={CHARGED}&txn_uuid={attempt}")
    assert legacy.headers["X-Cache"] == "HIT"  # the same key from the older SDK path
    # Another attempt, and the order's own answer, are other entries.
    assert (await proxy.get(f"/orders/{CHARGED}?txn_uuid={other}")).headers["X-Cache"] == "MISS"
    assert (await proxy.get(f"/orders/{CHARGED}")).headers["X-Cache"] == "MISS"
    full = await proxy.get(
        f"/orders/{CHARGED}?txn_uuid={attempt}&options.add_full_gateway_response=1"
    )
    assert full.headers["X-Cache"] == "MISS"
    assert simulator_state.requests[-1].query == {
        "options.add_full_gateway_response": "true",
        "txn_uuid": attempt,
    }
    assert calls(simulator_state, CHARGED) == 4
    # Unsafe values never reach Juspay.
    for bad in ("", "..%2Fx", "a%20b", "x" * 65, "ab:cd", "-lead", "%7Bx%7D", "a&txn_uuid=b"):
        resp = await proxy.get(f"/orders/{CHARGED}?txn_uuid={bad}")
        assert resp.status == 400, bad
        assert (await resp.json())["error_code"] == "invalid_request"
    assert calls(simulator_state, CHARGED) == 4
    # A webhook for the order drops the attempt's entries too.
    order = simulator_state.order_body(MERCHANT, CHARGED, "CHARGED")
    body = json.dumps({"event_name": "ORDER_REFUNDED", "content": {"order": order}}).encode()
    auth = {"Authorization": "Basic " + base64.b64encode(b"juspay:hook-pw-123").decode()}
    assert (await proxy.post("/webhooks/juspay", data=body, headers=auth)).status == 200
    await proxy.app[ORDER_SERVICE].background.join()
    assert (await proxy.get(f"/orders/{CHARGED}?txn_uuid={attempt}")).headers["X-Cache"] == "MISS"


async def test_a_product_user_agent_goes_on_every_upstream_call(
    make_proxy: ProxyFactory,
    simulator: TestServer,
    simulator_state: SimulatorState,
    aiohttp_client: Callable[..., Awaitable[TestClient[web.Request, web.Application]]],
) -> None:
    agent = f"order-proxy/{__version__}"
    assert re.fullmatch(r"order-proxy/\d+\.\d+\.\d+\S*", agent)
    proxy = await make_proxy()
    await proxy.get(f"/orders/{CHARGED}", headers={"User-Agent": "curl/8.5.0"})  # not forwarded
    await proxy.post("/orders:batchGet", json={"order_ids": ["JPAYNEW032", "NOPE1"]})
    # An application given its own HTTP session (no default headers) sends it too.
    async with aiohttp.ClientSession() as session:
        app = create_app(make_settings(simulator.make_url("")), upstream=session)
        own = await aiohttp_client(app)
        await own.get(f"/orders/{CHARGED}?txn_uuid=eulwh5QbZSBvw35eWnH")
    seen = [request.headers.get("user-agent") for request in simulator_state.requests]
    assert len(seen) == 4
    assert set(seen) == {agent}
