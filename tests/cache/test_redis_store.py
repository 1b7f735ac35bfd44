"""The Redis store against a real redis-server: fenced saves, invalidation, entry checks."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest
import redis.asyncio as aioredis

from proxy.cache import keys
from proxy.cache.entries import EntryCodec, Rejected
from proxy.cache.keys import KeySchema
from proxy.cache.redis import RedisStore, Role, Saved
from tests.cache.conftest import make_entry


@pytest.fixture
async def store(redis_client: aioredis.Redis, schema: KeySchema) -> AsyncIterator[RedisStore]:
    rejected: list[Rejected] = []
    store = RedisStore(
        redis_client,
        channel=schema.channel,
        timeout=1.0,
        generation_ttl=300,
        on_rejected=rejected.append,
    )
    store.rejected = rejected  # type: ignore[attr-defined]
    yield store
    await store.close()


async def test_a_saved_entry_is_found_with_its_ttl(
    store: RedisStore, schema: KeySchema, redis_client: aioredis.Redis
) -> None:
    key = schema.entry("m1", "R1", "2023-06-30", False)
    generation, epoch, _ = await store.note(keys.base_of(key))
    entry = msgspec.structs.replace(make_entry(key), generation=generation, epoch=epoch)
    assert await store.save(key, entry, 30, generation) is Saved.STORED
    found, seen, seen_epoch = await store.lookup(key)
    assert found == entry
    assert seen == generation
    assert seen_epoch == epoch
    assert 0 < await redis_client.ttl(key) <= 30


async def test_a_save_whose_read_began_before_an_invalidation_is_fenced_out(
    store: RedisStore, schema: KeySchema, redis_client: aioredis.Redis
) -> None:
    key = schema.entry("m1", "R2", "2023-06-30", False)
    base = keys.base_of(key)
    noted, _, _ = await store.note(base)  # the read notes the generation, then calls Juspay ...
    await store.invalidate(base, b"x")  # ... a webhook is applied meanwhile ...
    entry = msgspec.structs.replace(make_entry(key), generation=noted)
    assert await store.save(key, entry, 60, noted) is Saved.FENCED  # ... and its save is refused
    assert await redis_client.exists(key) == 0


async def test_invalidation_drops_every_variant_and_tells_every_replica(
    store: RedisStore, schema: KeySchema, redis_client: aioredis.Redis
) -> None:
    variants = [
        schema.entry("m1", "R3", version, full)
        for version in ("2023-06-30", "2021-01-01")
        for full in (False, True)
    ]
    other = schema.entry("m2", "R3", "2023-06-30", False)
    for key in [*variants, other]:
        generation, epoch, _ = await store.note(keys.base_of(key))
        entry = msgspec.structs.replace(make_entry(key), generation=generation, epoch=epoch)
        assert await store.save(key, entry, 60, generation) is Saved.STORED
    pubsub = redis_client.pubsub()
    await pubsub.subscribe(schema.channel)
    assert (await pubsub.get_message(timeout=1))["type"] == "subscribe"  # type: ignore[index]
    assert await store.invalidate(schema.base("m1", "R3"), b"told") == 4
    message = await pubsub.get_message(timeout=1)
    assert message is not None
    assert message["data"] == b"told"
    await pubsub.aclose()  # type: ignore[no-untyped-call]
    for key in variants:
        assert (await store.lookup(key))[0] is None
    assert (await store.lookup(other))[0] is not None  # another merchant's order is untouched


async def test_an_entry_from_before_an_invalidation_is_not_served_even_without_its_index(
    store: RedisStore, schema: KeySchema, redis_client: aioredis.Redis
) -> None:
    key = schema.entry("m1", "R4", "2023-06-30", False)
    base = keys.base_of(key)
    generation, epoch, _ = await store.note(base)
    old = msgspec.structs.replace(make_entry(key), generation=generation, epoch=epoch)
    await store.save(key, old, 60, generation)
    await redis_client.delete(keys.variants_key(base))  # the index was evicted
    await store.invalidate(base, b"x")
    assert await redis_client.exists(key) == 1  # the invalidation could not find it ...
    assert (await store.lookup(key))[0] is None  # ... but it is never served


async def test_an_expired_generation_fences_out_the_reads_that_noted_it(
    store: RedisStore, schema: KeySchema, redis_client: aioredis.Redis
) -> None:
    key = schema.entry("m1", "R5", "2023-06-30", False)
    base = keys.base_of(key)
    noted, _, _ = await store.note(base)
    await redis_client.delete(keys.gen_key(base))  # expired or evicted
    assert (await store.note(base))[0] != noted  # a new one is made, never the old value
    entry = msgspec.structs.replace(make_entry(key), generation=noted)
    assert await store.save(key, entry, 60, noted) is Saved.FENCED


async def test_an_entry_copied_onto_another_orders_key_is_a_counted_miss(
    store: RedisStore, schema: KeySchema, redis_client: aioredis.Redis
) -> None:
    source = schema.entry("m1", "R6", "2023-06-30", False)
    target = schema.entry("m1", "R7", "2023-06-30", False)
    generation, epoch, _ = await store.note(keys.base_of(source))
    copied = msgspec.structs.replace(make_entry(source), generation=generation, epoch=epoch)
    await store.save(source, copied, 60, generation)
    await redis_client.set(target, await redis_client.get(source))
    assert (await store.lookup(target))[0] is None
    assert store.rejected == [Rejected.FOREIGN_KEY]  # type: ignore[attr-defined]


async def test_an_entry_whose_body_was_altered_is_a_counted_miss(
    store: RedisStore, schema: KeySchema, redis_client: aioredis.Redis
) -> None:
    key = schema.entry("m1", "R8", "2023-06-30", False)
    tampered = msgspec.structs.replace(make_entry(key), body=b'{"status": "REFUNDED?"}')
    await redis_client.set(key, EntryCodec().encode(tampered))
    assert (await store.lookup(key))[0] is None
    assert store.rejected == [Rejected.CHECKSUM]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "raw", [b"\xc1not msgpack", msgspec.msgpack.encode([[[[1]]]] * 3), b"\x91" * 100_000]
)
async def test_undecodable_or_hostile_entries_are_counted_misses(
    store: RedisStore, schema: KeySchema, redis_client: aioredis.Redis, raw: bytes
) -> None:
    key = schema.entry("m1", "R9", "2023-06-30", False)
    await redis_client.set(key, raw)
    assert (await store.lookup(key))[0] is None
    assert store.rejected == [Rejected.UNDECODABLE]  # type: ignore[attr-defined]


async def test_a_fresh_read_that_finds_a_change_invalidates_the_order(
    store: RedisStore, schema: KeySchema, redis_client: aioredis.Redis
) -> None:
    key = schema.entry("m1", "RA", "2023-06-30", False)
    other = schema.entry("m1", "RA", "2021-01-01", False)
    base = keys.base_of(key)
    for k in (key, other):
        g, epoch, _ = await store.note(base)
        saved = msgspec.structs.replace(make_entry(k), generation=g, epoch=epoch)
        await store.save(k, saved, 60, g)
    assert (await store.lookup(other))[0] is not None
    older_read, _, _ = await store.note(base)  # a plain read in flight since before
    noted, _, _ = await store.note(base)
    refunded = msgspec.structs.replace(
        make_entry(key, b'{"status": "CHARGED", "refunds": [1]}'), epoch=epoch
    )
    outcome, stored = await store.replace(key, refunded, 60, noted, b"changed")
    assert outcome is Saved.CHANGED
    assert (await store.lookup(key))[0] == stored
    assert (await store.lookup(other))[0] is None  # every other variant was dropped
    stale = msgspec.structs.replace(make_entry(key), generation=older_read)
    assert await store.save(key, stale, 60, older_read) is Saved.FENCED


async def test_a_fresh_read_that_finds_no_change_only_refreshes(
    store: RedisStore, schema: KeySchema
) -> None:
    key = schema.entry("m1", "RB", "2023-06-30", False)
    base = keys.base_of(key)
    g, epoch, _ = await store.note(base)
    same = msgspec.structs.replace(make_entry(key), epoch=epoch)
    await store.save(key, msgspec.structs.replace(same, generation=g), 60, g)
    outcome, stored = await store.replace(key, same, 60, (await store.note(base))[0], b"x")
    assert outcome is Saved.STORED
    assert (await store.lookup(key))[0] == stored


async def test_a_lock_from_an_older_generation_is_taken_over_not_followed(
    store: RedisStore, schema: KeySchema
) -> None:
    key = schema.entry("m1", "RC", "2023-06-30", False)
    role, generation, epoch, _ = await store.lock(key, "a" * 32, 10_000)
    assert role is Role.LEAD
    assert await store.lock(key, "b" * 32, 10_000) == (Role.FOLLOW, generation, epoch, None)
    await store.invalidate(keys.base_of(key), b"x")
    role, moved, _, _ = await store.lock(key, "c" * 32, 10_000)
    assert role is Role.LEAD
    assert moved != generation
    # The old leader may not share its (pre-invalidation) answer any more, even to followers.
    await store.flag_follower(key, 5000)
    await store.share(
        key, make_entry(key), token="a" * 32, generation=generation, ttl_ms=5000, message=b"x"
    )
    assert await store.get_shared(key) is None


async def test_a_rejoining_follower_takes_an_answer_shared_in_its_generation(
    store: RedisStore, schema: KeySchema
) -> None:
    key = schema.entry("m1", "RD", "2023-06-30", False)
    role, generation, epoch, _ = await store.lock(key, "a" * 32, 10_000)
    assert role is Role.LEAD
    await store.flag_follower(key, 5000)
    answer = msgspec.structs.replace(make_entry(key), epoch=epoch)
    await store.share(key, answer, token="a" * 32, generation=generation, ttl_ms=5000, message=b"x")
    assert await store.get_shared(key) == answer
    # A follower of a leader that failed meanwhile takes it instead of calling Juspay ...
    assert await store.lock(key, "b" * 32, 10_000, rejoining=True) == (
        Role.SHARED,
        generation,
        epoch,
        None,
    )
    # ... but not after an invalidation: that answer is older than the new generation.
    await store.invalidate(keys.base_of(key), b"x")
    assert (await store.lock(key, "c" * 32, 10_000, rejoining=True))[0] is Role.LEAD
