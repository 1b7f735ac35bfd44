"""A webhook is a lower bound: reads from Juspay that lag the webhook it just sent are answered
but never stored, and are read again until Juspay catches up; on every replica, for no-cache
reads too. The simulator plays Juspay's lagging read side: after the refund, its reads still
show the paid order for a few reads."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestServer

from proxy.appkeys import ORDER_SERVICE
from proxy.config.settings import WaitSettings
from proxy.core.orders import OrderQuery
from proxy.devtools.simulator import SimulatorState, Stage
from tests.conftest import MERCHANT, ProxyFactory
from tests.support.consistency import (
    HOOK,
    OPS,
    REFUND_SETTLED,
    consistent,
    refunds,
)
from tests.support.metrics import Client, metric
from tests.support.processes import RedisProcess


def refund_webhook(state: SimulatorState, order_id: str) -> bytes:
    """ORDER_REFUNDED with Juspay's copy of the refunded order."""
    order = state.order_body(MERCHANT, order_id, "CHARGED", [REFUND_SETTLED])
    event = {"id": "evt_lag", "event_name": "ORDER_REFUNDED",
             "date_created": "2026-12-05T10:00:00Z", "content": {"order": order}}  # fmt: skip
    return json.dumps(event).encode()


def lag_refund(state: SimulatorState, order_id: str, reads: int) -> None:
    """Juspay refunds the order, but its next `reads` reads still answer the paid order."""
    paid = state.order_body(MERCHANT, order_id, "CHARGED")
    refunded = state.order_body(MERCHANT, order_id, "CHARGED", [REFUND_SETTLED])
    state.script(MERCHANT, order_id, [Stage(paid), Stage(refunded, after_reads=reads)])


async def cache_paid(proxy: Client, state: SimulatorState, order_id: str) -> None:
    state.put_order(MERCHANT, order_id, "CHARGED")
    assert (await proxy.get(f"/orders/{order_id}", headers=OPS)).headers["X-Cache"] == "MISS"
    assert (await proxy.get(f"/orders/{order_id}", headers=OPS)).headers["X-Cache"] == "HIT"


@pytest.mark.parametrize("layer", ["redis", "memory"])
async def test_a_reread_that_lags_its_webhook_is_not_cached_and_is_read_until_it_catches_up(
    make_proxy: ProxyFactory,
    simulator: TestServer,
    simulator_state: SimulatorState,
    redis_server: RedisProcess,
    layer: str,
) -> None:
    proxy = await make_proxy(
        settings=consistent(simulator, redis_server.url if layer == "redis" else None)
    )
    await cache_paid(proxy, simulator_state, "LAG-1")
    lag_refund(simulator_state, "LAG-1", reads=2)
    hook = await proxy.post("/webhooks/juspay", data=refund_webhook(simulator_state, "LAG-1"),
                            headers=HOOK)  # fmt: skip
    assert hook.status == 200
    # The webhook's refresh, then the background re-reads (1 s, then 2 s apart) until the
    # read side shows the refund; the lagging answers were never stored.
    await proxy.app[ORDER_SERVICE].background.join()
    assert metric(proxy, "order_proxy_webhook_lagging_rereads_total") == 2
    assert simulator_state.calls["LAG-1"] == 1 + 3
    after = await proxy.get("/orders/LAG-1", headers=OPS)
    assert after.headers["X-Cache"] == "HIT"
    assert await refunds(after) == ["SUCCESS"]


async def test_a_lagging_no_cache_read_on_another_replica_is_answered_but_not_stored(
    make_proxy: ProxyFactory,
    simulator: TestServer,
    simulator_state: SimulatorState,
    redis_server: RedisProcess,
    redis_client: aioredis.Redis,
) -> None:
    settings = consistent(simulator, redis_server.url)
    a, b = await make_proxy(settings=settings), await make_proxy(settings=settings)
    await cache_paid(a, simulator_state, "LAG-2")
    # Four reads lag: A's refresh, B's read below and the first re-read of each.
    lag_refund(simulator_state, "LAG-2", reads=4)
    assert (await a.post("/webhooks/juspay", data=refund_webhook(simulator_state, "LAG-2"),
                         headers=HOOK)).status == 200  # fmt: skip
    # B's no-cache read still sees the paid order: Juspay's answer, so it is the answer ...
    fresh_read = await b.get("/orders/LAG-2", headers={**OPS, "Cache-Control": "no-cache"})
    assert fresh_read.headers["X-Cache"] == "BYPASS"
    assert await refunds(fresh_read) == []
    # ... but it lags the webhook A took (the floor is kept in Redis): not stored.
    assert metric(b, "order_proxy_webhook_lagging_rereads_total") == 1
    key = b.app[ORDER_SERVICE].key(OrderQuery(MERCHANT, "LAG-2", "2023-06-30"))
    assert await redis_client.exists(key) == 0
    await a.app[ORDER_SERVICE].background.join()
    await b.app[ORDER_SERVICE].background.join()
    for replica in (a, b):
        assert await refunds(await replica.get("/orders/LAG-2", headers=OPS)) == ["SUCCESS"]


async def test_a_waiter_keeps_waiting_through_a_read_that_lags_the_webhook(
    make_proxy: ProxyFactory,
    simulator: TestServer,
    simulator_state: SimulatorState,
    redis_server: RedisProcess,
) -> None:
    settings = consistent(simulator, redis_server.url)
    settings = replace(settings, wait=WaitSettings(poll_initial_seconds=0.2))
    proxy = await make_proxy(settings=settings)
    await cache_paid(proxy, simulator_state, "LAG-3")
    lag_refund(simulator_state, "LAG-3", reads=2)
    assert (await proxy.post("/webhooks/juspay", data=refund_webhook(simulator_state, "LAG-3"),
                             headers=HOOK)).status == 200  # fmt: skip
    # The paid order looks final, but Juspay said it was refunded: the wait holds on.
    resp = await proxy.get("/orders/LAG-3?wait=10", headers=OPS)
    assert resp.headers["X-Wait"] == "final"
    assert await refunds(resp) == ["SUCCESS"]
