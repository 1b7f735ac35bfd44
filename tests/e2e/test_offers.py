"""A CHARGED order whose offer is still INITIATED, through the proxy: short TTL, never stale."""

from __future__ import annotations

import time
from dataclasses import replace

import msgspec
import redis.asyncio as aioredis
from aiohttp.test_utils import TestServer

from proxy.appkeys import ORDER_SERVICE
from proxy.cache.entries import CachedEntry, EntryCodec
from proxy.core.orders import OrderQuery
from proxy.devtools.simulator import Fault, SimulatorState
from tests.conftest import MERCHANT, ProxyFactory, make_settings
from tests.support.processes import RedisProcess

ORDER = "OFFER-IN-FLIGHT-1"
INITIATED = {"offer_id": "ed2743f5", "offer_code": "BOID", "status": "INITIATED"}


async def test_charged_order_with_an_initiated_offer_is_cached_for_the_changing_ttl_only(
    make_proxy: ProxyFactory,
    simulator_state: SimulatorState,
    simulator: TestServer,
    redis_client: aioredis.Redis,
    redis_server: RedisProcess,
) -> None:
    simulator_state.put_order(MERCHANT, ORDER, "CHARGED", offers=[INITIATED])
    settings = make_settings(simulator.make_url(""), redis_url=redis_server.url)
    settings = replace(settings, upstream=replace(settings.upstream, max_attempts=1))
    proxy = await make_proxy(settings=settings)
    first = await proxy.get(f"/orders/{ORDER}")
    assert first.status == 200
    assert first.headers["X-Cache"] == "MISS"
    assert (await proxy.get(f"/orders/{ORDER}")).headers["X-Cache"] == "HIT"

    key = proxy.app[ORDER_SERVICE].key(OrderQuery(MERCHANT, ORDER, "2023-06-30"))
    changing = settings.cache.policy.changing_ttl
    # Kept for the changing TTL, not a day, and not beyond it for stale-if-error.
    assert 0 < await redis_client.ttl(key) <= changing
    raw = await redis_client.get(key)
    assert raw is not None
    entry = EntryCodec().decode(raw, key)
    assert isinstance(entry, CachedEntry)
    assert entry.status_class == "offer_pending"

    # Even an expired copy that is still in Redis is not served when Juspay fails.
    now = time.time()
    expired = msgspec.structs.replace(entry, fetched_at=now - 100, fresh_until=now - 10)
    await redis_client.set(key, EntryCodec().encode(expired), ex=600)
    other_replica = await make_proxy(settings=settings)
    simulator_state.add_fault(Fault(kind="status", status=500))
    answer = await other_replica.get(f"/orders/{ORDER}")
    assert answer.status == 502
    assert answer.headers.get("X-Cache") != "STALE"
