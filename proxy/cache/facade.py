"""The cache the order service uses: the memory layer, the Redis store behind it, fencing,
and fail-open handling.

Without Redis the memory store is the whole cache. With Redis, fresh entries are also kept
in a small in-process front layer, so a hit usually costs no round trip. A front entry never
outlives its freshness (nor `front_ttl`); invalidations on any replica drop it through the
event bus. Whenever the bus changes state it is emptied (messages may have been missed), and
while the bus is not known to be healthy nothing from Redis is copied into it.

While Redis cannot be reached, answers read from Juspay are kept in memory for `grace`
seconds from when their read started (the bound the contract allows a replica to lag an
invalidation it cannot hear): an outage costs Juspay one read per hot order per grace window,
not one per request. When Redis' epoch changes (a restart or failover, see epoch.py), the
memory layer is emptied too.

A read notes a `Fence` before it calls Juspay (the order's generation in Redis and in this
process); its save is refused if an invalidation came in between. Fenced-out saves are
counted, never an error for the caller.

A Redis problem never fails a read: the facade counts it, logs the change of state once
(not once per request) and reports a miss, so the caller is answered from Juspay. An
invalidation, though, is only acknowledged once Redis confirmed it (CacheUnavailable).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
import structlog

from proxy.cache import memory
from proxy.cache.bus import INVALIDATED, EventBus
from proxy.cache.entries import CachedEntry
from proxy.cache.keys import base_of, is_attempt
from proxy.cache.memory import MemoryStore
from proxy.cache.redis import CacheUnavailable, RedisStore, Saved
from proxy.observe.metrics import Metrics

log = structlog.get_logger("proxy.cache")

_LOG_EVERY_SECONDS = 5.0
# How long a webhook's lower bound holds: re-reads that still lag it after this are cached
# as usual (Juspay's read side should have caught up long before).
FLOOR_SECONDS = 120
# Lower bounds this process keeps for itself (orders with a webhook in the last FLOOR_SECONDS).
_MAX_LOCAL_FLOORS = 10_000


@dataclass(frozen=True, slots=True)
class Lookup:
    entry: CachedEntry | None
    # Redis: the order's generation at the lookup (None: it has none yet), and the epoch of
    # the primary that answered.
    generation: str | None = None
    failed: bool = False
    epoch: str | None = None


@dataclass(frozen=True, slots=True)
class Fence:
    """What a read noted before it called Juspay; its save is refused if either moved on."""

    local: memory.Fence
    # The order's Redis generation; None when Redis could not tell (then nothing is saved
    # in Redis, and in memory only for the outage grace).
    remote: str | None = None
    # The epoch of the primary that gave `remote` (stored with the entry).
    epoch: str = ""
    # When the read started, on the memory store's clock (bounds the outage grace).
    born: float = 0.0
    # The last webhook's lower bound for the order, if one is still set (core/lowerbound.py).
    floor: bytes | None = None


class OrderCache:
    def __init__(
        self,
        memory_store: MemoryStore,
        metrics: Metrics,
        *,
        remote: RedisStore | None = None,
        bus: EventBus | None = None,
        front_ttl: float = 60.0,
        grace: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._memory = memory_store
        self.remote = remote
        self._bus = bus
        self._metrics = metrics
        self._clock = clock
        # With Redis, the memory store is a front layer (off when front_ttl is 0).
        self._front_ttl = front_ttl if remote is not None else 0.0
        # How long an answer Redis could not fence (an outage) is kept in memory, from when its
        # read started; while the bus is down nothing else is served from memory.
        self._grace = grace
        # Webhook lower bounds set by this process (Redis keeps the shared ones).
        self._floors: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._healthy = True
        self._logged_at = -_LOG_EVERY_SECONDS
        self._outage_logged = False
        lookups = metrics.cache_lookups
        self._memory_hit = lookups.labels(layer="memory", result="hit")
        self._memory_miss = lookups.labels(layer="memory", result="miss")
        self._redis_hit = lookups.labels(layer="redis", result="hit")
        self._redis_miss = lookups.labels(layer="redis", result="miss")
        self._redis_error = lookups.labels(layer="redis", result="error")
        self._fenced = metrics.fenced_saves
        if remote is not None:
            metrics.redis_up.set(1)
            # Redis restarted or failed over: its entries are refused (another epoch), and the
            # copies in memory may be of entries an invalidation it lost had dropped.
            remote.epochs.on_change(lambda node: self._forget_all())
        if bus is not None:
            bus.listen(INVALIDATED, self.forget)
            # Messages may have been missed while the link was down (or is now).
            bus.on_state(lambda healthy: self._forget_all())

    @property
    def layer(self) -> str:
        return "redis" if self.remote is not None else "memory"

    def _bus_healthy(self) -> bool:
        return self._bus is not None and self._bus.healthy

    # --- reads ------------------------------------------------------------------------------
    def peek(self, key: str) -> CachedEntry | None:
        """The in-process answer, without awaiting anything (the hot path)."""
        if self.remote is None:
            entry = self._memory.get(key)
        elif self._bus_healthy():
            if self._front_ttl <= 0:
                return None
            entry = self._memory.get(key)
        else:
            # Only answers kept through an outage (see _keep_through_outage), and only while
            # young: an invalidation elsewhere cannot be heard now.
            entry = self._memory.get(key, max_age=self._grace)
        (self._memory_miss if entry is None else self._memory_hit).inc()
        return entry

    def local_fence(self, key: str) -> memory.Fence:
        return self._memory.fence(base_of(key))

    def local_current(self, key: str, fence: memory.Fence) -> bool:
        return self._memory.current(base_of(key), fence)

    def now(self) -> float:
        """The memory store's clock (what a Fence's `born` is measured in)."""
        return self._memory.now()

    async def lookup(self, key: str) -> Lookup:
        """The answer from Redis (after peek() missed); fills the front layer when fresh."""
        if self.remote is None:
            return Lookup(None)
        local = self.local_fence(key)
        born = self._memory.now()
        try:
            entry, generation, epoch = await self.remote.lookup(key)
        except CacheUnavailable as exc:
            self._redis_error.inc()
            self._failed("get", exc)
            return Lookup(None, failed=True)
        self._succeeded()
        if entry is None:
            self._redis_miss.inc()
            return Lookup(None, generation, epoch=epoch)
        self._redis_hit.inc()
        self._fill_front(key, entry, local, born)
        return Lookup(entry, generation, epoch=epoch)

    def _fill_front(self, key: str, entry: CachedEntry, fence: memory.Fence, born: float) -> None:
        """Keep a copy of a Redis answer in memory, fenced: an invalidation heard since the
        read began means this copy may be old."""
        if self.remote is None or not self._bus_healthy():
            return
        ttl = min(self._front_ttl, entry.fresh_until - self._clock())
        if ttl > 0 and self._memory.set(key, entry, ttl, fence, born=born):
            self._update_memory_gauges()

    # --- writes -----------------------------------------------------------------------------
    async def note(self, key: str, local: memory.Fence) -> Fence:
        """The fence a read takes before calling Juspay (when no lock script noted it)."""
        born = self._memory.now()
        if self.remote is None:
            return Fence(local, born=born, floor=self.local_floor(base_of(key)))
        try:
            generation, epoch, floor = await self.remote.note(base_of(key))
        except CacheUnavailable as exc:
            self._failed("note", exc)
            return Fence(local, born=born, floor=self.local_floor(base_of(key)))
        self._succeeded()
        return Fence(local, generation, epoch, born, floor)

    def local_floor(self, key_base: str) -> bytes | None:
        """The last webhook's lower bound this process set for the order, while it lasts
        (the floor Redis keeps is the one every replica sees)."""
        item = self._floors.get(key_base)
        if item is None:
            return None
        if self._memory.now() >= item[1]:
            del self._floors[key_base]
            return None
        return item[0]

    async def save(
        self,
        key: str,
        entry: CachedEntry,
        ttl: int,
        fence: Fence,
        status_class: str,
        *,
        fresh: bool = False,
    ) -> Saved | None:
        """Store an upstream answer (ttl 0: nothing to store) unless the order was invalidated
        since `fence`. A `fresh` read (no-cache, verification) also invalidates the order if
        a stored variant disagrees with it. None when Redis could not be reached (the answer
        is then kept in memory for the outage grace only)."""
        if self.remote is None:
            outcome = self._save_in_memory(key, entry, ttl, fence, fresh=fresh)
        else:
            if fence.remote is None:
                # Unfenced: storing in Redis could undo an invalidation we cannot see.
                self._keep_through_outage(key, entry, ttl, fence)
                return None
            entry = msgspec.structs.replace(entry, generation=fence.remote, epoch=fence.epoch)
            try:
                if fresh:
                    message = self._invalidation_message(base_of(key))
                    outcome, entry = await self.remote.replace(
                        key, entry, ttl, fence.remote, message
                    )
                elif ttl > 0:
                    outcome = await self.remote.save(key, entry, ttl, fence.remote)
                else:
                    outcome = Saved.UNCHANGED
            except CacheUnavailable as exc:
                self._failed("set", exc)
                self._keep_through_outage(key, entry, ttl, fence)
                return None
            self._succeeded()
            if outcome is Saved.CHANGED:
                self.forget(base_of(key))
            elif outcome is Saved.STORED:
                self._fill_front(key, entry, fence.local, fence.born)
        if outcome is Saved.FENCED:
            self._fenced.inc()
        elif ttl > 0 and outcome in (Saved.STORED, Saved.CHANGED):
            self._metrics.cache_stores.labels(layer=self.layer, status_class=status_class).inc()
        self._update_memory_gauges()
        return outcome

    def _keep_through_outage(self, key: str, entry: CachedEntry, ttl: int, fence: Fence) -> None:
        """Redis could not fence this answer: keep it in memory only for the grace, counted
        from when its read started, so an outage does not send every request to Juspay."""
        if ttl <= 0 or self._grace <= 0:
            return
        if self._memory.set(key, entry, min(ttl, self._grace), fence.local, born=fence.born):
            self._update_memory_gauges()

    def _save_in_memory(
        self, key: str, entry: CachedEntry, ttl: int, fence: Fence, *, fresh: bool
    ) -> Saved:
        store = self._memory
        base = base_of(key)
        if not store.current(base, fence.local):
            return Saved.FENCED
        if not fresh:
            return Saved.STORED if store.set(key, entry, ttl) else Saved.UNCHANGED
        changed = any(_disagrees(key, known, entry) for known in store.variants(base))
        if changed or ttl > 0:
            # Move the generation on: older reads still in flight cannot overwrite this.
            store.invalidate(base)
        if ttl > 0 and store.set(key, entry, ttl):
            return Saved.CHANGED if changed else Saved.STORED
        return Saved.CHANGED if changed else Saved.UNCHANGED

    async def invalidate(self, key_base: str, floor: bytes | None = None) -> int:
        """Drop every variant of one order and fence out every read in flight for it, on
        every replica; the count of entries dropped. A webhook's `floor` (its lower bound)
        is kept for the reads that follow, for FLOOR_SECONDS. Raises CacheUnavailable when
        Redis could not confirm it: the caller must not acknowledge it then."""
        dropped = self._memory.invalidate(key_base)
        self._update_memory_gauges()
        if floor is not None:
            self._floors[key_base] = (floor, self._memory.now() + FLOOR_SECONDS)
            self._floors.move_to_end(key_base)
            while len(self._floors) > _MAX_LOCAL_FLOORS:
                self._floors.popitem(last=False)
        if self.remote is None:
            return dropped
        try:
            dropped = await self.remote.invalidate(
                key_base, self._invalidation_message(key_base), floor or b"", FLOOR_SECONDS
            )
        except CacheUnavailable as exc:
            self._failed("invalidate", exc)
            raise
        self._succeeded()
        return dropped

    def _invalidation_message(self, key_base: str) -> bytes:
        assert self._bus is not None  # a Redis store always comes with its bus
        return self._bus.message(INVALIDATED, key_base)

    def forget(self, key_base: str) -> None:
        """Another replica (or this one) invalidated an order: drop the in-process copies."""
        if self._memory.invalidate(key_base):
            self._update_memory_gauges()

    def _forget_all(self) -> None:
        self._memory.clear()
        self._update_memory_gauges()

    @property
    def redis_healthy(self) -> bool:
        """Whether Redis answered the last time anything asked it (no round trip)."""
        return self._healthy

    async def check(self) -> bool:
        if self.remote is None:
            return True
        ok = await self.remote.ping()
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
                self._outage_logged = True
                log.warning(
                    "cache_unavailable", layer=self.layer, operation=operation, error=str(exc)
                )

    def _succeeded(self) -> None:
        if not self._healthy:
            self._healthy = True
            self._metrics.redis_up.set(1)
            # Paired with the outage line, never rate-limited away: a log that ends on
            # "unavailable" must mean Redis is still down.
            if self._outage_logged:
                self._outage_logged = False
                log.info("cache_recovered", layer=self.layer)

    def _may_log(self) -> bool:
        """Outages are logged at most every few seconds: during a partial outage (one
        cluster master down) the state flips on nearly every request. Each outage that was
        logged gets its recovery line. Metrics count every error regardless."""
        now = time.monotonic()
        if now - self._logged_at < _LOG_EVERY_SECONDS:
            return False
        self._logged_at = now
        return True

    def _update_memory_gauges(self) -> None:
        self._metrics.memory_entries.set(len(self._memory))
        self._metrics.memory_bytes.set(self._memory.bytes)


def _disagrees(key: str, known: CachedEntry, fresh: CachedEntry) -> bool:
    """Whether a fresh read shows that a stored variant is out of date: the same variant with
    other bytes, or another variant (version, options) with another state."""
    if known.key == key:
        return known.etag != fresh.etag
    if is_attempt(key) or is_attempt(known.key):
        return False  # one payment attempt's answer says nothing of the order's (or another's)
    return known.state != fresh.state
