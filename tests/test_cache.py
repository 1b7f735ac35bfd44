"""The cache stores: bounds of the in-process store, round trips through the real Redis."""

from __future__ import annotations

import time

import redis.asyncio as aioredis

from proxy.cache import OrderCache
from proxy.metrics import Metrics
from proxy.models import CachedEntry, Decoders
from proxy.stores import MemoryStore, RedisStore, entry_key, order_base


def entry(body: bytes = b"{}") -> CachedEntry:
    return CachedEntry(200, body, "application/json", '"e"', 1.0, 2.0, "CHARGED", "final")


def test_key_holds_merchant_version_option_and_order() -> None:
    key = entry_key("op", "m1", "O1", "2023-06-30", True)
    assert key == "op:v1:{m1:O1}:2023-06-30:1"
    assert entry_key("op", "m2", "O1", "2023-06-30", True) != key
    assert entry_key("op", "m1", "O1", "2021-01-01", True) != key
    assert entry_key("op", "m1", "O1", "2023-06-30", False) != key


def test_memory_store_is_bounded_by_entries_lru_first() -> None:
    store = MemoryStore(max_entries=2, max_bytes=10**6)
    store.set_now("a", entry(), 60)
    store.set_now("b", entry(), 60)
    assert store.get_now("a") is not None  # a is now the most recent
    store.set_now("c", entry(), 60)
    assert store.get_now("b") is None
    assert store.get_now("a") is not None
    assert len(store) == 2


def test_memory_store_is_bounded_by_bytes() -> None:
    store = MemoryStore(max_entries=1000, max_bytes=10_000)
    for i in range(50):
        store.set_now(f"k{i}", entry(b"x" * 1000), 60)
    assert store.bytes <= 10_000
    assert len(store) < 50
    store.set_now("huge", entry(b"x" * 20_000), 60)
    assert store.get_now("huge") is None


def test_memory_store_entries_expire() -> None:
    now = [100.0]
    store = MemoryStore(max_entries=10, max_bytes=10**6, clock=lambda: now[0])
    store.set_now("a", entry(), 5)
    assert store.get_now("a") is not None
    now[0] = 105.0
    assert store.get_now("a") is None
    assert store.bytes == 0


async def test_redis_store_round_trip_with_ttl(redis_client: aioredis.Redis) -> None:
    store = RedisStore(redis_client, Decoders(), timeout=1.0)
    original = entry(b'{"order_id": "R1"}')
    key = entry_key("test-cache", "m1", "R1", "2023-06-30", False)
    await store.set(key, original, 30)
    assert await store.get(key) == original
    assert 0 < await redis_client.ttl(key) <= 30
    assert await store.delete([key]) == 1
    assert await store.get(key) is None


async def test_redis_store_drops_every_variant_of_an_order(redis_client: aioredis.Redis) -> None:
    store = RedisStore(redis_client, Decoders(), timeout=1.0)
    keys = [
        entry_key("test-cache", "m1", "R2", version, full)
        for version in ("2023-06-30", "2021-01-01")
        for full in (False, True)
    ]
    other = entry_key("test-cache", "m2", "R2", "2023-06-30", False)
    for key in [*keys, other]:
        await store.set(key, entry(), 60)
    assert await store.delete_order(order_base("test-cache", "m1", "R2")) == 4
    for key in keys:
        assert await store.get(key) is None
    assert await store.get(other) is not None  # another merchant's entry is untouched


async def test_webhook_marks_only_move_forward(redis_client: aioredis.Redis) -> None:
    memory = MemoryStore(max_entries=10, max_bytes=10**6)
    redis = RedisStore(redis_client, Decoders(), timeout=1.0)
    for store in (memory, redis):
        base = order_base("test-cache", "m1", f"MARK-{store.layer}")
        assert await store.advance_mark(base, 100.0, 60) is True
        assert await store.advance_mark(base, 99.0, 60) is False
        assert await store.advance_mark(base, 100.0, 60) is False
        assert await store.advance_mark(base, 101.5, 60) is True


def test_memory_store_drops_every_variant_of_an_order() -> None:
    store = MemoryStore(max_entries=100, max_bytes=10**6)
    keys = [entry_key("p", "m1", "O1", v, False) for v in ("2023-06-30", "2021-01-01")]
    kept = entry_key("p", "m1", "O10", "2023-06-30", False)
    for key in [*keys, kept]:
        store.set_now(key, entry(), 60)
    assert store.delete_order_now(order_base("p", "m1", "O1")) == 2
    assert store.get_now(kept) is not None


async def test_redis_store_ignores_undecodable_entries(redis_client: aioredis.Redis) -> None:
    await redis_client.set("test-cache:junk", b"\xc1not msgpack", ex=30)
    assert await RedisStore(redis_client, Decoders(), timeout=1.0).get("test-cache:junk") is None


def _fresh(now: float, fresh_for: float) -> CachedEntry:
    return CachedEntry(
        200, b"{}", "application/json", '"e"', now, now + fresh_for, "CHARGED", "final"
    )


async def test_front_layer_never_outlives_the_entrys_freshness(
    redis_client: aioredis.Redis,
) -> None:
    now = [1000.0]
    clock = lambda: now[0]  # noqa: E731
    front = MemoryStore(max_entries=10, max_bytes=10**6, clock=clock)
    cache = OrderCache(
        RedisStore(redis_client, Decoders(), timeout=1.0),
        Metrics(),
        front=front,
        front_ttl=60,
        clock=clock,
    )
    key = entry_key("test-front", "m1", "F1", "2023-06-30", False)
    await cache.save(key, _fresh(now[0], 5), 3600, "final")
    assert cache.peek(key) is not None
    now[0] += 5  # fresh for 5 s: the front copy must be gone, though Redis keeps it longer
    assert cache.peek(key) is None


async def test_front_layer_is_emptied_and_bypassed_while_invalidations_cannot_arrive(
    redis_client: aioredis.Redis,
) -> None:
    allowed = [True]
    front = MemoryStore(max_entries=10, max_bytes=10**6)
    cache = OrderCache(
        RedisStore(redis_client, Decoders(), timeout=1.0),
        Metrics(),
        front=front,
        front_allowed=lambda: allowed[0],
    )
    key = entry_key("test-front", "m1", "F2", "2023-06-30", False)
    await cache.save(key, _fresh(time.time(), 600), 600, "final")
    assert cache.peek(key) is not None
    allowed[0] = False  # the event bus lost its subscription
    assert cache.peek(key) is None
    assert len(front) == 0
    lookup = await cache.lookup(key)  # still served, from Redis
    assert lookup.entry is not None
    assert len(front) == 0  # and not copied into a front layer that could go stale


async def test_invalidation_drops_the_front_copy_of_every_variant(
    redis_client: aioredis.Redis,
) -> None:
    front = MemoryStore(max_entries=10, max_bytes=10**6)
    cache = OrderCache(RedisStore(redis_client, Decoders(), timeout=1.0), Metrics(), front=front)
    keys = [entry_key("test-front", "m1", "F3", v, False) for v in ("2023-06-30", "2021-01-01")]
    for key in keys:
        await cache.save(key, _fresh(time.time(), 600), 600, "final")
    cache.invalidate(order_base("test-front", "m1", "F3"))
    assert all(cache.peek(key) is None for key in keys)
