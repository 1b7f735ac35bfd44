"""RFC 9211 Cache-Status on order answers, beside X-Cache, through the real proxy stack."""

from __future__ import annotations

import asyncio

from proxy.devtools.simulator import Fault, SimulatorState
from tests.conftest import MERCHANT, ProxyFactory

CHARGED = "JP1636474794"  # a published sample: CHARGED, its one refund SUCCESS
DAY = 24 * 3600


async def test_a_miss_that_is_stored_then_a_hit_with_its_remaining_ttl(
    make_proxy: ProxyFactory,
) -> None:
    proxy = await make_proxy()
    miss = await proxy.get(f"/orders/{CHARGED}")
    hit = await proxy.get(f"/orders/{CHARGED}")
    assert miss.headers["Cache-Status"] == "order-proxy; fwd=miss; stored"
    assert miss.headers["X-Cache"] == "MISS"
    member, hit_param, ttl = hit.headers["Cache-Status"].split("; ")
    assert (member, hit_param) == ("order-proxy", "hit")
    # A final order is kept a day; a second or two went by at most.
    assert ttl.startswith("ttl=")
    assert DAY - 5 <= int(ttl.removeprefix("ttl=")) <= DAY


async def test_an_order_still_moving_is_forwarded_and_not_stored(
    make_proxy: ProxyFactory, simulator_state: SimulatorState
) -> None:
    simulator_state.put_order(MERCHANT, "MOVING1", "PENDING_VBV")
    proxy = await make_proxy()
    resp = await proxy.get("/orders/MOVING1")
    assert resp.headers["Cache-Status"] == "order-proxy; fwd=miss"


async def test_no_cache_is_forwarded_by_request_and_stores_the_fresh_answer(
    make_proxy: ProxyFactory,
) -> None:
    proxy = await make_proxy()
    await proxy.get(f"/orders/{CHARGED}")
    resp = await proxy.get(f"/orders/{CHARGED}", headers={"Cache-Control": "no-cache"})
    assert resp.headers["X-Cache"] == "BYPASS"
    assert resp.headers["Cache-Status"] == "order-proxy; fwd=request; stored"


async def test_a_read_shared_with_others_says_collapsed(
    make_proxy: ProxyFactory, simulator_state: SimulatorState
) -> None:
    simulator_state.put_order(MERCHANT, "SHARED1", "PENDING_VBV")
    # Held long enough for the second request to join the first one's read.
    simulator_state.add_fault(Fault(kind="latency", delay=0.3, order_id="SHARED1"))
    proxy = await make_proxy(memory=True)
    first, second = await asyncio.gather(proxy.get("/orders/SHARED1"), proxy.get("/orders/SHARED1"))
    values = sorted([first.headers["Cache-Status"], second.headers["Cache-Status"]])
    assert values == ["order-proxy; fwd=miss", "order-proxy; fwd=miss; collapsed"]
    assert simulator_state.calls["SHARED1"] == 1


async def test_a_304_and_the_legacy_path_carry_it_too(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy(memory=True)
    first = await proxy.get(f"/orders/{CHARGED}")
    revalidated = await proxy.get(
        f"/orders/{CHARGED}", headers={"If-None-Match": first.headers["ETag"]}
    )
    legacy = await proxy.get("/order/status", params={"order_id": CHARGED})
    assert revalidated.status == 304
    assert revalidated.headers["Cache-Status"].startswith("order-proxy; hit; ttl=")
    assert legacy.headers["Cache-Status"].startswith("order-proxy; hit; ttl=")
