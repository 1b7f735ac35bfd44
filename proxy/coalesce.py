"""Coalescing across replicas that share a Redis: one upstream call per missed key in total.

Within one process, concurrent requests for a key already share one task (see orders.py).
Across processes, the first to take a short Redis lock for the key calls Juspay; the others
wait for its answer, which it leaves under a short-lived key and announces on the event bus.
A follower that hears nothing within the bound (the leader died, Redis failed) makes its own
call: the lock is an optimisation, never a reason to fail a request.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

from proxy.bus import EventBus
from proxy.metrics import Metrics
from proxy.models import CachedEntry
from proxy.stores import CacheUnavailable, RedisStore

log = structlog.get_logger("proxy.coalesce")

T = TypeVar("T")
ANSWER_READY = "answer"
ANSWER_FAILED = "failed"


class ReplicaCoalescer:
    def __init__(
        self,
        store: RedisStore,
        bus: EventBus,
        metrics: Metrics,
        *,
        lock_seconds: float,
        answer_seconds: float = 5.0,
    ) -> None:
        self._store = store
        self._bus = bus
        self._metrics = metrics
        self._lock_ms = max(1, int(lock_seconds * 1000))
        self._wait = lock_seconds
        self._answer_ms = int(answer_seconds * 1000)

    async def run(
        self,
        key: str,
        fetch: Callable[[], Awaitable[T]],
        entry_of: Callable[[T], CachedEntry],
    ) -> T | CachedEntry:
        """The leader's fetched result, or (on a follower) the leader's shared entry."""
        token = uuid.uuid4().hex
        lock_key, answer_key, followers_key = f"{key}:lock", f"{key}:answer", f"{key}:followers"
        try:
            leader: bool | None = await self._store.try_lock(
                lock_key, answer_key, token, self._lock_ms
            )
        except CacheUnavailable:
            self._metrics.redis_errors.labels(operation="lock").inc()
            # Unknown: the lock may have been taken even though the reply was lost. Act as
            # the leader, and release it (by token) afterwards, so nobody waits on a ghost.
            leader = None
        if leader is False:
            shared = await self._follow(key, answer_key, followers_key)
            if shared is not None:
                self._metrics.coalesced.inc()
                self._metrics.calls_saved.inc()
                return shared
            # Nothing arrived in time: make our own call (without the lock).
            return await fetch()
        try:
            result = await fetch()
        except BaseException:
            await self._release(lock_key, token, key)
            raise
        try:
            await self._store.share(
                answer_key=answer_key,
                lock_key=lock_key,
                followers_key=followers_key,
                entry=entry_of(result),
                ttl_ms=self._answer_ms,
                token=token,
                channel=self._bus.channel,
                message=self._bus.message(ANSWER_READY, key),
            )
        except CacheUnavailable:
            self._metrics.redis_errors.labels(operation="set").inc()
        return result

    async def _release(self, lock_key: str, token: str, key: str) -> None:
        try:
            await self._store.unlock(lock_key, token)
        except CacheUnavailable:
            self._metrics.redis_errors.labels(operation="lock").inc()
        await self._bus.publish(ANSWER_FAILED, key)

    async def _follow(self, key: str, answer_key: str, followers_key: str) -> CachedEntry | None:
        waiter = self._bus.waiter(key)
        try:
            # Tell the leader someone waits (it shares its answer only then), then look: the
            # leader may have finished between our lock attempt and the flag. Redis runs the
            # leader's share script atomically, so either it saw the flag or the answer is
            # already there for this read.
            try:
                await self._store.flag(followers_key, self._lock_ms)
            except CacheUnavailable:
                self._metrics.redis_errors.labels(operation="lock").inc()
                return None
            shared = await self._read(answer_key)
            if shared is not None:
                return shared
            try:
                kind = await asyncio.wait_for(asyncio.shield(waiter), timeout=self._wait)
            except TimeoutError:
                return await self._read(answer_key)
            if kind != ANSWER_READY:
                return None
            return await self._read(answer_key)
        finally:
            self._bus.discard(key, waiter)
            waiter.cancel()

    async def _read(self, answer_key: str) -> CachedEntry | None:
        try:
            return await self._store.get(answer_key)
        except CacheUnavailable:
            self._metrics.redis_errors.labels(operation="get").inc()
            return None
