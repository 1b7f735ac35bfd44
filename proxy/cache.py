"""The cache facade the order service uses: an in-process front layer, the store behind it,
and fail-open handling.

A Redis problem never fails a request: the facade counts it, logs the change of state once
(not once per request) and reports a miss, so the caller is answered from Juspay.

With Redis, fresh entries are also kept in a small in-process front layer, so a hit usually
costs no round trip. A front entry never outlives its freshness (nor `front_ttl`), and purges
and webhooks on any replica drop it through the event bus. While the bus is disconnected the
front layer is emptied and bypassed: an invalidation it could miss must not leave it serving.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from proxy.metrics import Metrics
from proxy.models import CachedEntry
from proxy.stores import CacheUnavailable, MemoryStore, RedisStore

log = structlog.get_logger("proxy.cache")

_LOG_EVERY_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Lookup:
    entry: CachedEntry | None
    failed: bool = False
    # Which layer answered: "memory" or "redis" (for logs and metrics).
    layer: str = ""


class OrderCache:
    def __init__(
        self,
        store: MemoryStore | RedisStore,
        metrics: Metrics,
        *,
        front: MemoryStore | None = None,
        front_ttl: float = 60.0,
        front_allowed: Callable[[], bool] = lambda: True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self._metrics = metrics
        self._clock = clock
        # The memory layer: the store itself without Redis, else the optional front layer.
        self._memory = store if isinstance(store, MemoryStore) else front
        self._front_ttl = front_ttl
        self._front_allowed = front_allowed
        self._front_cleared = False
        # Bumped on every invalidation: a Redis read that raced one does not fill the front.
        self._epoch = 0
        self._healthy = True
        self._logged_at = -_LOG_EVERY_SECONDS
        lookups = metrics.cache_lookups
        self._memory_hit = lookups.labels(layer="memory", result="hit")
        self._memory_miss = lookups.labels(layer="memory", result="miss")
        self._redis_hit = lookups.labels(layer="redis", result="hit")
        self._redis_miss = lookups.labels(layer="redis", result="miss")
        self._redis_error = lookups.labels(layer="redis", result="error")
        self.remote = store if isinstance(store, RedisStore) else None
        if self.remote is not None:
            metrics.redis_up.set(1)

    @property
    def layer(self) -> str:
        return "redis" if self.remote is not None else "memory"

    @property
    def healthy(self) -> bool:
        return self._healthy

    def _memory_usable(self) -> MemoryStore | None:
        memory = self._memory
        if memory is None or memory is self.store:
            return memory
        if self._front_allowed():
            self._front_cleared = False
            return memory
        if not self._front_cleared:
            memory.clear()
            self._front_cleared = True
            self._update_memory_gauges()
        return None

    def peek(self, key: str) -> CachedEntry | None:
        """The in-process answer, without awaiting anything (the hot path)."""
        memory = self._memory_usable()
        if memory is None:
            return None
        entry = memory.get_now(key)
        (self._memory_miss if entry is None else self._memory_hit).inc()
        return entry

    async def lookup(self, key: str) -> Lookup:
        """The answer from Redis (after peek() missed); fills the front layer when fresh."""
        if self.remote is None:
            return Lookup(None)
        epoch = self._epoch
        try:
            entry = await self.remote.get(key)
        except CacheUnavailable as exc:
            self._redis_error.inc()
            self._failed("get", exc)
            return Lookup(None, failed=True)
        self._succeeded()
        if entry is None:
            self._redis_miss.inc()
            return Lookup(None)
        self._redis_hit.inc()
        if epoch == self._epoch:
            self._fill_front(key, entry)
        return Lookup(entry, layer="redis")

    def _fill_front(self, key: str, entry: CachedEntry) -> None:
        memory = self._memory_usable()
        if memory is None or memory is self.store:
            return
        ttl = min(self._front_ttl, entry.fresh_until - self._clock())
        if ttl > 0:
            memory.set_now(key, entry, ttl)
            self._update_memory_gauges()

    def invalidate(self, base: str) -> None:
        """Every variant of one order changed (a purge or webhook on any replica)."""
        self._epoch += 1
        if self._memory is not None and self._memory is not self.store:
            self._memory.delete_order_now(base)
            self._update_memory_gauges()

    async def save(self, key: str, entry: CachedEntry, ttl: int, status_class: str) -> bool:
        try:
            await self.store.set(key, entry, ttl)
        except CacheUnavailable as exc:
            self._failed("set", exc)
            return False
        self._succeeded()
        self._metrics.cache_stores.labels(layer=self.store.layer, status_class=status_class).inc()
        self._fill_front(key, entry)
        self._update_memory_gauges()
        return True

    async def drop_order(self, base: str) -> int | None:
        """Delete every variant of one order; None when the store could not be reached."""
        self.invalidate(base)
        try:
            removed = await self.store.delete_order(base)
        except CacheUnavailable as exc:
            self._failed("delete", exc)
            return None
        self._succeeded()
        self._update_memory_gauges()
        return removed

    async def advance_mark(self, base: str, mark: float, ttl: int) -> bool | None:
        """Record a newer webhook event time for an order; None when the store failed."""
        try:
            moved = await self.store.advance_mark(base, mark, ttl)
        except CacheUnavailable as exc:
            self._failed("set", exc)
            return None
        self._succeeded()
        return moved

    async def check(self) -> bool:
        ok = await self.store.ping()
        if ok:
            self._succeeded()
        else:
            self._failed("ping", CacheUnavailable("ping failed"))
        return ok

    def _failed(self, operation: str, exc: CacheUnavailable) -> None:
        self._metrics.redis_errors.labels(operation=operation).inc()
        if self._healthy:
            self._healthy = False
            self._metrics.redis_up.set(0)
            if self._may_log():
                log.warning(
                    "cache_unavailable", layer=self.layer, operation=operation, error=str(exc)
                )

    def _succeeded(self) -> None:
        if not self._healthy:
            self._healthy = True
            self._metrics.redis_up.set(1)
            if self._may_log():
                log.info("cache_recovered", layer=self.layer)

    def _may_log(self) -> bool:
        """State changes are logged at most every few seconds: during a partial outage
        (one cluster master down) the state flips on nearly every request. Metrics count
        every error regardless."""
        now = time.monotonic()
        if now - self._logged_at < _LOG_EVERY_SECONDS:
            return False
        self._logged_at = now
        return True

    def _update_memory_gauges(self) -> None:
        if self._memory is not None:
            self._metrics.memory_entries.set(len(self._memory))
            self._metrics.memory_bytes.set(self._memory.bytes)
