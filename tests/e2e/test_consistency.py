"""The Consistency contract, race by race, against real Redis and a real simulator server.

Each test holds one upstream read in flight on purpose (the simulator delays it), then
invalidates or changes the order while it is held, and checks what is stored and served.
Races across processes (two proxies, a cut Redis link) are in test_consistency_replicas.py.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import pytest
import redis.asyncio as aioredis
import structlog
from aiohttp.test_utils import TestServer

from proxy.appkeys import BUS, ORDER_SERVICE
from proxy.cache import keys
from proxy.cache.bus import INVALIDATED
from proxy.cache.entries import CachedEntry, EntryCodec, etag_for
from proxy.core.orders import OrderQuery
from proxy.devtools.simulator import Fault, SimulatorState
from tests.conftest import MERCHANT, ProxyFactory
from tests.support.consistency import (
    HOOK,
    OPS,
    REFUND_SETTLED,
    consistent,
    hold_read,
    refunds,
    webhook,
)
from tests.support.epochs import redis_epoch
from tests.support.metrics import metric
from tests.support.processes import RedisProcess


@pytest.mark.parametrize("layer", ["redis", "memory"])
@pytest.mark.parametrize("invalidation", ["purge", "webhook"])
async def test_a_read_in_flight_during_an_invalidation_never_stores_its_older_answer(
    make_proxy: ProxyFactory,
    *,
    simulator: TestServer,
    simulator_state: SimulatorState,
    redis_server: RedisProcess,
    layer: str,
    invalidation: str,
) -> None:
    proxy = await make_proxy(
        settings=consistent(simulator, redis_server.url if layer == "redis" else None)
    )
    simulator_state.put_order(MERCHANT, "RACE1", "CHARGED")
    await hold_read(simulator_state, "RACE1", 0.5)
    slow = asyncio.ensure_future(proxy.get("/orders/RACE1", headers=OPS))
    assert await simulator_state.until_in_flight(1, within=5)
    # Juspay refunds the order while the read is held; the proxy hears of it and says 200.
    simulator_state.put_order(MERCHANT, "RACE1", "CHARGED", [REFUND_SETTLED])
    if invalidation == "purge":
        done = await proxy.delete("/cache/orders/RACE1", headers=OPS)
    else:
        done = await proxy.post("/webhooks/juspay", data=webhook(simulator_state, "RACE1"),
                                headers=HOOK)  # fmt: skip
    assert done.status == 200
    assert await refunds(await slow) == []  # the held read answers what it saw: allowed
    await proxy.app[ORDER_SERVICE].background.join()
    after = await proxy.get("/orders/RACE1", headers=OPS)
    assert await refunds(after) == ["SUCCESS"]  # never the held read's body, stored late
    assert metric(proxy, "order_proxy_cache_fenced_saves_total") == 1


async def test_no_cache_is_answered_by_a_read_that_started_after_it_arrived(
    make_proxy: ProxyFactory,
    simulator: TestServer,
    simulator_state: SimulatorState,
    redis_server: RedisProcess,
) -> None:
    proxy = await make_proxy(settings=consistent(simulator, redis_server.url))
    simulator_state.put_order(MERCHANT, "NOCACHE1", "CHARGED")
    await hold_read(simulator_state, "NOCACHE1", 0.5)
    earlier = asyncio.ensure_future(proxy.get("/orders/NOCACHE1", headers=OPS))
    assert await simulator_state.until_in_flight(1, within=5)
    simulator_state.put_order(MERCHANT, "NOCACHE1", "CHARGED", [REFUND_SETTLED])
    now = await proxy.get("/orders/NOCACHE1", headers={**OPS, "Cache-Control": "no-cache"})
    assert now.headers["X-Cache"] == "BYPASS"
    assert await refunds(now) == ["SUCCESS"]  # its own read, not the one already in flight
    assert await refunds(await earlier) == []
    assert simulator_state.calls["NOCACHE1"] == 2
    # The earlier read's older answer was not stored over the newer one.
    assert await refunds(await proxy.get("/orders/NOCACHE1", headers=OPS)) == ["SUCCESS"]


async def test_no_cache_requests_arriving_together_share_one_fresh_read(
    make_proxy: ProxyFactory,
    simulator: TestServer,
    simulator_state: SimulatorState,
    redis_server: RedisProcess,
) -> None:
    proxy = await make_proxy(settings=consistent(simulator, redis_server.url))
    simulator_state.put_order(MERCHANT, "NOCACHE2", "CHARGED")
    await hold_read(simulator_state, "NOCACHE2", 0.3)
    headers = {**OPS, "Cache-Control": "no-cache"}
    first = asyncio.ensure_future(proxy.get("/orders/NOCACHE2", headers=headers))
    assert await simulator_state.until_in_flight(1, within=5)
    # A second no-cache request arriving now may not share the read already under way ...
    second = await proxy.get("/orders/NOCACHE2", headers=headers)
    assert (await first).status == second.status == 200
    assert simulator_state.calls["NOCACHE2"] == 2


async def test_a_fresh_read_that_finds_a_change_replaces_what_every_variant_cached(
    make_proxy: ProxyFactory,
    simulator: TestServer,
    simulator_state: SimulatorState,
    redis_server: RedisProcess,
) -> None:
    proxy = await make_proxy(settings=consistent(simulator, redis_server.url))
    simulator_state.put_order(MERCHANT, "CHANGE1", "CHARGED")
    old_version = {**OPS, "version": "2021-01-01"}
    for headers in (OPS, old_version):
        assert (await proxy.get("/orders/CHANGE1", headers=headers)).headers["X-Cache"] == "MISS"
    simulator_state.put_order(MERCHANT, "CHANGE1", "CHARGED", [REFUND_SETTLED])
    fresh = await proxy.get("/orders/CHANGE1", headers={**OPS, "Cache-Control": "no-cache"})
    assert await refunds(fresh) == ["SUCCESS"]
    other = await proxy.get("/orders/CHANGE1", headers=old_version)
    assert other.headers["X-Cache"] == "MISS"  # the other variant was dropped too
    assert await refunds(other) == ["SUCCESS"]
    assert metric(proxy, "order_proxy_cache_invalidations_total", source="refresh") == 1


async def test_webhooks_are_refused_with_503_while_redis_cannot_confirm_them(
    make_proxy: ProxyFactory,
    simulator: TestServer,
    simulator_state: SimulatorState,
    own_redis: RedisProcess,
) -> None:
    proxy = await make_proxy(settings=consistent(simulator, own_redis.url))
    simulator_state.put_order(MERCHANT, "PAUSED1", "CHARGED")
    assert (await proxy.get("/orders/PAUSED1", headers=OPS)).headers["X-Cache"] == "MISS"
    admin = aioredis.Redis.from_url(own_redis.url)
    try:
        # WRITE: every script that may write waits (as with a failover); UNPAUSE still runs.
        await admin.execute_command("CLIENT", "PAUSE", 10_000, "WRITE")
        hook = await proxy.post(
            "/webhooks/juspay", data=webhook(simulator_state, "PAUSED1"), headers=HOOK
        )
        purge = await proxy.delete("/cache/orders/PAUSED1", headers=OPS)
        await admin.execute_command("CLIENT", "UNPAUSE")
    finally:
        await admin.aclose()
    # Juspay retries anything but a 200: the event is not lost.
    assert hook.status == 503
    assert hook.headers["Retry-After"] == "5"
    assert (await hook.json())["error_code"] == "cache_unavailable"
    assert purge.status == 503
    assert metric(proxy, "order_proxy_webhook_events_total", event="order_refunded",
                  result="unavailable") == 1  # fmt: skip
    retried = await proxy.post(
        "/webhooks/juspay", data=webhook(simulator_state, "PAUSED1"), headers=HOOK
    )
    assert retried.status == 200


async def _raw_webhook(server: TestServer, head: bytes, parts: list[bytes]) -> tuple[int, bytes]:
    """Send a webhook request in separate TCP writes, with a loop turn between them."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(head)
        for part in parts:
            await writer.drain()
            await asyncio.sleep(0.05)  # let the proxy read what has arrived so far
            writer.write(part)
        await writer.drain()
        data = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


@pytest.mark.parametrize("framing", ["segments", "chunked"])
async def test_a_webhook_body_that_arrives_in_pieces_is_read_whole(
    make_proxy: ProxyFactory,
    simulator: TestServer,
    simulator_state: SimulatorState,
    redis_server: RedisProcess,
    framing: str,
) -> None:
    proxy = await make_proxy(settings=consistent(simulator, redis_server.url))
    simulator_state.put_order(MERCHANT, "PIECES1", "CHARGED")
    body = webhook(simulator_state, "PIECES1")
    assert len(body) > 4000  # real webhook bodies are several KB
    halves = [body[: len(body) // 2], body[len(body) // 2 :]]
    head = (
        f"POST /webhooks/juspay HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        f"Authorization: {HOOK['Authorization']}\r\nContent-Type: application/json\r\n"
    ).encode()
    if framing == "segments":
        head += f"Content-Length: {len(body)}\r\n\r\n".encode()
        parts = halves
    else:
        head += b"Transfer-Encoding: chunked\r\n\r\n"
        parts = [b"%x\r\n%s\r\n" % (len(half), half) for half in halves] + [b"0\r\n\r\n"]
    assert proxy.server is not None
    status, answer = await _raw_webhook(proxy.server, head, parts)
    assert status == 200, answer
    assert json.loads(answer)["result"] == "invalidated"


async def test_deeply_nested_json_is_a_400_from_a_webhook_and_a_502_from_juspay(
    make_proxy: ProxyFactory,
    simulator: TestServer,
    simulator_state: SimulatorState,
    redis_server: RedisProcess,
) -> None:
    proxy = await make_proxy(settings=consistent(simulator, redis_server.url))
    depth = 100_000
    hostile = b'{"event_name": "ORDER_SUCCEEDED", "x": ' + b"[" * depth + b"]" * depth + b"}"
    hook = await proxy.post("/webhooks/juspay", data=hostile, headers=HOOK)
    assert hook.status == 400
    simulator_state.put_order(MERCHANT, "DEEP1", "CHARGED")
    simulator_state.add_fault(Fault(kind="deep_json", order_id="DEEP1"))
    read = await proxy.get("/orders/DEEP1", headers=OPS)
    assert read.status == 502
    assert (await read.json())["error_code"] == "upstream_bad_body"
    batch = await proxy.post(
        "/orders:batchGet",
        data=b'{"order_ids": ' + b"[" * depth + b"]" * depth + b"}",
        headers=OPS,
    )
    assert batch.status == 400


async def test_an_entry_moved_onto_another_orders_key_is_a_miss_and_is_overwritten(
    make_proxy: ProxyFactory,
    simulator: TestServer,
    simulator_state: SimulatorState,
    redis_server: RedisProcess,
    redis_client: aioredis.Redis,
) -> None:
    proxy = await make_proxy(settings=consistent(simulator, redis_server.url,
                                                 memory_layer_ttl_seconds=0.0))  # fmt: skip
    simulator_state.put_order(MERCHANT, "MOVED-A", "CHARGED", [REFUND_SETTLED])
    simulator_state.put_order(MERCHANT, "MOVED-B", "CHARGED")
    service = proxy.app[ORDER_SERVICE]
    key_a, key_b = (
        service.key(OrderQuery(MERCHANT, o, "2023-06-30")) for o in ("MOVED-A", "MOVED-B")
    )
    for order_id in ("MOVED-A", "MOVED-B"):
        assert (await proxy.get(f"/orders/{order_id}", headers=OPS)).headers["X-Cache"] == "MISS"
    await redis_client.set(key_b, await redis_client.get(key_a))  # A's entry under B's key
    moved = await proxy.get("/orders/MOVED-B", headers=OPS)
    assert moved.headers["X-Cache"] == "MISS"
    assert (await moved.json())["order_id"] == "MOVED-B"
    assert metric(proxy, "order_proxy_cache_rejected_entries_total", reason="foreign_key") == 1
    again = await proxy.get("/orders/MOVED-B", headers=OPS)
    assert again.headers["X-Cache"] == "HIT"  # overwritten with B's own answer
    assert (await again.json())["order_id"] == "MOVED-B"


async def test_a_stored_body_that_is_not_json_never_breaks_a_batch_answer(
    make_proxy: ProxyFactory,
    simulator: TestServer,
    simulator_state: SimulatorState,
    redis_server: RedisProcess,
    redis_client: aioredis.Redis,
) -> None:
    proxy = await make_proxy(settings=consistent(simulator, redis_server.url,
                                                 memory_layer_ttl_seconds=0.0))  # fmt: skip
    simulator_state.put_order(MERCHANT, "ODD-1", "CHARGED")
    service = proxy.app[ORDER_SERVICE]
    key = service.key(OrderQuery(MERCHANT, "ODD-1", "2023-06-30"))
    base = keys.base_of(key)
    # Written with a valid key, checksum and generation: only its body is wrong.
    body = b"<html>not json</html>"
    await redis_client.set(keys.gen_key(base), b"g-odd")
    entry = CachedEntry(key=key, status_code=200, body=body, content_type="application/json",
                        etag=etag_for(body), fetched_at=1.0, fresh_until=4e9,
                        order_status="CHARGED", status_class="final",
                        generation="g-odd",
                        epoch=await redis_epoch(redis_client))  # fmt: skip
    await redis_client.set(key, EntryCodec().encode(entry))
    resp = await proxy.post(
        "/orders:batchGet", json={"order_ids": ["ODD-1", "JP1636474794"]}, headers=OPS
    )
    assert resp.status == 200
    items = (await resp.json())["orders"]  # the whole answer is still JSON
    assert items[0]["body"] == body.decode()
    assert items[1]["body"]["order_id"] == "JP1636474794"


async def test_followers_of_a_failed_leader_do_not_all_call_juspay(
    make_proxy: ProxyFactory,
    simulator: TestServer,
    simulator_state: SimulatorState,
    redis_server: RedisProcess,
) -> None:
    settings = consistent(simulator, redis_server.url)
    settings = replace(settings, upstream=replace(settings.upstream, max_attempts=1))
    replicas = [await make_proxy(settings=settings) for _ in range(3)]
    simulator_state.put_order(MERCHANT, "LEAD1", "PENDING_VBV")
    # The leader's read fails after a while (Juspay's 504), the next one succeeds.
    simulator_state.add_fault(Fault(kind="timeout", delay=0.5, order_id="LEAD1", remaining=1))
    leader = asyncio.ensure_future(replicas[0].get("/orders/LEAD1", headers=OPS))
    assert await simulator_state.until_in_flight(1, within=5)
    followers = [asyncio.ensure_future(r.get("/orders/LEAD1", headers=OPS)) for r in replicas[1:]]
    assert (await leader).status == 502
    answers = await asyncio.gather(*followers)
    assert [a.status for a in answers] == [200, 200]
    assert simulator_state.calls["LEAD1"] == 2  # the failed lead, then one new leader


@pytest.mark.parametrize("changed", [False, True], ids=["match", "diverged"])
async def test_a_sample_of_hits_is_verified_against_juspay(
    make_proxy: ProxyFactory,
    simulator: TestServer,
    simulator_state: SimulatorState,
    redis_server: RedisProcess,
    changed: bool,
) -> None:
    proxy = await make_proxy(settings=consistent(simulator, redis_server.url,
                                                 verify_sample_rate=1.0))  # fmt: skip
    simulator_state.put_order(MERCHANT, "VERIFY1", "CHARGED")
    await proxy.get("/orders/VERIFY1", headers=OPS)
    if changed:  # refunded at Juspay, and no webhook (yet)
        simulator_state.put_order(MERCHANT, "VERIFY1", "CHARGED", [REFUND_SETTLED])
    with structlog.testing.capture_logs() as logs:
        hit = await proxy.get("/orders/VERIFY1", headers=OPS)
        assert hit.headers["X-Cache"] == "HIT"
        await proxy.app[ORDER_SERVICE].background.join()
    result = "diverged" if changed else "match"
    assert metric(proxy, "order_proxy_cache_verifications_total", result=result) == 1
    diverged = [line for line in logs if line["event"] == "cache_diverged"]
    if changed:
        assert diverged == [
            {**diverged[0], "order_id": "VERIFY1", "cached_refunds": [],
             "juspay_refunds": ["SUCCESS"], "log_level": "warning"}
        ]  # fmt: skip
        # The verification read replaced the stale entry.
        assert await refunds(await proxy.get("/orders/VERIFY1", headers=OPS)) == ["SUCCESS"]
    else:
        assert diverged == []


async def test_a_no_cache_read_that_finds_a_change_drops_every_variant_on_every_replica(
    make_proxy: ProxyFactory,
    simulator: TestServer,
    simulator_state: SimulatorState,
    redis_server: RedisProcess,
) -> None:
    settings = consistent(simulator, redis_server.url)
    a, b = await make_proxy(settings=settings), await make_proxy(settings=settings)
    simulator_state.put_order(MERCHANT, "VARIANTS-1", "CHARGED")
    old = {**OPS, "version": "2023-06-30"}
    assert (await a.get("/orders/VARIANTS-1", headers=old)).headers["X-Cache"] == "MISS"
    for replica in (a, b):
        await replica.get("/orders/VARIANTS-1", headers=old)
        assert (await replica.get("/orders/VARIANTS-1", headers=old)).headers["X-Cache"] == "HIT"
    simulator_state.put_order(MERCHANT, "VARIANTS-1", "CHARGED", [REFUND_SETTLED])
    heard = asyncio.Event()
    b.app[BUS].listen(INVALIDATED, lambda base: heard.set())
    # Another version, never cached: its fresh read still shows the order has changed.
    newer = {**OPS, "version": "2024-01-01", "Cache-Control": "no-cache"}
    fresh_read = await a.get("/orders/VARIANTS-1", headers=newer)
    assert fresh_read.headers["X-Cache"] == "BYPASS"
    assert await refunds(fresh_read) == ["SUCCESS"]
    await asyncio.wait_for(heard.wait(), 5)
    for replica in (a, b):
        assert await refunds(await replica.get("/orders/VARIANTS-1", headers=old)) == ["SUCCESS"]


async def test_a_hit_from_redis_is_one_round_trip_of_one_command(
    make_proxy: ProxyFactory, simulator: TestServer, redis_server: RedisProcess
) -> None:
    proxy = await make_proxy(settings=consistent(simulator, redis_server.url,
                                                 memory_layer_ttl_seconds=0.0))  # fmt: skip
    assert (await proxy.get("/orders/JP1636474794", headers=OPS)).headers["X-Cache"] == "MISS"
    for _ in range(3):
        trips = metric(proxy, "order_proxy_redis_round_trips_total")
        commands = metric(proxy, "order_proxy_redis_commands_total")
        hit = await proxy.get("/orders/JP1636474794", headers=OPS)
        assert hit.headers["X-Cache"] == "HIT"
        assert metric(proxy, "order_proxy_redis_round_trips_total") - trips == 1
        assert metric(proxy, "order_proxy_redis_commands_total") - commands == 1
