"""Cache stores, in-process and Redis, behind one small interface; and the keys they use.

The Redis store sends every command through the auto-pipeline (one round trip per loop turn)
and turns any Redis trouble into CacheUnavailable, which the facade in cache.py absorbs.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import msgspec
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from proxy.models import CachedEntry, Decoders
from proxy.redis_pipeline import AutoPipeline, RedisCommandError

# Bytes an entry costs beyond its body and key: the Struct, its strings, the LRU node and
# allocator slack. Measured: 100k 4 KB entries through a 64 MiB store grew RSS by 66.5 MiB
# with 320 here, so 512 keeps the byte bound honest.
_ENTRY_OVERHEAD = 512
# How long a cluster slot whose node failed is skipped before one request probes it again.
_SLOT_PAUSE_SECONDS = 1.0
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

    def clear(self) -> None:
        self._data.clear()
        self._marks.clear()
        self.bytes = 0

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


# The leader's answer for followers on other replicas, and the lock released, in one round trip.
# The answer is shared (and announced) only if a follower said it is waiting, so an
# uncontended miss costs no pub/sub traffic. KEYS: answer, lock, followers flag;
# ARGV: answer, ttl ms, token, channel, message.
_SHARE_SCRIPT = """
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  redis.call('PUBLISH', ARGV[4], ARGV[5])
end
if redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
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
# Drop every variant of one order, and any answer a leader left for followers of a variant.
# KEYS[1] index key.
_DELETE_ORDER_SCRIPT = """
local keys = redis.call('SMEMBERS', KEYS[1])
local n = 0
for _, k in ipairs(keys) do
  n = n + redis.call('DEL', k)
  redis.call('DEL', k .. ':answer')
end
redis.call('DEL', KEYS[1])
return n
"""
# Take the miss lock; a new round also removes the previous round's shared answer, so no
# follower can read an answer older than the round it joined. KEYS: lock, answer;
# ARGV: token, ttl ms. 1 if taken.
_LOCK_SCRIPT = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('DEL', KEYS[2])
  return 1
end
return 0
"""
# Move the webhook high-water mark forward; 1 if it moved. KEYS[1] mark; ARGV: mark, ttl.
_MARK_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if current and tonumber(current) >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""
# Hold (take or extend) a lease. KEYS[1] lease key; ARGV: token, ttl ms. 1 if ours now.
_HOLD_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""
# Release a lock only if we still hold it. KEYS[1] lock key; ARGV[1] token.
_UNLOCK_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisStore:
    """Entries in Redis, msgpack-encoded, expiring with Redis' own TTL."""

    layer = "redis"

    def __init__(
        self,
        client: Redis | RedisCluster,
        decoders: Decoders,
        *,
        timeout: float,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._client = client
        self._pipe = AutoPipeline(client, timeout=timeout, on_batch=on_batch)
        self._decode = decoders.entry.decode
        self._encode = decoders.entry_encoder.encode
        # Cluster only: slots whose node just failed are skipped for a moment. Every command
        # sent to a dead master makes redis-py refresh the topology and drop connections,
        # which under load disrupts lookups on the healthy masters too.
        self._cluster = isinstance(client, RedisCluster)
        self._slot_down_until: dict[int, float] = {}

    async def _call(self, *args: Any, key: str) -> Any:
        slot = key_slot(key.encode()) if self._cluster else 0
        if self._cluster and self._slot_down_until:
            until = self._slot_down_until.get(slot)
            if until is not None:
                if time.monotonic() < until:
                    raise CacheUnavailable("slot recently failed")
                del self._slot_down_until[slot]
        try:
            return await self._pipe.call(*args)
        except RedisCommandError as exc:
            if self._cluster:
                self._slot_down_until[slot] = time.monotonic() + _SLOT_PAUSE_SECONDS
            raise CacheUnavailable(exc.reason) from exc

    async def _script(self, script: str, keys: Sequence[str], *args: Any) -> Any:
        # EVAL with the text (not EVALSHA): survives a Redis restart that forgot the scripts;
        # Redis caches the compiled script by its hash anyway.
        return await self._call("EVAL", script, len(keys), *keys, *args, key=keys[0])

    async def get(self, key: str) -> CachedEntry | None:
        raw = await self._call("GET", key, key=key)
        if not isinstance(raw, bytes):  # decode_responses is off, so None or bytes
            return None
        try:
            return self._decode(raw)
        except msgspec.DecodeError:
            # Written by another build, or damaged: not an answer we can vouch for.
            return None

    async def set(self, key: str, entry: CachedEntry, ttl: int) -> None:
        index = _base_of(key) + ":variants"
        await self._script(_SET_SCRIPT, [key, index], self._encode(entry), ttl)

    async def delete(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        return int(await self._call("DEL", *keys, key=keys[0]))

    async def delete_order(self, base: str) -> int:
        return int(await self._script(_DELETE_ORDER_SCRIPT, [base + ":variants"]))

    async def advance_mark(self, base: str, mark: float, ttl: int) -> bool:
        return bool(await self._script(_MARK_SCRIPT, [base + ":webhook-mark"], repr(mark), ttl))

    async def try_lock(self, key: str, answer_key: str, token: str, ttl_ms: int) -> bool:
        return bool(await self._script(_LOCK_SCRIPT, [key, answer_key], token, ttl_ms))

    async def flag(self, key: str, ttl_ms: int) -> None:
        await self._call("SET", key, b"1", "PX", ttl_ms, key=key)

    async def hold(self, key: str, token: str, ttl_ms: int) -> bool:
        return bool(await self._script(_HOLD_SCRIPT, [key], token, ttl_ms))

    async def unlock(self, key: str, token: str) -> None:
        await self._script(_UNLOCK_SCRIPT, [key], token)

    async def share(
        self,
        *,
        answer_key: str,
        lock_key: str,
        followers_key: str,
        entry: CachedEntry,
        ttl_ms: int,
        token: str,
        channel: str,
        message: bytes,
    ) -> None:
        await self._script(
            _SHARE_SCRIPT,
            [answer_key, lock_key, followers_key],
            self._encode(entry),
            ttl_ms,
            token,
            channel,
            message,
        )

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(1.0):
                return bool(await self._client.ping())
        except Exception:  # any client failure means "not reachable" here
            return False

    async def close(self) -> None:
        await self._pipe.close()
