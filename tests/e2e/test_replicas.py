"""Two proxies sharing one Redis: in-process layers stay correct across replicas."""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import replace

from aiohttp.test_utils import TestServer

from proxy.appkeys import BUS, CACHE_HEALTH, ORDER_SERVICE
from proxy.config.secrets import Secret
from proxy.config.settings import ClientSettings, Settings, WebhookSettings
from proxy.core.orders import OrderQuery
from proxy.devtools.simulator import SimulatorState
from proxy.web.auth import hash_key
from tests.conftest import MERCHANT, ProxyFactory, make_settings
from tests.support.processes import RedisProcess

ORDER = "JP1636474794"
OPS_KEY = "opk_replica_test_operator_0123456789"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{OPS_KEY}:".encode()).decode()}


def shared(simulator: TestServer, redis: RedisProcess, prefix: str) -> Settings:
    settings = make_settings(
        simulator.make_url(""),
        redis_url=redis.url,
        clients=(ClientSettings("ops", hash_key(OPS_KEY), ("*",), operator=True),),
        webhook=WebhookSettings("juspay", Secret("hook-pass", "test")),
    )
    return replace(settings, redis=replace(settings.redis, key_prefix=prefix))


async def _subscribed(proxy_app: object) -> None:
    bus = proxy_app[BUS]  # type: ignore[index]
    await asyncio.wait_for(bus.subscribed.wait(), timeout=5)


async def test_a_purge_on_one_replica_empties_the_other_replicas_memory_layer(
    make_proxy: ProxyFactory,
    simulator: TestServer,
    simulator_state: SimulatorState,
    redis_server: RedisProcess,
) -> None:
    a = await make_proxy(settings=shared(simulator, redis_server, "replicas-1"))
    b = await make_proxy(settings=shared(simulator, redis_server, "replicas-1"))
    await _subscribed(a.app)
    await _subscribed(b.app)
    assert (await a.get(f"/orders/{ORDER}", headers=AUTH)).headers["X-Cache"] == "MISS"
    assert (await b.get(f"/orders/{ORDER}", headers=AUTH)).headers["X-Cache"] == "HIT"  # Redis
    b_service = b.app[ORDER_SERVICE]
    key = b_service.key(OrderQuery(MERCHANT, ORDER, "2023-06-30"))
    assert b.app[CACHE_HEALTH].cache.peek(key) is not None  # now in b's memory layer too
    heard = b.app[BUS].waiter(b_service.base(MERCHANT, ORDER))

    purged = await a.delete(f"/cache/orders/{ORDER}", headers=AUTH)
    assert purged.status == 200
    assert await asyncio.wait_for(heard, timeout=5) == "invalidated"
    assert b.app[CACHE_HEALTH].cache.peek(key) is None
    after = await b.get(f"/orders/{ORDER}", headers=AUTH)
    assert after.headers["X-Cache"] == "MISS"
    assert simulator_state.calls[ORDER] == 2


async def test_a_webhook_on_one_replica_refreshes_what_the_other_serves(
    make_proxy: ProxyFactory,
    simulator: TestServer,
    simulator_state: SimulatorState,
    redis_server: RedisProcess,
) -> None:
    a = await make_proxy(settings=shared(simulator, redis_server, "replicas-2"))
    b = await make_proxy(settings=shared(simulator, redis_server, "replicas-2"))
    await _subscribed(a.app)
    await _subscribed(b.app)
    await b.get(f"/orders/{ORDER}", headers=AUTH)
    await b.get(f"/orders/{ORDER}", headers=AUTH)  # b holds the order in memory now
    b_service = b.app[ORDER_SERVICE]
    heard = b.app[BUS].waiter(b_service.base(MERCHANT, ORDER))
    refunded = simulator_state.put_order(
        MERCHANT, ORDER, "CHARGED", [{"id": "r9", "status": "PENDING", "amount": 1}]
    )
    hook = json.dumps(
        {
            "event_name": "ORDER_REFUNDED",
            "date_created": "2026-11-21T12:00:00Z",
            "content": {"order": refunded},
        }
    )
    hook_auth = {"Authorization": "Basic " + base64.b64encode(b"juspay:hook-pass").decode()}
    resp = await a.post("/webhooks/juspay", data=hook, headers=hook_auth)
    assert (await resp.json())["result"] == "invalidated"
    await asyncio.wait_for(heard, timeout=5)
    await a.app[ORDER_SERVICE].background.join()
    served = await (await b.get(f"/orders/{ORDER}", headers=AUTH)).json()
    assert served["refunds"][0]["status"] == "PENDING"
