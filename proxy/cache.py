"""Cache stores (in-process and Redis) behind one small interface, and a facade that fails open.

A Redis problem never fails a request: the facade counts it, logs the change of state once
(not once per request) and reports a miss, so the caller is answered from Juspay.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import msgspec
import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from proxy.metrics import Metrics
from proxy.models import CachedEntry, Decoders

log = structlog.get_logger("proxy.cache")

# Bytes an entry costs beyond its body and key (tuple, Struct, dict slot); an estimate that
# keeps the byte bound honest for small bodies.
_ENTRY_OVERHEAD = 320
# Bump when CachedEntry changes shape, so old entries are simply not found.
_FORMAT = "v1"


def order_base(prefix: str, merchant_id: str, order_id: str) -> str:
    """What every key about one merchant's order starts with.

    The braces are a Redis Cluster hash tag: every variant of one merchant's order (and its
    lock, shared answer, variant index and webhook mark) lands in one slot. Merchant and
    order ids are validated to exclude braces and colons.
    """
    return f"{prefix}:{_FORMAT}:{{{merchant_id}:{order_id}}}"


def entry_key(prefix: str, merchant_id: str, order_id: str, version: str, full_gw: bool) -> str:
    """The cache key: merchant, version, gateway-response option and order id."""
    return f"{order_base(prefix, merchant_id, order_id)}:{version}:{int(full_gw)}"


def _base_of(key: str) -> str:
    return key[: key.index("}") + 1]


class CacheUnavailable(Exception):
    """The store could not be reached or answered nonsense."""


class CacheStore(Protocol):
    layer: str

    async def get(self, key: str) -> CachedEntry | None: ...

    async def set(self, key: str, entry: CachedEntry, ttl: int) -> None: ...

    async def delete(self, keys: Sequence[str]) -> int: ...

    async def delete_order(self, base: str) -> int: ...

    async def advance_mark(self, base: str, mark: float, ttl: int) -> bool: ...

    async def ping(self) -> bool: ...


class MemoryStore:
    """An in-process LRU bounded by entries and bytes; entries expire after their TTL."""

    layer = "memory"

    def __init__(
        self,
        *,
        max_entries: int,
        max_bytes: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._clock = clock
        self._data: OrderedDict[str, tuple[CachedEntry, float, int]] = OrderedDict()
        # Webhook high-water marks per order, bounded like the entries.
        self._marks: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._data)

    def get_now(self, key: str) -> CachedEntry | None:
        item = self._data.get(key)
        if item is None:
            return None
        entry, expires_at, _ = item
        if self._clock() >= expires_at:
            self._drop(key)
            return None
        self._data.move_to_end(key)
        return entry

    def set_now(self, key: str, entry: CachedEntry, ttl: float) -> None:
        if ttl <= 0:
            return
        size = len(entry.body) + len(key) + _ENTRY_OVERHEAD
        if size > self._max_bytes:
            return
        self._drop(key)
        self._data[key] = (entry, self._clock() + ttl, size)
        self.bytes += size
        while len(self._data) > self._max_entries or self.bytes > self._max_bytes:
            oldest = next(iter(self._data))
            self._drop(oldest)

    def delete_now(self, keys: Sequence[str]) -> int:
        return sum(1 for key in keys if self._drop(key))

    def _drop(self, key: str) -> bool:
        item = self._data.pop(key, None)
        if item is None:
            return False
        self.bytes -= item[2]
        return True

    def delete_order_now(self, base: str) -> int:
        stem = base + ":"
        return self.delete_now([key for key in self._data if key.startswith(stem)])

    async def get(self, key: str) -> CachedEntry | None:
        return self.get_now(key)

    async def set(self, key: str, entry: CachedEntry, ttl: int) -> None:
        self.set_now(key, entry, ttl)

    async def delete(self, keys: Sequence[str]) -> int:
        return self.delete_now(keys)

    async def delete_order(self, base: str) -> int:
        return self.delete_order_now(base)

    async def advance_mark(self, base: str, mark: float, ttl: int) -> bool:
        now = self._clock()
        current = self._marks.get(base)
        if current is not None and current[1] > now and current[0] >= mark:
            return False
        self._marks[base] = (mark, now + ttl)
        self._marks.move_to_end(base)
        while len(self._marks) > self._max_entries:
            self._marks.popitem(last=False)
        return True

    async def ping(self) -> bool:
        return True


# Publish the leader's answer for followers on other replicas and release the lock, in one
# round trip: KEYS[1] answer key, KEYS[2] lock key; ARGV: answer, ttl ms, token, channel, message.
_SHARE_SCRIPT = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
"""
# Store an entry and remember it in the order's variant index (for purges), one round trip.
# KEYS[1] entry key, KEYS[2] index key; ARGV: value, ttl seconds.
_SET_SCRIPT = """
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('SADD', KEYS[2], KEYS[1])
if redis.call('TTL', KEYS[2]) < tonumber(ARGV[2]) then redis.call('EXPIRE', KEYS[2], ARGV[2]) end
return 1
"""
# Drop every variant of one order. KEYS[1] index key.
_DELETE_ORDER_SCRIPT = """
local keys = redis.call('SMEMBERS', KEYS[1])
local n = 0
for _, k in ipairs(keys) do n = n + redis.call('DEL', k) end
redis.call('DEL', KEYS[1])
return n
"""
# Move the webhook high-water mark forward; 1 if it moved. KEYS[1] mark; ARGV: mark, ttl.
_MARK_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if current and tonumber(current) >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""
# Release a lock only if we still hold it. KEYS[1] lock key; ARGV[1] token.
_UNLOCK_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_REDIS_ERRORS = (RedisError, OSError, TimeoutError)


class RedisStore:
    """Entries in Redis, msgpack-encoded, expiring with Redis' own TTL."""

    layer = "redis"

    def __init__(self, client: aioredis.Redis, decoders: Decoders) -> None:
        self._client = client
        self._decode = decoders.entry.decode
        self._encode = decoders.entry_encoder.encode
        self._share = client.register_script(_SHARE_SCRIPT)
        self._unlock = client.register_script(_UNLOCK_SCRIPT)
        self._set = client.register_script(_SET_SCRIPT)
        self._delete_order = client.register_script(_DELETE_ORDER_SCRIPT)
        self._mark = client.register_script(_MARK_SCRIPT)

    async def try_lock(self, key: str, token: str, ttl_ms: int) -> bool:
        try:
            return bool(await self._client.set(key, token, nx=True, px=ttl_ms))
        except _REDIS_ERRORS as exc:
            raise CacheUnavailable(type(exc).__name__) from exc

    async def unlock(self, key: str, token: str) -> None:
        try:
            await self._unlock(keys=[key], args=[token])
        except _REDIS_ERRORS as exc:
            raise CacheUnavailable(type(exc).__name__) from exc

    async def share(
        self,
        *,
        answer_key: str,
        lock_key: str,
        entry: CachedEntry,
        ttl_ms: int,
        token: str,
        channel: str,
        message: bytes,
    ) -> None:
        try:
            await self._share(
                keys=[answer_key, lock_key],
                args=[self._encode(entry), ttl_ms, token, channel, message],
            )
        except _REDIS_ERRORS as exc:
            raise CacheUnavailable(type(exc).__name__) from exc

    async def get(self, key: str) -> CachedEntry | None:
        try:
            raw = await self._client.get(key)
        except _REDIS_ERRORS as exc:
            raise CacheUnavailable(type(exc).__name__) from exc
        if not isinstance(raw, bytes):  # decode_responses is off, so None or bytes
            return None
        try:
            return self._decode(raw)
        except msgspec.DecodeError:
            # Written by another build, or damaged: not an answer we can vouch for.
            return None

    async def set(self, key: str, entry: CachedEntry, ttl: int) -> None:
        index = _base_of(key) + ":variants"
        try:
            await self._set(keys=[key, index], args=[self._encode(entry), ttl])
        except _REDIS_ERRORS as exc:
            raise CacheUnavailable(type(exc).__name__) from exc

    async def delete_order(self, base: str) -> int:
        try:
            return int(await self._delete_order(keys=[base + ":variants"]))
        except _REDIS_ERRORS as exc:
            raise CacheUnavailable(type(exc).__name__) from exc

    async def advance_mark(self, base: str, mark: float, ttl: int) -> bool:
        try:
            return bool(await self._mark(keys=[base + ":webhook-mark"], args=[repr(mark), ttl]))
        except _REDIS_ERRORS as exc:
            raise CacheUnavailable(type(exc).__name__) from exc

    async def delete(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        try:
            return int(await self._client.delete(*keys))
        except _REDIS_ERRORS as exc:
            raise CacheUnavailable(type(exc).__name__) from exc

    async def ping(self) -> bool:
        try:
            return bool(await self._client.ping())
        except _REDIS_ERRORS:
            return False


@dataclass(frozen=True, slots=True)
class Lookup:
    entry: CachedEntry | None
    failed: bool = False


class OrderCache:
    """The facade the order service uses: counts, logs state changes, never raises."""

    def __init__(self, store: MemoryStore | RedisStore, metrics: Metrics) -> None:
        self.store = store
        self._metrics = metrics
        self._layer = store.layer
        self._healthy = True
        lookups = metrics.cache_lookups
        self._hit = lookups.labels(layer=self._layer, result="hit")
        self._miss = lookups.labels(layer=self._layer, result="miss")
        self._error = lookups.labels(layer=self._layer, result="error")
        if isinstance(store, RedisStore):
            metrics.redis_up.set(1)

    @property
    def layer(self) -> str:
        return self._layer

    @property
    def healthy(self) -> bool:
        return self._healthy

    def _failed(self, operation: str, exc: CacheUnavailable) -> None:
        self._metrics.redis_errors.labels(operation=operation).inc()
        if self._healthy:
            self._healthy = False
            self._metrics.redis_up.set(0)
            log.warning("cache_unavailable", layer=self._layer, operation=operation, error=str(exc))

    def _succeeded(self) -> None:
        if not self._healthy:
            self._healthy = True
            self._metrics.redis_up.set(1)
            log.info("cache_recovered", layer=self._layer)

    async def lookup(self, key: str) -> Lookup:
        try:
            entry = await self.store.get(key)
        except CacheUnavailable as exc:
            self._error.inc()
            self._failed("get", exc)
            return Lookup(None, failed=True)
        self._succeeded()
        (self._hit if entry is not None else self._miss).inc()
        return Lookup(entry)

    async def save(self, key: str, entry: CachedEntry, ttl: int, status_class: str) -> bool:
        try:
            await self.store.set(key, entry, ttl)
        except CacheUnavailable as exc:
            self._failed("set", exc)
            return False
        self._succeeded()
        self._metrics.cache_stores.labels(layer=self._layer, status_class=status_class).inc()
        self._update_memory_gauges()
        return True

    async def drop(self, keys: Sequence[str]) -> int | None:
        """Delete keys; None when the store could not be reached."""
        try:
            removed = await self.store.delete(keys)
        except CacheUnavailable as exc:
            self._failed("delete", exc)
            return None
        self._succeeded()
        self._update_memory_gauges()
        return removed

    async def drop_order(self, base: str) -> int | None:
        """Delete every variant of one order; None when the store could not be reached."""
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

    def _update_memory_gauges(self) -> None:
        if isinstance(self.store, MemoryStore):
            self._metrics.memory_entries.set(len(self.store))
            self._metrics.memory_bytes.set(self.store.bytes)
