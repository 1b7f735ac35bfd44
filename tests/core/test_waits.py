"""`?wait=` (one polling schedule per order, woken by webhooks) and POST /orders:batchGet."""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import replace

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from proxy.appkeys import WAITS
from proxy.config.secrets import Secret
from proxy.config.settings import Settings, WaitSettings, WebhookSettings
from proxy.devtools.simulator import Fault, SimulatorState
from tests.conftest import MERCHANT, ProxyFactory, make_settings
from tests.support.metrics import metric
from tests.support.processes import RedisProcess

Client = TestClient[web.Request, web.Application]
HOOK = {"Authorization": "Basic " + base64.b64encode(b"juspay:hook-pw").decode()}


def waiting(simulator: TestServer, redis: RedisProcess, **wait: float) -> Settings:
    settings = make_settings(
        simulator.make_url(""),
        redis_url=redis.url,
        webhook=WebhookSettings("juspay", Secret("hook-pw", "test")),
    )
    return replace(settings, wait=replace(WaitSettings(), **wait))  # type: ignore[arg-type]


async def until(condition: object, within: float = 5.0) -> None:
    """Poll a real condition of the running app, with a deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():  # type: ignore[operator]
        if loop.time() > deadline:
            pytest.fail("condition not reached in time")
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("value", ["0", "-1", "31", "abc", "nan", "inf"])
async def test_wait_must_be_a_bounded_number_of_seconds(
    make_proxy: ProxyFactory, simulator_state: SimulatorState, value: str
) -> None:
    proxy = await make_proxy()
    resp = await proxy.get(f"/orders/JP1636474794?wait={value}")
    assert resp.status == 400
    assert simulator_state.total_calls == 0


async def test_a_final_order_answers_at_once(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy()
    resp = await proxy.get("/orders/JP1636474794?wait=10")
    assert resp.status == 200
    assert resp.headers["X-Wait"] == "final"


async def test_wait_ends_with_the_latest_status_when_time_runs_out(
    make_proxy: ProxyFactory,
    simulator: TestServer,
    simulator_state: SimulatorState,
    redis_server: RedisProcess,
) -> None:
    simulator_state.put_order(MERCHANT, "W-SLOW", "PENDING_VBV")
    proxy = await make_proxy(settings=waiting(simulator, redis_server, poll_initial_seconds=0.2))
    resp = await proxy.get("/orders/W-SLOW?wait=1")
    assert resp.headers["X-Wait"] == "timeout"
    assert (await resp.json())["status"] == "PENDING_VBV"
    assert metric(proxy, "order_proxy_wait_results_total", result="timeout") == 1


async def test_waiters_answer_soon_after_the_order_settles_with_one_schedule(
    make_proxy: ProxyFactory,
    simulator: TestServer,
    simulator_state: SimulatorState,
    redis_server: RedisProcess,
) -> None:
    simulator_state.lifecycle(MERCHANT, "W-1", ["PENDING_VBV", "CHARGED"], after_seconds=1.0)
    proxy = await make_proxy(
        settings=waiting(simulator, redis_server, poll_initial_seconds=0.2, poll_max_seconds=0.4)
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    responses = await asyncio.gather(*(proxy.get("/orders/W-1?wait=10") for _ in range(30)))
    elapsed = loop.time() - started
    assert {r.headers["X-Wait"] for r in responses} == {"final"}
    assert {(await r.json())["status"] for r in responses} == {"CHARGED"}
    assert elapsed < 1.0 + 0.4 + 1.0  # the change, one poll interval, and slack
    # One initial read (coalesced) plus a handful of polls, not one per waiter per poll.
    assert simulator_state.calls["W-1"] <= 8
    assert metric(proxy, "order_proxy_wait_polls_saved_total") >= 29


async def test_a_webhook_wakes_every_waiter_without_waiting_for_a_poll(
    make_proxy: ProxyFactory,
    simulator: TestServer,
    simulator_state: SimulatorState,
    redis_server: RedisProcess,
) -> None:
    simulator_state.put_order(MERCHANT, "W-HOOK", "PENDING_VBV")
    proxy = await make_proxy(settings=waiting(simulator, redis_server, poll_initial_seconds=20))
    waiters = [asyncio.ensure_future(proxy.get("/orders/W-HOOK?wait=25")) for _ in range(10)]
    await until(lambda: proxy.app[WAITS].waiting == 10)
    charged = simulator_state.put_order(MERCHANT, "W-HOOK", "CHARGED")
    event = {
        "event_name": "ORDER_SUCCEEDED",
        "date_created": "2026-11-21T12:00:00Z",
        "content": {"order": charged},
    }
    loop = asyncio.get_running_loop()
    sent = loop.time()
    hook = await proxy.post("/webhooks/juspay", data=json.dumps(event), headers=HOOK)
    assert (await hook.json())["result"] == "invalidated"
    responses = await asyncio.gather(*waiters)
    assert loop.time() - sent < 2.0  # long before the 20 s poll
    assert {(await r.json())["status"] for r in responses} == {"CHARGED"}
    assert {r.headers["X-Wait"] for r in responses} == {"final"}
    assert metric(proxy, "order_proxy_wait_wakeups_total", cause="webhook") == 1
    assert metric(proxy, "order_proxy_wait_polls_total") == 0


async def test_disconnecting_waiters_stop_nothing_and_leak_nothing(
    make_proxy: ProxyFactory,
    simulator: TestServer,
    simulator_state: SimulatorState,
    redis_server: RedisProcess,
) -> None:
    simulator_state.lifecycle(MERCHANT, "W-GONE", ["PENDING_VBV", "CHARGED"], after_seconds=1.0)
    proxy = await make_proxy(settings=waiting(simulator, redis_server, poll_initial_seconds=0.2))
    registry = proxy.app[WAITS]
    stay = [asyncio.ensure_future(proxy.get("/orders/W-GONE?wait=10")) for _ in range(2)]
    leave = [asyncio.ensure_future(proxy.get("/orders/W-GONE?wait=10")) for _ in range(3)]
    await until(lambda: registry.waiting == 5)
    for task in leave:
        task.cancel()  # the caller hangs up
    await until(lambda: registry.waiting == 2)
    responses = await asyncio.gather(*stay)
    assert {(await r.json())["status"] for r in responses} == {"CHARGED"}
    await until(lambda: registry.watching == 0 and registry.waiting == 0)


async def test_waiters_beyond_the_bound_are_shed(
    make_proxy: ProxyFactory,
    simulator: TestServer,
    simulator_state: SimulatorState,
    redis_server: RedisProcess,
) -> None:
    simulator_state.put_order(MERCHANT, "W-MANY", "PENDING_VBV")
    proxy = await make_proxy(settings=waiting(simulator, redis_server, max_waiters=3))
    held = [asyncio.ensure_future(proxy.get("/orders/W-MANY?wait=3")) for _ in range(3)]
    await until(lambda: proxy.app[WAITS].waiting == 3)
    shed = await proxy.get("/orders/W-MANY?wait=3")
    assert shed.status == 503
    assert shed.headers["Retry-After"] == "1"
    assert (await shed.json())["error_code"] == "overloaded"
    for task in held:
        task.cancel()


# --- batchGet -------------------------------------------------------------------------------


async def test_batch_mixes_cached_uncached_unknown_and_malformed_ids(
    make_proxy: ProxyFactory, simulator_state: SimulatorState
) -> None:
    cached = ["JP1636474794", "JPAYNEW032", "145678234"]
    simulator_state.put_order(MERCHANT, "B-PEND", "PENDING_VBV")
    proxy = await make_proxy()
    for order_id in cached:
        await proxy.get(f"/orders/{order_id}")
    trips_before = metric(proxy, "order_proxy_redis_round_trips_total")
    calls_before = simulator_state.total_calls
    ids = [*cached, "B-PEND", "B-UNKNOWN", "../etc", cached[0]]
    resp = await proxy.post("/orders:batchGet", json={"order_ids": ids})
    assert resp.status == 200
    items = (await resp.json())["orders"]
    assert [i["order_id"] for i in items] == ids
    by_id = {i["order_id"]: i for i in items}
    for order_id in cached:
        assert (by_id[order_id]["http_status"], by_id[order_id]["cache"]) == (200, "HIT")
        assert by_id[order_id]["body"]["order_id"] == order_id
    assert (by_id["B-PEND"]["http_status"], by_id["B-PEND"]["cache"]) == (200, "MISS")
    assert by_id["B-PEND"]["body"]["status"] == "PENDING_VBV"
    assert by_id["B-UNKNOWN"]["http_status"] == 400
    assert by_id["B-UNKNOWN"]["body"]["status"] == "NOT_FOUND"
    assert by_id["../etc"]["http_status"] == 400
    assert by_id["../etc"]["body"]["error_code"] == "invalid_request"
    assert simulator_state.total_calls - calls_before == 2  # only the two uncached ids
    # All six lookups share one round trip; the two misses add their lock and share steps.
    assert metric(proxy, "order_proxy_redis_round_trips_total") - trips_before <= 4


async def test_batch_items_name_how_far_the_cache_got_even_when_they_fail(
    make_proxy: ProxyFactory, simulator_state: SimulatorState
) -> None:
    simulator_state.add_fault(Fault(kind="status", status=500, order_id="B-FAILS"))
    proxy = await make_proxy()
    ids = ["../etc", "B-FAILS", "B-UNKNOWN"]
    items = (await (await proxy.post("/orders:batchGet", json={"order_ids": ids})).json())["orders"]
    by_id = {i["order_id"]: (i["http_status"], i["cache"]) for i in items}
    # Refused before the cache was asked, as the request metric's `none`.
    assert by_id["../etc"] == (400, "NONE")
    # Asked, missed, then Juspay failed or answered NOT_FOUND.
    assert by_id["B-FAILS"] == (502, "MISS")
    assert by_id["B-UNKNOWN"] == (400, "MISS")


async def test_batch_joins_an_in_flight_single_read(
    make_proxy: ProxyFactory, simulator_state: SimulatorState
) -> None:
    simulator_state.put_order(MERCHANT, "B-SLOW", "PENDING_VBV")
    simulator_state.add_fault(Fault(kind="latency", delay=0.4, order_id="B-SLOW"))
    proxy = await make_proxy()
    single = asyncio.ensure_future(proxy.get("/orders/B-SLOW"))
    await until(lambda: simulator_state.calls["B-SLOW"] == 1)
    batch = await proxy.post("/orders:batchGet", json={"order_ids": ["B-SLOW"]})
    assert (await batch.json())["orders"][0]["body"]["status"] == "PENDING_VBV"
    assert (await single).status == 200
    assert simulator_state.calls["B-SLOW"] == 1


@pytest.mark.parametrize(
    "body",
    [
        b"{}",
        b'{"order_ids": []}',
        b'{"order_ids": "x"}',
        b"[]",
        b"nope",
        json.dumps({"order_ids": [f"O{i}" for i in range(101)]}).encode(),
    ],
)
async def test_bad_batch_requests_answer_400(
    make_proxy: ProxyFactory, simulator_state: SimulatorState, body: bytes
) -> None:
    proxy = await make_proxy()
    resp = await proxy.post("/orders:batchGet", data=body)
    assert resp.status == 400
    assert simulator_state.total_calls == 0


async def test_a_no_cache_waiter_is_never_answered_with_a_state_older_than_its_own_read(
    make_proxy: ProxyFactory,
    simulator: TestServer,
    simulator_state: SimulatorState,
    redis_server: RedisProcess,
) -> None:
    simulator_state.put_order(MERCHANT, "W-NEWER", "PENDING_VBV")
    # The shared schedule polls rarely: the first waiter's read stays its latest news.
    proxy = await make_proxy(settings=waiting(simulator, redis_server, poll_initial_seconds=30))
    first = asyncio.ensure_future(proxy.get("/orders/W-NEWER?wait=3"))
    await until(lambda: proxy.app[WAITS].watching == 1)
    simulator_state.put_order(MERCHANT, "W-NEWER", "AUTHORIZING")
    own = await proxy.get("/orders/W-NEWER?wait=1", headers={"Cache-Control": "no-cache"})
    assert own.headers["X-Wait"] == "timeout"
    assert (await own.json())["status"] == "AUTHORIZING"  # its own read, not the older poll
    # The schedule's latest news is now that read too: the first waiter hears it.
    earlier = await first
    assert (await earlier.json())["status"] == "AUTHORIZING"
