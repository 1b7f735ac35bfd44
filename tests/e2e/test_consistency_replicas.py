"""The Consistency contract across replicas: two `order-proxy serve` processes on one real
redis-server, the simulator as a process, and a TCP relay that can cut one replica's link.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from proxy.web.auth import hash_key
from tests.support.processes import RedisProcess, ServiceProcess, proxy_process
from tests.support.relay import Relay
from tests.support.simctl import control

pytestmark = pytest.mark.slow

MERCHANT, KEY = "demo_merchant", "demo_api_key"
OPS_KEY = "opk_replicas_consistency_0123456789abcdef"
OPS = {"Authorization": "Basic " + base64.b64encode(f"{OPS_KEY}:".encode()).decode()}
HOOK = {"Authorization": "Basic " + base64.b64encode(b"juspay:hook-secret").decode()}
SETTLED = [{"id": "rf1", "unique_request_id": "rf1", "status": "SUCCESS", "amount": 1}]
# What the contract allows a replica to keep serving an invalidated body, pub/sub outages
# included ("a couple of seconds").
FORGET_WITHIN = 2.5


@pytest.fixture
async def relay(redis_proc: RedisProcess) -> AsyncIterator[Relay]:
    async with Relay(redis_proc.port) as relay:
        yield relay


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "proxy.toml"
    path.write_text(
        f'[[clients]]\nname = "ops"\nkey_sha256 = "{hash_key(OPS_KEY)}"\n'
        'merchants = ["*"]\noperator = true\n'
    )
    return path


def start_proxy(sim: ServiceProcess, redis_url: str, config: Path) -> ServiceProcess:
    return proxy_process(
        {
            "JUSPAY_BASE_URL": sim.url,
            "JUSPAY_MERCHANT_ID": MERCHANT,
            "JUSPAY_API_KEY": KEY,
            "REDIS_URL": redis_url,
            "JUSPAY_TIMEOUT_SECONDS": "5",
            "JUSPAY_WEBHOOK_USERNAME": "juspay",
            "JUSPAY_WEBHOOK_PASSWORD": "hook-secret",
            "PROXY_CONFIG_FILE": str(config),
        }
    ).start()


@pytest.fixture
async def pair(
    sim: ServiceProcess, redis_proc: RedisProcess, relay: Relay, config: Path
) -> AsyncIterator[tuple[ServiceProcess, ServiceProcess]]:
    """Replica A talks to Redis directly, replica B through the relay."""
    a = start_proxy(sim, redis_proc.url, config)
    b = start_proxy(sim, relay.url(), config)
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


async def read(http: aiohttp.ClientSession, proxy: ServiceProcess, order_id: str,
               **headers: str) -> tuple[str, list[str]]:  # fmt: skip
    """(X-Cache, the statuses of the order's refunds) as this replica answers now."""
    async with http.get(f"{proxy.url}/orders/{order_id}", headers={**OPS, **headers}) as resp:
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        return resp.headers["X-Cache"], [r["status"] for r in body["refunds"]]


async def hook(http: aiohttp.ClientSession, proxy: ServiceProcess, order_id: str) -> int:
    body = {"id": "evt_r", "event_name": "ORDER_REFUNDED", "date_created": "2026-11-23T10:00:00Z",
            "content": {"order": {"order_id": order_id, "merchant_id": MERCHANT}}}  # fmt: skip
    async with http.post(f"{proxy.url}/webhooks/juspay", json=body, headers=HOOK) as resp:
        return resp.status


async def bus_state(http: aiohttp.ClientSession, proxy: ServiceProcess) -> str:
    async with http.get(f"{proxy.url}/readyz") as resp:
        return str((await resp.json())["cache"]["bus"])


async def until_bus(http: aiohttp.ClientSession, proxy: ServiceProcess, state: str,
                    within: float) -> float:  # fmt: skip
    """Seconds until the replica's /readyz reports its bus in `state` (it lives in another
    process, so it is asked, at a bounded rate, for a bounded time)."""
    started = time.monotonic()
    while await bus_state(http, proxy) != state:
        assert time.monotonic() - started < within, f"bus not {state} within {within}s"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def metric(http: aiohttp.ClientSession, proxy: ServiceProcess, name: str) -> float:
    async with http.get(f"{proxy.url}/metrics") as resp:
        for line in (await resp.text()).splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


async def test_a_slow_read_on_one_replica_never_stores_over_a_webhook_applied_on_the_other(
    pair: tuple[ServiceProcess, ServiceProcess], sim: ServiceProcess, http: aiohttp.ClientSession
) -> None:
    a, b = pair
    await until_bus(http, b, "up", within=10)
    await control(http, sim, "orders", order_id="XR-1", status="CHARGED")
    await control(http, sim, "faults", kind="latency", delay=1.0, order_id="XR-1", remaining=1)
    slow = asyncio.ensure_future(read(http, a, "XR-1"))
    assert (await control(http, sim, "wait_in_flight", count=1, timeout=5))["reached"]
    await control(http, sim, "orders", order_id="XR-1", status="CHARGED", refunds=SETTLED)
    assert await hook(http, b, "XR-1") == 200
    assert (await slow)[1] == []  # A's read answers what it saw when it began
    for replica in (a, b, a, b):
        assert (await read(http, replica, "XR-1"))[1] == ["SUCCESS"]
    assert await metric(http, a, "order_proxy_cache_fenced_saves_total") == 1


async def test_no_cache_on_one_replica_does_not_follow_an_older_read_on_the_other(
    pair: tuple[ServiceProcess, ServiceProcess], sim: ServiceProcess, http: aiohttp.ClientSession
) -> None:
    a, b = pair
    await control(http, sim, "orders", order_id="XR-2", status="CHARGED")
    await control(http, sim, "faults", kind="latency", delay=1.0, order_id="XR-2", remaining=1)
    slow = asyncio.ensure_future(read(http, a, "XR-2"))  # holds the Redis lock for XR-2
    assert (await control(http, sim, "wait_in_flight", count=1, timeout=5))["reached"]
    await control(http, sim, "orders", order_id="XR-2", status="CHARGED", refunds=SETTLED)
    assert await read(http, b, "XR-2", **{"Cache-Control": "no-cache"}) == ("BYPASS", ["SUCCESS"])
    assert (await slow)[1] == []
    assert (await read(http, a, "XR-2"))[1] == ["SUCCESS"]  # and the older answer was fenced


async def test_a_replica_that_missed_an_invalidation_forgets_its_memory_on_resubscribing(
    pair: tuple[ServiceProcess, ServiceProcess],
    sim: ServiceProcess,
    relay: Relay,
    http: aiohttp.ClientSession,
) -> None:
    a, b = pair
    await until_bus(http, b, "up", within=10)
    await control(http, sim, "orders", order_id="XR-3", status="CHARGED")
    assert await read(http, b, "XR-3") == ("MISS", [])
    assert await read(http, b, "XR-3") == ("HIT", [])  # now in B's memory layer
    relay.cut()  # B's link goes quiet, with no traffic to notice it ...
    await control(http, sim, "orders", order_id="XR-3", status="CHARGED", refunds=SETTLED)
    assert await hook(http, a, "XR-3") == 200
    relay.reset()  # ... and the invalidation B was sent is lost with the connection
    relay.restore()
    await until_bus(http, b, "up", within=10)  # B resubscribed: it may have missed things
    assert (await read(http, b, "XR-3"))[1] == ["SUCCESS"]


async def test_a_half_open_link_is_noticed_and_the_memory_layer_bypassed_within_the_bound(
    pair: tuple[ServiceProcess, ServiceProcess],
    sim: ServiceProcess,
    relay: Relay,
    http: aiohttp.ClientSession,
) -> None:
    a, b = pair
    await until_bus(http, b, "up", within=10)
    await control(http, sim, "orders", order_id="XR-4", status="CHARGED")
    await read(http, b, "XR-4")
    assert await read(http, b, "XR-4") == ("HIT", [])
    relay.cut()  # black hole: no RST, no FIN; TCP alone would not notice for minutes
    await control(http, sim, "orders", order_id="XR-4", status="CHARGED", refunds=SETTLED)
    assert await hook(http, a, "XR-4") == 200
    acked = time.monotonic()
    await until_bus(http, b, "down", within=FORGET_WITHIN + 1)
    assert time.monotonic() - acked <= FORGET_WITHIN
    # B cannot reach Redis either: it fails open to Juspay rather than serve its memory.
    assert (await read(http, b, "XR-4"))[1] == ["SUCCESS"]
    relay.restore()
    await until_bus(http, b, "up", within=10)
    assert (await read(http, b, "XR-4"))[1] == ["SUCCESS"]
    body = json.dumps({"order_ids": ["XR-4"]})
    async with http.post(f"{b.url}/orders:batchGet", data=body, headers=OPS) as resp:
        items = (await resp.json())["orders"]
    assert [r["status"] for r in items[0]["body"]["refunds"]] == ["SUCCESS"]
