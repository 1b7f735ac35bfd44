"""The Redis store: entries fenced by per-order generations, invalidation, coalescing locks.

Every write that could race an invalidation is one Lua script, so Redis applies it atomically
against the order's generation (see keys.py for the layout):

- a read notes the generation before it calls Juspay (creating one if the order has none);
- its save stores only if the generation is unchanged (otherwise it is "fenced out");
- an invalidation sets a new generation, drops every stored variant and tells every replica
  over pub/sub, in one step: once it has answered, no read that started before it can store.

Generations are random tokens, never counters: a generation that expired or was evicted and
is created again can never equal one a read noted before, so losing one only fences out
saves in flight. Entries carry the generation they were stored under and a lookup reads both
(one MGET in one slot), so an entry whose generation moved on is never served, even if the
variant index that lists it was lost.

Every command but the health ping goes through the auto-pipeline, and any Redis trouble
becomes CacheUnavailable: the facade absorbs it on reads and passes it on for invalidations.
"""

from __future__ import annotations

import asyncio
import enum
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from proxy.cache import keys, scripts
from proxy.cache.entries import CachedEntry, EntryCodec, Rejected
from proxy.cache.epoch import EpochTracker, install
from proxy.cache.pipeline import AutoPipeline, RedisCommandError

# How long a cluster slot whose node failed is skipped before one request probes it again.
_SLOT_PAUSE_SECONDS = 1.0


class CacheUnavailable(Exception):
    """The store could not be reached or answered nonsense."""


class Saved(enum.StrEnum):
    """What became of a save."""

    STORED = "stored"
    # The order was invalidated after the read noted its generation: nothing was written.
    FENCED = "fenced"
    # A fresh read found the cached answer out of date and invalidated the order first.
    CHANGED = "changed"
    # Nothing to store and nothing changed.
    UNCHANGED = "unchanged"


class Role(enum.IntEnum):
    """What the lock script made of a read that missed."""

    FOLLOW = 0
    LEAD = 1
    # A leader of this generation already shared its answer: take it.
    SHARED = 2


def new_generation() -> str:
    return uuid.uuid4().hex


class RedisStore:
    """Entries in Redis, msgpack-encoded, expiring with Redis' own TTL."""

    def __init__(
        self,
        client: Redis | RedisCluster,
        *,
        channel: str,
        timeout: float,
        generation_ttl: int,
        ack_replicas: int = -1,
        ack_timeout: float = 0.5,
        on_batch: Callable[[int], None] | None = None,
        on_rejected: Callable[[Rejected], None] | None = None,
    ) -> None:
        self._client = client
        self._pipe = AutoPipeline(client, timeout=timeout, on_batch=on_batch)
        self._codec = EntryCodec()
        self._channel = channel
        self._timeout = timeout
        # How long a generation outlives its last use (saves extend it to the entry's TTL).
        self._gen_ttl = generation_ttl
        # Replicas an invalidation must reach before it is acknowledged (-1: one if the
        # primary has any, see _replicas_to_wait), and how long to wait for them.
        self._ack_replicas = ack_replicas
        self._ack_timeout_ms = max(1, int(ack_timeout * 1000))
        self._on_rejected = on_rejected
        # Cluster only: slots whose node just failed are skipped for a moment. Every command
        # sent to a dead master makes redis-py refresh the topology and drop connections,
        # which under load disrupts lookups on the healthy masters too.
        self._cluster = isinstance(client, RedisCluster)
        self._slot_down_until: dict[int, float] = {}
        # Every connection reports its server's epoch before it carries a command.
        self.epochs = EpochTracker(per_node=self._cluster)
        install(client, self.epochs)

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

    async def _script(self, script: str, keys_: Sequence[str], *args: Any) -> Any:
        # EVAL with the text (not EVALSHA): survives a Redis restart that forgot the scripts;
        # Redis caches the compiled script by its hash anyway.
        return await self._call("EVAL", script, len(keys_), *keys_, *args, key=keys_[0])

    def _node(self, key: str) -> str:
        """The tracker's name for the server holding `key`."""
        if not self._cluster:
            return ""
        assert isinstance(self._client, RedisCluster)
        node = self._client.get_node_from_key(key)
        return node.name if node is not None else "?"

    async def _epoch(self, key: str) -> str | None:
        """The epoch of the server holding `key`, as learnt on connecting to it. Only a client
        whose connections were opened before this store existed may need to ask."""
        node = self._node(key)
        epoch = self.epochs.current(node)
        if epoch is None:
            server = await self._call("INFO", "server", key=key)
            replication = await self._call("INFO", "replication", key=key)
            if self.epochs.current(node) is None:
                try:
                    self.epochs.record(node, _bytes(server), _bytes(replication))
                except ValueError as exc:
                    raise CacheUnavailable(str(exc)) from None
            epoch = self.epochs.current(node)
        return epoch

    def _checked(self, raw: object, key: str, epoch: str | None) -> CachedEntry | None:
        if not isinstance(raw, bytes):  # decode_responses is off, so None or bytes
            return None
        entry = self._codec.decode(raw, key)
        if not isinstance(entry, Rejected) and entry.epoch != epoch:
            # Fenced on a primary that has since restarted or been replaced: whatever
            # invalidated it since may be lost with that primary's last writes.
            entry = Rejected.EPOCH
        if isinstance(entry, Rejected):
            if self._on_rejected is not None:
                self._on_rejected(entry)
            return None
        return entry

    # --- reads ----------------------------------------------------------------------------
    async def lookup(self, key: str) -> tuple[CachedEntry | None, str | None, str | None]:
        """The entry stored for `key` (if it is valid under the order's current generation
        and the primary's current epoch), that generation (None if the order has none yet)
        and the epoch."""
        raw, gen = await self._call("MGET", key, keys.gen_key(keys.base_of(key)), key=key)
        # Read after the reply: a connection opened since (to a restarted or promoted
        # server) has reported the new epoch before carrying any command.
        epoch = await self._epoch(key)
        generation = gen.decode() if isinstance(gen, bytes) else None
        entry = self._checked(raw, key, epoch)
        if entry is not None and entry.generation != generation:
            entry = None  # stored before the last invalidation (its index may have been lost)
        return entry, generation, epoch

    async def get_shared(self, key: str) -> CachedEntry | None:
        """A leader's shared answer for `key` (followers on other replicas read it)."""
        raw = await self._call("GET", keys.answer_key(key), key=key)
        if not isinstance(raw, bytes):
            return None
        return self._checked(raw.partition(b"|")[2], key, await self._epoch(key))

    async def note(self, base: str) -> tuple[str, str, bytes | None]:
        """The order's generation now (created if absent), the primary's epoch and the last
        webhook's lower bound (if any): a read notes them before it calls Juspay."""
        gen, epoch, floor = await self._script(
            scripts.NOTE,
            [keys.gen_key(base), keys.floor_key(base)],
            new_generation(),
            self._gen_ttl,
        )
        return _text(gen), _text(epoch), _optional(floor)

    # --- writes ---------------------------------------------------------------------------
    async def save(self, key: str, entry: CachedEntry, ttl: int, generation: str) -> Saved:
        base = keys.base_of(key)
        stored = await self._script(
            scripts.SAVE,
            [key, keys.variants_key(base), keys.gen_key(base)],
            self._codec.encode(entry),
            ttl,
            generation,
            _indexed(entry),
        )
        return Saved.STORED if stored == 1 else Saved.FENCED

    async def replace(
        self, key: str, entry: CachedEntry, ttl: int, generation: str, message: bytes
    ) -> tuple[Saved, CachedEntry]:
        """Save a fresh read's answer (ttl 0: nothing to store), invalidating the order first
        if any stored variant disagrees with it. Returns the outcome and the entry as stored."""
        base = keys.base_of(key)
        fresh = new_generation()
        stored = msgspec.structs.replace(entry, generation=fresh)
        result = await self._script(
            scripts.REPLACE,
            [key, keys.variants_key(base), keys.gen_key(base)],
            self._codec.encode(stored) if ttl > 0 else b"",
            max(ttl, 1),
            generation,
            _indexed(entry),
            fresh,
            self._gen_ttl,
            self._channel,
            message,
            entry.state,
        )
        outcome = {0: Saved.FENCED, 1: Saved.STORED, 2: Saved.CHANGED}.get(
            int(result), Saved.UNCHANGED
        )
        return outcome, stored

    async def invalidate(
        self, base: str, message: bytes, floor: bytes = b"", floor_ttl: int = 120
    ) -> int:
        """Move the order to a new generation, drop every variant, tell every replica; the
        count of entries dropped. Once this returns, no earlier read can store, and the
        change has reached the replicas the acknowledgement waits for (CacheUnavailable when
        it has not: it may then be lost in a failover, so it must not be acknowledged)."""
        keys_ = [keys.gen_key(base), keys.variants_key(base), keys.floor_key(base)]
        args = (new_generation(), self._gen_ttl, self._channel, message, floor, floor_ttl)
        replicas = self._replicas_to_wait(base)
        if replicas == 0:
            return int(await self._script(scripts.INVALIDATE, keys_, *args))
        command = ("EVAL", scripts.INVALIDATE, len(keys_), *keys_, *args)
        wait = ("WAIT", replicas, self._ack_timeout_ms)
        try:
            async with asyncio.timeout(self._timeout + self._ack_timeout_ms / 1000):
                dropped, acked = await self._on_one_connection(keys_[0], command, wait)
        except CacheUnavailable:
            raise
        except Exception as exc:  # any client failure: not confirmed
            raise CacheUnavailable(type(exc).__name__) from exc
        if isinstance(dropped, Exception) or isinstance(acked, Exception):
            raise CacheUnavailable("invalidation failed")
        if int(acked) < replicas:
            raise CacheUnavailable(f"{int(acked)} of {replicas} replicas confirmed in time")
        return int(dropped)

    def _replicas_to_wait(self, base: str) -> int:
        if self._ack_replicas >= 0:
            return self._ack_replicas
        return min(1, self.epochs.replicas(self._node(keys.gen_key(base))))

    async def _on_one_connection(self, key: str, *commands: tuple[Any, ...]) -> list[Any]:
        """Send `commands` in order on one connection (WAIT counts that connection's writes)."""
        client = self._client
        if not isinstance(client, RedisCluster):
            pipe = client.pipeline(transaction=False)
            for command in commands:
                pipe.execute_command(*command)
            results: list[Any] = await pipe.execute(raise_on_error=False)
            return results
        node = client.get_node_from_key(key)
        if node is None:
            raise CacheUnavailable("no node for the key")
        connection = node.acquire_connection()
        try:
            await connection.send_packed_command(connection.pack_commands(commands))
            return [await connection.read_response() for _ in commands]
        except BaseException:
            await connection.disconnect()
            raise
        finally:
            node.release(connection)

    # --- coalescing and leases ------------------------------------------------------------
    async def lock(
        self, key: str, token: str, ttl_ms: int, *, rejoining: bool = False
    ) -> tuple[Role, str, str, bytes | None]:
        """Lead the upstream read for `key`, follow the one under way, or (`rejoining`, after
        a leader failed) take the answer another leader shared; the generation, the epoch and
        the last webhook's lower bound."""
        base = keys.base_of(key)
        role, gen, epoch, floor = await self._script(
            scripts.LOCK,
            [keys.lock_key(key), keys.answer_key(key), keys.gen_key(base), keys.floor_key(base)],
            token,
            ttl_ms,
            new_generation(),
            self._gen_ttl,
            "1" if rejoining else "0",
        )
        return Role(int(role)), _text(gen), _text(epoch), _optional(floor)

    async def flag_follower(self, key: str, ttl_ms: int) -> None:
        await self._call("SET", keys.followers_key(key), b"1", "PX", ttl_ms, key=key)

    async def share(
        self,
        key: str,
        entry: CachedEntry,
        *,
        token: str,
        generation: str,
        ttl_ms: int,
        message: bytes,
    ) -> None:
        await self._script(
            scripts.SHARE,
            [keys.answer_key(key), keys.lock_key(key), keys.followers_key(key)],
            generation.encode() + b"|" + self._codec.encode(entry),
            ttl_ms,
            f"{token}|{generation}",
            self._channel,
            message,
        )

    async def unlock(self, key: str, token: str) -> None:
        await self._script(scripts.UNLOCK, [keys.lock_key(key)], token)

    async def hold(self, key: str, token: str, ttl_ms: int) -> bool:
        return bool(await self._script(scripts.HOLD, [key], token, ttl_ms))

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(1.0):
                return bool(await self._client.ping())
        except Exception:  # any client failure means "not reachable" here
            return False

    async def close(self) -> None:
        await self._pipe.close()


def _indexed(entry: CachedEntry) -> str:
    """What the variant index holds for an entry: its state and its etag."""
    return f"{entry.state}|{entry.etag}"


def _optional(value: object) -> bytes | None:
    return value if isinstance(value, bytes) else None


def _bytes(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    raise CacheUnavailable(f"unexpected reply {type(value).__name__}")


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, str):
        return value
    raise CacheUnavailable(f"unexpected reply {type(value).__name__}")
