"""The acknowledgement survives the infrastructure: a Sentinel failover to a lagging replica, a
restart from RDB or AOF, a replica that lags an acknowledgement, and a Redis outage, each with
real redis-server processes (a primary, a replica, a Sentinel; a persistent Redis that crashes).

The order in each test is paid and cached, then refunded with a webhook the proxy answers;
after the infrastructure event, no answer may be the cached pre-refund body.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestServer

from proxy.appkeys import BUS, ORDER_SERVICE
from proxy.config.settings import RateLimit, Settings
from proxy.devtools.simulator import SimulatorState
from tests.conftest import MERCHANT, ProxyFactory
from tests.support.bus import until_bus
from tests.support.consistency import (
    HOOK,
    OPS,
    REFUND_SETTLED,
    consistent,
    refunds,
    webhook,
)
from tests.support.metrics import Client, metric
from tests.support.processes import RedisProcess
from tests.support.topology import PersistentRedis, SentinelSet

pytestmark = pytest.mark.slow


@pytest.fixture
async def sentinel_set() -> AsyncIterator[SentinelSet]:
    ha = await SentinelSet.start()
    yield ha
    await ha.close()


def with_redis(settings: Settings, **redis: object) -> Settings:
    return replace(settings, redis=replace(settings.redis, **redis))


async def cache_paid_order(proxy: Client, state: SimulatorState, order_id: str) -> None:
    state.put_order(MERCHANT, order_id, "CHARGED")
    assert (await proxy.get(f"/orders/{order_id}", headers=OPS)).headers["X-Cache"] == "MISS"
    hit = await proxy.get(f"/orders/{order_id}", headers=OPS)
    assert hit.headers["X-Cache"] == "HIT"
    assert await refunds(hit) == []


async def refund_with_webhook(proxy: Client, state: SimulatorState, order_id: str) -> int:
    """Juspay refunds the order and tells the proxy; the webhook's HTTP status."""
    state.put_order(MERCHANT, order_id, "CHARGED", [REFUND_SETTLED])
    resp = await proxy.post("/webhooks/juspay", data=webhook(state, order_id), headers=HOOK)
    await proxy.app[ORDER_SERVICE].background.join()  # its refresh read, whatever it does
    return resp.status


async def until_lookups_reach_redis(proxy: Client, state: SimulatorState) -> None:
    """Read other orders until a lookup is answered by Redis: a pooled connection that
    died with the old server fails its first command (that read goes to Juspay instead)."""
    for attempt in range(10):
        state.put_order(MERCHANT, f"WARM-{attempt}", "CHARGED")
        answered = metric(proxy, "order_proxy_cache_lookups_total", layer="redis", result="miss")
        await proxy.get(f"/orders/WARM-{attempt}", headers=OPS)
        if (
            metric(proxy, "order_proxy_cache_lookups_total", layer="redis", result="miss")
            > answered
        ):
            return
    raise AssertionError("Redis answered no lookup after its restart")


async def all_refunded(proxy: Client, order_id: str, reads: int = 5) -> list[str]:
    """Read the order `reads` times; the X-Cache of each, after checking it shows the refund."""
    seen = []
    for _ in range(reads):
        resp = await proxy.get(f"/orders/{order_id}", headers=OPS)
        assert resp.status == 200
        assert await refunds(resp) == ["SUCCESS"], resp.headers["X-Cache"]
        seen.append(resp.headers["X-Cache"])
    return seen


async def test_a_failover_to_a_lagging_replica_never_serves_an_invalidated_answer(
    make_proxy: ProxyFactory,
    simulator: TestServer,
    simulator_state: SimulatorState,
    sentinel_set: SentinelSet,
) -> None:
    ha = sentinel_set
    # No WAIT: the acknowledgement does not wait for the replica, so only the epoch fence
    # stands between the promoted replica's old entry and the callers.
    proxy = await make_proxy(settings=with_redis(consistent(simulator, ha.url), ack_replicas=0))
    await cache_paid_order(proxy, simulator_state, "HA-FAIL-1")
    await ha.until_replicated()  # the replica holds the paid order's entry ...
    ha.relay.cut()  # ... and then stops hearing the primary
    assert await refund_with_webhook(proxy, simulator_state, "HA-FAIL-1") == 200
    ha.crash_primary()
    await ha.until_switched()
    await until_bus(proxy.app[BUS], healthy=True)  # subscribed on the promoted replica
    await all_refunded(proxy, "HA-FAIL-1")
    # The promoted replica did hold the old answer: it was refused for its epoch.
    assert metric(proxy, "order_proxy_cache_rejected_entries_total", reason="epoch") >= 1


async def test_an_invalidation_is_acknowledged_only_once_a_replica_holds_it(
    make_proxy: ProxyFactory,
    simulator: TestServer,
    simulator_state: SimulatorState,
    sentinel_set: SentinelSet,
) -> None:
    ha = sentinel_set
    proxy = await make_proxy(settings=consistent(simulator, ha.url))  # default: wait for one
    await cache_paid_order(proxy, simulator_state, "HA-ACK-1")
    ha.relay.cut()
    simulator_state.put_order(MERCHANT, "HA-ACK-1", "CHARGED", [REFUND_SETTLED])
    body = webhook(simulator_state, "HA-ACK-1")
    refused = await proxy.post("/webhooks/juspay", data=body, headers=HOOK)
    assert refused.status == 503  # not on the replica: Juspay must retry
    assert int(refused.headers["Retry-After"]) >= 1
    assert (await refused.json())["error_code"] == "cache_unavailable"
    ha.relay.restore()
    started = time.monotonic()
    accepted = await proxy.post("/webhooks/juspay", data=body, headers=HOOK)
    assert accepted.status == 200, await accepted.text()
    assert time.monotonic() - started < 5
    await proxy.app[ORDER_SERVICE].background.join()
    await all_refunded(proxy, "HA-ACK-1", reads=2)


@pytest.mark.parametrize("aof", [False, True], ids=["rdb", "aof"])
async def test_a_restart_from_disk_never_brings_an_invalidated_answer_back(
    make_proxy: ProxyFactory,
    simulator: TestServer,
    simulator_state: SimulatorState,
    aof: bool,
) -> None:
    redis = PersistentRedis(aof=aof).start()
    try:
        proxy = await make_proxy(settings=consistent(simulator, redis.url))
        await cache_paid_order(proxy, simulator_state, "HA-DISK-1")
        client = aioredis.Redis(port=redis.port)
        if not aof:
            await client.save()  # the snapshot holds the paid order and its generation
        await client.aclose()
        assert await refund_with_webhook(proxy, simulator_state, "HA-DISK-1") == 200
        redis.crash()
        await until_bus(proxy.app[BUS], healthy=False)
        redis.start()  # the same port and directory: it loads what it had on disk
        await until_bus(proxy.app[BUS], healthy=True)
        await until_lookups_reach_redis(proxy, simulator_state)
        await all_refunded(proxy, "HA-DISK-1")
        # Whatever it brought back was fenced on the Redis that crashed: refused.
        assert metric(proxy, "order_proxy_cache_rejected_entries_total", reason="epoch") >= 1
    finally:
        redis.close()


async def test_a_redis_outage_costs_juspay_a_few_reads_per_hot_order_not_one_per_request(
    make_proxy: ProxyFactory,
    simulator: TestServer,
    simulator_state: SimulatorState,
    own_redis: RedisProcess,
) -> None:
    settings = consistent(simulator, own_redis.url)
    # The caller may make one Juspay read a second: hits must not count against it.
    limited = replace(
        settings.clients[0], upstream_rate_limit=RateLimit(rate_per_second=1, burst=2)
    )
    proxy = await make_proxy(settings=replace(settings, clients=(limited,)))
    await cache_paid_order(proxy, simulator_state, "HA-OUT-1")
    own_redis.stop()
    await until_bus(proxy.app[BUS], healthy=False)
    before = simulator_state.calls["HA-OUT-1"]
    statuses = []
    for _ in range(100):  # 20 reads a second for 5 s
        resp = await proxy.get("/orders/HA-OUT-1", headers=OPS)
        statuses.append(resp.status)
        await asyncio.sleep(0.05)  # the pace of the load, not a wait for a state
    assert statuses == [200] * 100  # nothing refused: the limit is charged for real reads only
    calls = simulator_state.calls["HA-OUT-1"] - before
    assert 1 <= calls <= 8, calls  # one read per grace window (2 s), not one per request
