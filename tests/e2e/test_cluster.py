"""The proxy on a real three-master Redis Cluster (`REDIS_URL=redis+cluster://…`).

Proxies and the simulator run as real processes; the cluster is three redis-server masters
joined by `redis-cli --cluster create`, no replicas, `cluster-require-full-coverage no`.
Each order's keys share the hash tag `{merchant:order}`, so they live on the one master that
owns that slot; the orders used here are chosen so that every master owns some.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio.cluster import RedisCluster
from redis.cluster import key_slot

from proxy.cache.keys import FORMAT
from tests.support.cluster import RedisCluster3
from tests.support.processes import ServiceProcess, proxy_process
from tests.support.simctl import control, get

pytestmark = pytest.mark.slow

MERCHANT, KEY = "demo_merchant", "demo_api_key"
PREFIX = "order-proxy"  # the default redis.key_prefix
EVENTS = f"{PREFIX}:events"  # the one pub/sub channel between replicas
# The published samples the simulator seeds (all CHARGED, so cached as final).
SEEDED = ["JP1636474794", "JPAYNEW032", "145678234", "XXXX1234", "234823498237423894273498"]
OPERATOR_KEY = "opk_cluster_operator_0123456789abcdef"
# JUSPAY_TIMEOUT_SECONDS below is 3, so a follower waits at most 4 s (the lock) for the
# leader's "answer ready" event; an answer well under that came through pub/sub.
UPSTREAM_TIMEOUT = 3
PROMPT = 2.0
# No request may go unanswered: past this, it counts as hung (and fails the test).
HUNG = 10.0


def tag(order_id: str) -> str:
    return f"{{{MERCHANT}:{order_id}}}"


def owner_of(table: list[int], order_id: str) -> int:
    return table[key_slot(tag(order_id).encode())]


def one_order_per_master(table: list[int], stem: str) -> dict[int, str]:
    """Order ids `stem-N`, the first whose hash tag lands on each master."""
    chosen: dict[int, str] = {}
    n = 0
    while len(chosen) < 3:
        order_id = f"{stem}-{n}"
        chosen.setdefault(owner_of(table, order_id), order_id)
        n += 1
    return chosen


# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_cluster() -> Iterator[RedisCluster3]:
    with RedisCluster3() as cluster:
        yield cluster


@pytest.fixture
async def cluster(shared_cluster: RedisCluster3) -> RedisCluster3:
    """The module's cluster, emptied first so every test starts with no cached entries."""
    client = RedisCluster(host="127.0.0.1", port=shared_cluster.ports[0])
    try:
        await client.flushall(target_nodes=RedisCluster.PRIMARIES)
    finally:
        await client.aclose()
    return shared_cluster


@pytest.fixture
def own_cluster() -> Iterator[RedisCluster3]:
    """A cluster of its own, for a test that kills a master."""
    with RedisCluster3() as cluster:
        yield cluster


@pytest.fixture
def operator_config(tmp_path: Path) -> Path:
    """A config file with one operator client (all merchants) holding OPERATOR_KEY."""
    config = tmp_path / "proxy.toml"
    digest = hashlib.sha256(OPERATOR_KEY.encode()).hexdigest()
    config.write_text(
        f'[[clients]]\nname = "ops"\nkey_sha256 = "{digest}"\nmerchants = ["*"]\noperator = true\n'
    )
    return config


# --- helpers -----------------------------------------------------------------------------


def proxy_env(sim: ServiceProcess, cluster: RedisCluster3, **extra: str) -> dict[str, str]:
    return {
        "JUSPAY_BASE_URL": sim.url,
        "JUSPAY_MERCHANT_ID": MERCHANT,
        "JUSPAY_API_KEY": KEY,
        "REDIS_URL": cluster.url,
        "JUSPAY_TIMEOUT_SECONDS": str(UPSTREAM_TIMEOUT),
        **extra,
    }


async def timed_get(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> tuple[int, str | None, float]:
    """(status, order status, seconds taken)."""
    started = time.monotonic()
    status, _, order_status = await get(http, url, headers)
    return status, order_status, time.monotonic() - started


async def keys_by_node(client: RedisCluster, order_id: str) -> dict[int, set[bytes]]:
    """This order's keys, per master port (only masters that hold some)."""
    pattern = f"{PREFIX}:{FORMAT}:{tag(order_id)}*"
    found: dict[int, set[bytes]] = {}
    await client.initialize()  # no-op once the client knows the topology
    primaries = client.get_primaries()
    assert len(primaries) == 3
    for node in primaries:
        keys = await client.keys(pattern, target_nodes=node)
        if keys:
            found[int(node.port)] = set(keys)
    return found


def cached_entries(keys: set[bytes]) -> set[bytes]:
    """Keys that hold the order's cache entries (and their index), not coalescing state or
    the order's generation (which an invalidation moves on rather than deletes)."""
    return {
        k for k in keys if not k.endswith((b":lock", b":answer", b":followers", b":gen", b":poll"))
    }


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


async def wait_subscribers(cluster: RedisCluster3, count: int, within: float = 10) -> None:
    await asyncio.to_thread(cluster.wait_subscribers, EVENTS, count, within)


# --- tests -------------------------------------------------------------------------------


async def test_miss_then_hit_on_every_master_and_each_orders_keys_live_on_one_node(
    cluster: RedisCluster3, sim: ServiceProcess, http: aiohttp.ClientSession
) -> None:
    table = cluster.slot_table()
    assert set(table) == {0, 1, 2}  # all 16384 slots served, by three masters
    extra = one_order_per_master(table, "CLU-HIT")
    for order_id in extra.values():
        await control(http, sim, "orders", order_id=order_id, status="CHARGED")
    orders = SEEDED + list(extra.values())
    owners = {order_id: owner_of(table, order_id) for order_id in orders}
    assert set(owners.values()) == {0, 1, 2}

    a = proxy_process(proxy_env(sim, cluster)).start()
    b = proxy_process(proxy_env(sim, cluster)).start()
    client = RedisCluster(host="127.0.0.1", port=cluster.ports[1])
    try:
        for order_id in orders:
            assert await get(http, f"{a.url}/orders/{order_id}") == (200, "MISS", "CHARGED")
            assert await get(http, f"{a.url}/orders/{order_id}") == (200, "HIT", "CHARGED")
            # b has never seen the order: its HIT comes from the cluster.
            assert await get(http, f"{b.url}/orders/{order_id}") == (200, "HIT", "CHARGED")
        stats = await control(http, sim, "stats")
        assert {o: stats["calls"].get(o) for o in orders} == dict.fromkeys(orders, 1)

        holders: set[int] = set()
        for order_id in orders:
            found = await keys_by_node(client, order_id)
            expected_port = cluster.ports[owners[order_id]]
            # Every key of the order (entry, variant index, ...) is on its slot's master.
            assert list(found) == [expected_port], (order_id, found)
            stem = f"{PREFIX}:{FORMAT}:{tag(order_id)}:".encode()
            assert all(key.startswith(stem) for key in found[expected_port])
            assert cached_entries(found[expected_port]), found
            holders.add(expected_port)
        assert holders == set(cluster.ports)
    finally:
        await client.aclose()
        a.stop()
        b.stop()


async def test_two_proxies_on_the_cluster_make_one_upstream_call_per_missed_key(
    cluster: RedisCluster3, sim: ServiceProcess, http: aiohttp.ClientSession
) -> None:
    table = cluster.slot_table()
    final = one_order_per_master(table, "CLU-DUO")
    pending = one_order_per_master(table, "CLU-DUO-PEND")
    for order_id in final.values():
        await control(http, sim, "orders", order_id=order_id, status="CHARGED")
    for order_id in pending.values():
        await control(http, sim, "orders", order_id=order_id, status="PENDING_VBV")
    orders = [*final.values(), *pending.values()]
    for order_id in orders:
        await control(http, sim, "faults", kind="latency", delay=0.5, order_id=order_id)

    a = proxy_process(proxy_env(sim, cluster)).start()
    b = proxy_process(proxy_env(sim, cluster)).start()
    try:
        # Both replicas listen for each other's "answer ready" events.
        await wait_subscribers(cluster, 2)
        for order_id in orders:
            urls = [f"{p.url}/orders/{order_id}" for p in (a, b) for _ in range(10)]
            results = await asyncio.gather(*(timed_get(http, u) for u in urls))
            expected = "CHARGED" if order_id in final.values() else "PENDING_VBV"
            assert Counter(r[:2] for r in results) == {(200, expected): 20}, results
            stats = await control(http, sim, "stats")
            assert stats["calls"][order_id] == 1, (order_id, stats)
            # The follower replica was woken by pub/sub, not by its lock wait running out.
            slowest = max(r[2] for r in results)
            assert slowest < PROMPT, (order_id, sorted(round(r[2], 2) for r in results))
    finally:
        a.stop()
        b.stop()


async def test_operator_purge_drops_the_entry_on_the_cluster(
    cluster: RedisCluster3,
    sim: ServiceProcess,
    http: aiohttp.ClientSession,
    operator_config: Path,
) -> None:
    table = cluster.slot_table()
    orders = one_order_per_master(table, "CLU-PURGE")
    for order_id in orders.values():
        await control(http, sim, "orders", order_id=order_id, status="CHARGED")

    env = proxy_env(sim, cluster, PROXY_CONFIG_FILE=str(operator_config))
    proxy = proxy_process(env).start()
    client = RedisCluster(host="127.0.0.1", port=cluster.ports[2])
    auth = basic(OPERATOR_KEY)
    try:
        for index, order_id in orders.items():
            url = f"{proxy.url}/orders/{order_id}"
            assert await get(http, url, auth) == (200, "MISS", "CHARGED")
            assert await get(http, url, auth) == (200, "HIT", "CHARGED")
            before = await keys_by_node(client, order_id)
            assert list(before) == [cluster.ports[index]]
            assert cached_entries(before[cluster.ports[index]])

            # The order changed at Juspay; the operator purges it.
            await control(http, sim, "orders", order_id=order_id, status="AUTO_REFUNDED")
            async with http.delete(f"{proxy.url}/cache/orders/{order_id}", headers=auth) as resp:
                assert resp.status == 200, await resp.text()
                body = await resp.json()
            assert body["status"] == "purged"
            assert body["order_id"] == order_id
            assert body["entries"] >= 1
            after = await keys_by_node(client, order_id)
            assert all(not cached_entries(keys) for keys in after.values()), after

            assert await get(http, url, auth) == (200, "MISS", "AUTO_REFUNDED")
            assert await get(http, url, auth) == (200, "HIT", "AUTO_REFUNDED")
        stats = await control(http, sim, "stats")
        calls = {o: stats["calls"].get(o) for o in orders.values()}
        assert calls == dict.fromkeys(orders.values(), 2)
    finally:
        await client.aclose()
        proxy.stop()


async def test_after_a_purge_no_replica_is_answered_with_the_pre_purge_shared_answer(
    cluster: RedisCluster3,
    sim: ServiceProcess,
    http: aiohttp.ClientSession,
    operator_config: Path,
) -> None:
    """A purge must not leave the last leader's shared answer for followers to serve."""
    order_id = "CLU-PURGE-SHARED"
    await control(http, sim, "orders", order_id=order_id, status="CHARGED")
    # Slow upstream: both replicas miss at once, one leads, the other follows.
    await control(http, sim, "faults", kind="latency", delay=0.5, order_id=order_id)
    env = proxy_env(sim, cluster, PROXY_CONFIG_FILE=str(operator_config))
    a = proxy_process(env).start()
    b = proxy_process(env).start()
    auth = basic(OPERATOR_KEY)
    urls = [f"{p.url}/orders/{order_id}" for p in (a, b) for _ in range(10)]
    try:
        await wait_subscribers(cluster, 2)
        results = await asyncio.gather(*(timed_get(http, u, auth) for u in urls))
        assert Counter(r[:2] for r in results) == {(200, "CHARGED"): 20}, results
        assert (await control(http, sim, "stats"))["calls"][order_id] == 1

        # The order changes at Juspay and the operator purges it, at once.
        await control(http, sim, "orders", order_id=order_id, status="AUTO_REFUNDED")
        async with http.delete(f"{a.url}/cache/orders/{order_id}", headers=auth) as resp:
            assert resp.status == 200, await resp.text()
        results = await asyncio.gather(*(timed_get(http, u, auth) for u in urls))
        assert Counter(r[:2] for r in results) == {(200, "AUTO_REFUNDED"): 20}, results
    finally:
        a.stop()
        b.stop()


async def test_one_master_killed_under_traffic_fails_open_and_survivors_still_hit(
    own_cluster: RedisCluster3, sim: ServiceProcess, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    cluster = own_cluster
    table = cluster.slot_table()
    extra = one_order_per_master(table, "CLU-KILL")
    for order_id in extra.values():
        await control(http, sim, "orders", order_id=order_id, status="CHARGED")
    orders = SEEDED + list(extra.values())
    # Not the master of the events channel: this test is about the cache failing open (the
    # event bus losing its master is the next test).
    victim = min({0, 1, 2} - {table[key_slot(EVENTS.encode())]})
    dead = [o for o in orders if owner_of(table, o) == victim]
    alive = [o for o in orders if owner_of(table, o) != victim]
    assert dead
    assert alive
    # No in-process front layer: every HIT below was read from the cluster.
    config = tmp_path / "proxy.toml"
    config.write_text("[cache]\nmemory_layer_ttl_seconds = 0\n")

    proxy = proxy_process(proxy_env(sim, cluster, PROXY_CONFIG_FILE=str(config))).start()
    try:
        for order_id in orders:
            url = f"{proxy.url}/orders/{order_id}"
            assert await get(http, url) == (200, "MISS", "CHARGED"), order_id
            assert await get(http, url) == (200, "HIT", "CHARGED"), order_id

        total, workers, kill_at = 200, 8, 100
        # (order, status, X-Cache, order status, seconds, sent after the kill)
        answers: list[tuple[str, int, str, str | None, float, bool]] = []
        ready: list[tuple[int, Any]] = []
        next_index = 0
        killed = False

        async def worker() -> None:
            nonlocal next_index, killed
            while next_index < total:
                index = next_index
                next_index += 1
                if index == kill_at:
                    # SIGKILL and reap take milliseconds; no other request starts meanwhile.
                    cluster.kill(victim)
                    killed = True
                after_kill = killed
                order_id = orders[index % len(orders)]
                started = time.monotonic()
                try:
                    async with asyncio.timeout(HUNG):
                        status, cache, order_status = await get(
                            http, f"{proxy.url}/orders/{order_id}"
                        )
                except TimeoutError:
                    status, cache, order_status = 0, f"no answer in {HUNG}s", None
                took = time.monotonic() - started
                answers.append((order_id, status, cache, order_status, took, after_kill))
                if index % 10 == 0:
                    try:
                        async with asyncio.timeout(HUNG), http.get(f"{proxy.url}/readyz") as resp:
                            ready.append((resp.status, await resp.json()))
                    except TimeoutError:
                        ready.append((0, {"status": f"no answer in {HUNG}s"}))

        await asyncio.gather(*(worker() for _ in range(workers)))

        assert not cluster.alive(victim)
        assert len(answers) == total
        assert sum(1 for a in answers if a[5]) == total - kill_at
        assert Counter((a[1], a[3]) for a in answers) == {(200, "CHARGED"): total}, Counter(
            (a[1], a[2]) for a in answers
        )
        assert [r[0] for r in ready] == [200] * len(ready), ready
        assert {r[1]["status"] for r in ready} == {"ready"}, ready
        # Under traffic, orders on the surviving masters kept being answered from the cache.
        survivors = Counter(a[2] for a in answers if a[5] and a[0] in alive)
        assert set(survivors) == {"HIT"}, survivors
        # Losing a master costs at most an upstream call, never a wait on the coalescing lock.
        slow = sorted((round(a[4], 2), a[0], a[2]) for a in answers if a[4] >= PROMPT)
        assert slow == [], slow

        async def check_after_kill() -> None:
            for order_id in alive:
                url = f"{proxy.url}/orders/{order_id}"
                assert await get(http, url) == (200, "HIT", "CHARGED"), order_id
            for order_id in dead:
                # Its slot has no master now: the cache fails open, Juspay answers.
                url = f"{proxy.url}/orders/{order_id}"
                assert await get(http, url) == (200, "MISS", "CHARGED"), order_id
            async with http.get(f"{proxy.url}/readyz") as resp:
                assert resp.status == 200, await resp.text()
                assert (await resp.json())["status"] == "ready"

        # At once (the dead master is only suspected), then once the survivors agree it failed.
        await check_after_kill()
        await asyncio.to_thread(cluster.wait_marked_failed, victim)
        await check_after_kill()

        stats = await control(http, sim, "stats")
        # Orders on surviving masters were never fetched again; the others went to Juspay
        # (once to warm, then at least for each of the two MISS checks above).
        assert {o: stats["calls"][o] for o in alive} == dict.fromkeys(alive, 1), stats
        assert all(stats["calls"][o] >= 3 for o in dead), stats
    finally:
        proxy.stop()


async def test_replicas_still_coalesce_after_the_events_channels_master_dies(
    own_cluster: RedisCluster3, sim: ServiceProcess, http: aiohttp.ClientSession
) -> None:
    """Classic pub/sub reaches every node, so losing the node the channel hashes to must not
    end cross-replica events: the bus resubscribes on a surviving master."""
    cluster = own_cluster
    table = cluster.slot_table()
    victim = table[key_slot(EVENTS.encode())]
    a = proxy_process(proxy_env(sim, cluster)).start()
    b = proxy_process(proxy_env(sim, cluster)).start()
    try:
        await wait_subscribers(cluster, 2)
        await asyncio.to_thread(cluster.kill, victim)
        await asyncio.to_thread(cluster.wait_marked_failed, victim)
        await wait_subscribers(cluster, 2, within=15)

        order_id = next(
            f"CLU-BUS-{n}" for n in range(1000) if owner_of(table, f"CLU-BUS-{n}") != victim
        )
        await control(http, sim, "orders", order_id=order_id, status="PENDING_VBV")
        await control(http, sim, "faults", kind="latency", delay=0.5, order_id=order_id)
        urls = [f"{p.url}/orders/{order_id}" for p in (a, b) for _ in range(10)]
        results = await asyncio.gather(*(timed_get(http, u) for u in urls))
        assert Counter(r[:2] for r in results) == {(200, "PENDING_VBV"): 20}, results
        stats = await control(http, sim, "stats")
        assert stats["calls"][order_id] == 1, stats
        assert max(r[2] for r in results) < PROMPT, sorted(round(r[2], 2) for r in results)
    finally:
        a.stop()
        b.stop()


async def test_a_purge_that_must_reach_a_replica_waits_on_the_orders_own_shard(
    cluster: RedisCluster3,
    sim: ServiceProcess,
    http: aiohttp.ClientSession,
    operator_config: Path,
) -> None:
    # This cluster has no replicas: asked to wait for one, each shard's WAIT (sent on the
    # connection that ran the invalidation) confirms none in time, so nothing is acknowledged.
    table = cluster.slot_table()
    orders = one_order_per_master(table, "CLU-WAIT")
    env = proxy_env(
        sim,
        cluster,
        PROXY_CONFIG_FILE=str(operator_config),
        REDIS_ACK_REPLICAS="1",
        REDIS_ACK_TIMEOUT_SECONDS="0.1",
    )
    proxy = proxy_process(env).start()
    auth = basic(OPERATOR_KEY)
    try:
        for order_id in orders.values():
            async with http.delete(f"{proxy.url}/cache/orders/{order_id}", headers=auth) as resp:
                assert resp.status == 503, await resp.text()
                assert (await resp.json())["error_code"] == "cache_unavailable"
    finally:
        proxy.stop()
