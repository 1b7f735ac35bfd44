"""Coalescing across replicas that share a Redis: one upstream call per missed key in total.

Within one process, concurrent requests for a key already share one task (see orders.py).
Across processes, the first to take a short Redis lock for the key calls Juspay; the others
wait for its answer, which it leaves under a short-lived key and announces on the event bus.

The lock belongs to one generation of the order (see redis.py): a request that arrives after
an invalidation never follows a read that started before it, it takes the lock over instead.
Taking the lock also notes the generation the leader's save is fenced with, so leading costs
no extra round trip. A follower whose leader failed or went silent tries to lead in turn
(only one wins the lock, the rest follow it again), so a failed leader does not send all its
followers to Juspay at once. The lock is an optimisation, never a reason to fail a request.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import msgspec
import structlog

from proxy.cache.bus import ANSWER_FAILED, ANSWER_READY, EventBus
from proxy.cache.entries import CachedEntry
from proxy.cache.redis import CacheUnavailable, RedisStore, Role
from proxy.observe.metrics import Metrics

log = structlog.get_logger("proxy.coalesce")

T = TypeVar("T")
# A read given the order's generation, the primary's epoch and the last webhook's lower bound
# (None: Redis could not tell, so nothing may be saved in Redis).
Noted = tuple[str, str, bytes | None]
Fetch = Callable[[Noted | None], Awaitable[T]]


class ReplicaCoalescer:
    def __init__(
        self,
        store: RedisStore,
        bus: EventBus,
        metrics: Metrics,
        *,
        lock_seconds: float,
        answer_seconds: float = 5.0,
        rounds: int = 3,
    ) -> None:
        self._store = store
        self._bus = bus
        self._metrics = metrics
        self._lock_ms = max(1, int(lock_seconds * 1000))
        self._wait = lock_seconds
        self._answer_ms = int(answer_seconds * 1000)
        self._rounds = rounds

    async def run(
        self,
        key: str,
        fetch: Fetch[T],
        entry_of: Callable[[T], CachedEntry],
        *,
        may_follow: bool = True,
    ) -> T | CachedEntry:
        """The leader's fetched result, or (on a follower) the leader's shared entry.

        `may_follow=False` (a no-cache read) never takes another read's answer: it leads if
        the lock is free and otherwise makes its own read, fenced all the same.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait
        noted: Noted | None = None
        for attempt in range(self._rounds):
            token = uuid.uuid4().hex
            try:
                role, generation, epoch, floor = await self._store.lock(
                    key, token, self._lock_ms, rejoining=attempt > 0
                )
                noted = (generation, epoch, floor)
            except CacheUnavailable:
                self._metrics.redis_errors.labels(operation="lock").inc()
                # The lock may have been taken although the reply was lost: release it (by
                # token) afterwards so nobody waits on a ghost. Unfenced, nothing is saved.
                try:
                    return await fetch(None)
                finally:
                    await self._release(key, token)
            if role is Role.LEAD:
                return await self._lead(key, token, noted, fetch, entry_of)
            remaining = deadline - loop.time()
            if not may_follow or remaining <= 0:
                break
            if role is Role.SHARED:
                shared = await self._read(key)
            else:
                shared = await self._follow(key, remaining)
            if shared is not None:
                self._metrics.coalesced.inc()
                self._metrics.calls_saved.inc()
                return shared
            # The leader failed or went silent: try to lead, after a short random pause so
            # that followers do not all reach the lock at the same instant.
            await asyncio.sleep(random.uniform(0, 0.02))  # noqa: S311 - jitter
        return await fetch(noted)

    async def _lead(
        self,
        key: str,
        token: str,
        noted: Noted,
        fetch: Fetch[T],
        entry_of: Callable[[T], CachedEntry],
    ) -> T:
        generation = noted[0]
        try:
            result = await fetch(noted)
        except BaseException:
            await self._release(key, token)
            raise
        entry = entry_of(result)
        if entry.epoch != noted[1]:
            # Followers serve it only as an answer of the primary it was fenced on.
            entry = msgspec.structs.replace(entry, epoch=noted[1])
        try:
            await self._store.share(
                key,
                entry,
                token=token,
                generation=generation,
                ttl_ms=self._answer_ms,
                message=self._bus.message(ANSWER_READY, key),
            )
        except CacheUnavailable:
            self._metrics.redis_errors.labels(operation="set").inc()
            await self._release(key, token)
        return result

    async def _release(self, key: str, token: str) -> None:
        """Drop our lock (if we hold it) and tell followers to stop waiting for us."""
        try:
            await self._store.unlock(key, token)
        except CacheUnavailable:
            self._metrics.redis_errors.labels(operation="lock").inc()
        await self._bus.publish(ANSWER_FAILED, key)

    async def _follow(self, key: str, patience: float) -> CachedEntry | None:
        waiter = self._bus.waiter(key)
        try:
            # Tell the leader someone waits (it shares its answer only then), then look: the
            # leader may have finished between our lock attempt and the flag. Redis runs the
            # leader's share script atomically, so either it saw the flag or the answer is
            # already there for this read.
            try:
                await self._store.flag_follower(key, self._lock_ms)
            except CacheUnavailable:
                self._metrics.redis_errors.labels(operation="lock").inc()
                return None
            shared = await self._read(key)
            if shared is not None:
                return shared
            try:
                kind = await asyncio.wait_for(asyncio.shield(waiter), timeout=patience)
            except TimeoutError:
                return await self._read(key)
            if kind != ANSWER_READY:
                return None
            return await self._read(key)
        finally:
            self._bus.discard(key, waiter)
            waiter.cancel()

    async def _read(self, key: str) -> CachedEntry | None:
        try:
            return await self._store.get_shared(key)
        except CacheUnavailable:
            self._metrics.redis_errors.labels(operation="get").inc()
            return None
