"""Coalescing across replicas: two coalescers over two clients of one real Redis."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as aioredis

from proxy.cache import keys
from proxy.cache.bus import INVALIDATED, EventBus
from proxy.cache.coalesce import ReplicaCoalescer
from proxy.cache.entries import CachedEntry
from proxy.cache.keys import KeySchema
from proxy.cache.redis import RedisStore
from proxy.core.errors import UpstreamConnectionError
from proxy.observe.metrics import Metrics
from tests.cache.conftest import make_entry
from tests.support.processes import RedisProcess

LOCK_SECONDS = 5.0
# Well under LOCK_SECONDS: a follower done by then did not wait its leader's lock out.
PROMPT = 2.5


class ProbedStore(RedisStore):
    """The real store, plus an event set once a follower has told Redis it is waiting (the
    leader shares its answer only then)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.flagged = asyncio.Event()

    async def flag_follower(self, key: str, ttl_ms: int) -> None:
        await super().flag_follower(key, ttl_ms)
        self.flagged.set()


@dataclass
class Replica:
    client: aioredis.Redis
    store: ProbedStore
    bus: EventBus
    coalescer: ReplicaCoalescer


@pytest.fixture
async def replicas(
    redis_server: RedisProcess, schema: KeySchema
) -> AsyncIterator[tuple[Replica, Replica]]:
    built: list[Replica] = []
    for _ in range(2):
        client = aioredis.Redis.from_url(redis_server.url)
        metrics = Metrics()
        store = ProbedStore(client, channel=schema.channel, timeout=1.0, generation_ttl=300)
        bus = EventBus(client, schema.channel, metrics, timeout=1.0)
        bus.start()
        built.append(
            Replica(
                client, store, bus, ReplicaCoalescer(store, bus, metrics, lock_seconds=LOCK_SECONDS)
            )
        )
    # A follower hears its leader's answer over the bus: both must be listening first.
    await asyncio.wait_for(asyncio.gather(*(replica.bus.subscribed.wait() for replica in built)), 5)
    yield built[0], built[1]
    for replica in built:
        await replica.bus.close()
        await replica.store.close()
        await replica.client.aclose()


def same(entry: CachedEntry) -> CachedEntry:
    return entry


class Reads:
    """Upstream reads the test controls: counted per replica, the leader's held on an event."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    def held(
        self, name: str, entry: CachedEntry
    ) -> Callable[[tuple[str, str] | None], Awaitable[CachedEntry]]:
        async def fetch(noted: tuple[str, str] | None) -> CachedEntry:
            self.calls[name] += 1
            self.started.set()
            await self.release.wait()
            return entry

        return fetch

    def failing(self, name: str) -> Callable[[tuple[str, str] | None], Awaitable[CachedEntry]]:
        async def fetch(noted: tuple[str, str] | None) -> CachedEntry:
            self.calls[name] += 1
            self.started.set()
            await self.release.wait()
            raise UpstreamConnectionError("cannot reach Juspay")

        return fetch

    def immediate(
        self, name: str, entry: CachedEntry
    ) -> Callable[[tuple[str, str] | None], Awaitable[CachedEntry]]:
        async def fetch(noted: tuple[str, str] | None) -> CachedEntry:
            self.calls[name] += 1
            return entry

        return fetch


async def test_one_replica_leads_and_the_other_follows_with_its_answer(
    replicas: tuple[Replica, Replica], schema: KeySchema
) -> None:
    a, b = replicas
    key = schema.entry("m1", "CO-1", "2023-06-30", False)
    answer = make_entry(key)
    reads = Reads()
    leader = asyncio.create_task(a.coalescer.run(key, reads.held("a", answer), same))
    await asyncio.wait_for(reads.started.wait(), 5)  # a holds the lock and is at Juspay
    follower = asyncio.create_task(
        b.coalescer.run(key, reads.immediate("b", make_entry(key, b"{}")), same)
    )
    await asyncio.wait_for(b.store.flagged.wait(), 5)
    reads.release.set()
    led, followed = await asyncio.wait_for(asyncio.gather(leader, follower), PROMPT)
    assert led is answer
    # The leader's answer, read back from Redis, marked with the epoch it was fenced on.
    assert isinstance(followed, CachedEntry)
    assert followed.body == answer.body
    assert followed.epoch == a.store.epochs.current()
    assert reads.calls == Counter({"a": 1})


async def test_a_follower_takes_over_when_its_leader_fails(
    replicas: tuple[Replica, Replica], schema: KeySchema
) -> None:
    a, b = replicas
    key = schema.entry("m1", "CO-2", "2023-06-30", False)
    own = make_entry(key)
    reads = Reads()
    leader = asyncio.create_task(a.coalescer.run(key, reads.failing("a"), same))
    await asyncio.wait_for(reads.started.wait(), 5)
    follower = asyncio.create_task(b.coalescer.run(key, reads.immediate("b", own), same))
    await asyncio.wait_for(b.store.flagged.wait(), 5)
    reads.release.set()
    with pytest.raises(UpstreamConnectionError):
        await asyncio.wait_for(leader, PROMPT)
    # Told of the failure over the bus, it leads a read of its own at once.
    assert await asyncio.wait_for(follower, PROMPT) is own
    assert reads.calls == Counter({"a": 1, "b": 1})


async def test_a_read_after_an_invalidation_does_not_follow_a_read_from_before_it(
    replicas: tuple[Replica, Replica], schema: KeySchema
) -> None:
    a, b = replicas
    key = schema.entry("m1", "CO-3", "2023-06-30", False)
    base = keys.base_of(key)
    newer = make_entry(key, b'{"status": "AUTO_REFUNDED"}')
    reads = Reads()
    leader = asyncio.create_task(a.coalescer.run(key, reads.held("a", make_entry(key)), same))
    await asyncio.wait_for(reads.started.wait(), 5)
    await a.store.invalidate(base, a.bus.message(INVALIDATED, base))
    # While the older read is still at Juspay, the newer one takes its lock over and reads.
    assert (
        await asyncio.wait_for(b.coalescer.run(key, reads.immediate("b", newer), same), PROMPT)
        is newer
    )
    assert not b.store.flagged.is_set()
    reads.release.set()
    await asyncio.wait_for(leader, PROMPT)
    assert reads.calls == Counter({"a": 1, "b": 1})


async def test_a_no_cache_read_never_takes_another_reads_answer(
    replicas: tuple[Replica, Replica], schema: KeySchema
) -> None:
    a, b = replicas
    key = schema.entry("m1", "CO-4", "2023-06-30", False)
    own = make_entry(key, b'{"status": "CHARGED", "fresh": true}')
    reads = Reads()
    leader = asyncio.create_task(a.coalescer.run(key, reads.held("a", make_entry(key)), same))
    await asyncio.wait_for(reads.started.wait(), 5)
    result = await asyncio.wait_for(
        b.coalescer.run(key, reads.immediate("b", own), same, may_follow=False), PROMPT
    )
    assert result is own
    reads.release.set()
    await asyncio.wait_for(leader, PROMPT)
    assert reads.calls == Counter({"a": 1, "b": 1})
