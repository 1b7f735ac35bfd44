"""The read-through order service: cache, then one shared upstream call per key, then policy.

A request walks: cache lookup -> (miss) join or start the single in-flight upstream call for
its key -> the caching policy decides whether and how long to store Juspay's answer. Every
caller waiting on the same key gets the leader's answer, cacheable or not, error or not.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from proxy import policy
from proxy.bus import EventBus
from proxy.cache import OrderCache
from proxy.coalesce import ReplicaCoalescer
from proxy.errors import CacheUnavailableError, Overloaded, UpstreamError
from proxy.metrics import Metrics
from proxy.models import CachedEntry, OrderStatusView
from proxy.settings import Settings
from proxy.stores import entry_key, order_base
from proxy.upstream import JuspayClient, UpstreamCall

log = structlog.get_logger("proxy.orders")

# Bus event: every cached variant of an order (the key's base) changed or was dropped.
INVALIDATED = "invalidated"


class CacheResult(enum.StrEnum):
    """How an answer was produced; the value is the metric label, `header` the X-Cache value."""

    HIT = "hit"
    MISS = "miss"
    BYPASS = "bypass"
    STALE = "stale"
    # The cache could not be asked (Redis down); the caller sees MISS.
    ERROR = "error"

    @property
    def header(self) -> str:
        return "MISS" if self is CacheResult.ERROR else self.value.upper()


@dataclass(frozen=True, slots=True)
class OrderQuery:
    """A validated request for one order, as the caller asked for it."""

    merchant_id: str
    order_id: str
    version: str
    full_gateway_response: bool = False
    routing_id: str | None = None
    no_cache: bool = False


@dataclass(frozen=True, slots=True)
class OrderAnswer:
    entry: CachedEntry
    cache: CacheResult
    age: int | None
    coalesced: bool = False
    upstream_status: int | None = None
    upstream_elapsed: float | None = None


@dataclass(frozen=True, slots=True)
class _Fetched:
    """What one upstream call produced, shared by every caller that waited on it."""

    entry: CachedEntry
    # None when another replica made the call and shared its answer.
    upstream_status: int | None
    upstream_elapsed: float | None


def etag_for(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


class OrderService:
    def __init__(
        self,
        cache: OrderCache,
        upstream: JuspayClient,
        settings: Settings,
        metrics: Metrics,
        *,
        replicas: ReplicaCoalescer | None = None,
        bus: EventBus | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._cache = cache
        self._bus = bus
        self._default_version = settings.upstream.api_version
        self._upstream = upstream
        self._replicas = replicas
        self._policy = settings.cache.policy
        self._stale_seconds = settings.cache.stale_if_error_seconds
        self._prefix = settings.redis.key_prefix
        self._metrics = metrics
        self._calls_saved = metrics.calls_saved
        self._clock = clock
        self._inflight: dict[str, asyncio.Task[_Fetched]] = {}

    @property
    def cache(self) -> OrderCache:
        return self._cache

    @property
    def bus(self) -> EventBus | None:
        return self._bus

    def key(self, query: OrderQuery) -> str:
        return entry_key(
            self._prefix,
            query.merchant_id,
            query.order_id,
            query.version,
            query.full_gateway_response,
        )

    async def get(
        self, query: OrderQuery, on_result: Callable[[CacheResult], None] | None = None
    ) -> OrderAnswer:
        """The answer for one order. `on_result` hears the cache result as soon as it is
        known, so a miss whose upstream call then fails is still recorded as a miss."""
        key = self.key(query)
        result = CacheResult.BYPASS
        stale: CachedEntry | None = None
        if not query.no_cache:
            cache = self._cache
            entry = cache.peek(key)
            failed = False
            if entry is None and cache.remote is not None:
                lookup = await cache.lookup(key)
                entry, failed = lookup.entry, lookup.failed
            if entry is not None:
                now = self._clock()
                if now < entry.fresh_until:
                    self._calls_saved.inc()
                    return OrderAnswer(entry, CacheResult.HIT, max(0, int(now - entry.fetched_at)))
                # Kept past its TTL only for stale-if-error (final entries only, see _save).
                stale = entry
            result = CacheResult.ERROR if failed else CacheResult.MISS
        if on_result is not None:
            on_result(result)

        task = self._inflight.get(key)
        coalesced = task is not None
        if task is None:
            task = asyncio.create_task(self._fetch(key, query), name=f"fetch:{query.order_id}")
            self._inflight[key] = task
            task.add_done_callback(self._forget(key))
        else:
            self._metrics.coalesced.inc()
            self._metrics.calls_saved.inc()
        # shield: a caller that goes away must not cancel the call others are waiting on.
        try:
            fetched = await asyncio.shield(task)
        except (UpstreamError, Overloaded) as exc:
            if stale is None or not self._may_serve_stale(stale):
                raise
            log.warning("serving_stale", error_code=exc.error_code, order_id=query.order_id)
            age = max(0, int(self._clock() - stale.fetched_at))
            return OrderAnswer(stale, CacheResult.STALE, age)
        return OrderAnswer(
            fetched.entry,
            result,
            None,
            coalesced=coalesced,
            upstream_status=fetched.upstream_status,
            upstream_elapsed=fetched.upstream_elapsed,
        )

    def _forget(self, key: str) -> Callable[[asyncio.Task[_Fetched]], None]:
        def done(task: asyncio.Task[_Fetched]) -> None:
            if self._inflight.get(key) is task:
                del self._inflight[key]
            # Mark the outcome as seen even if every waiter went away.
            if not task.cancelled():
                task.exception()

        return done

    def _may_serve_stale(self, entry: CachedEntry) -> bool:
        return (
            entry.status_class == policy.StatusClass.FINAL
            and self._clock() - entry.fresh_until <= self._stale_seconds
        )

    async def _fetch(self, key: str, query: OrderQuery) -> _Fetched:
        if self._replicas is None:
            return await self._fetch_upstream(key, query)
        result = await self._replicas.run(
            key, lambda: self._fetch_upstream(key, query), lambda fetched: fetched.entry
        )
        if isinstance(result, _Fetched):
            return result
        return _Fetched(result, None, None)

    async def _fetch_upstream(self, key: str, query: OrderQuery) -> _Fetched:
        answer = await self._upstream.fetch(
            UpstreamCall(
                merchant_id=query.merchant_id,
                order_id=query.order_id,
                version=query.version,
                full_gateway_response=query.full_gateway_response,
                routing_id=query.routing_id,
            )
        )
        decision = policy.decide(answer.status, answer.view, query.order_id, self._policy)
        self._metrics.policy_decisions.labels(
            status_class=decision.status_class.value,
            decision="store" if decision.store else "skip",
        ).inc()
        now = self._clock()
        entry = CachedEntry(
            status_code=answer.status,
            body=answer.body,
            content_type=answer.content_type,
            etag=etag_for(answer.body),
            fetched_at=now,
            fresh_until=now + decision.ttl,
            order_status=(answer.view.status or "") if answer.view else "",
            status_class=decision.status_class.value,
        )
        if decision.store:
            await self._save(key, entry, decision)
        return _Fetched(entry, answer.status, answer.elapsed)

    async def _save(self, key: str, entry: CachedEntry, decision: policy.Decision) -> None:
        keep = decision.ttl
        if decision.status_class is policy.StatusClass.FINAL:
            keep += self._stale_seconds  # past fresh_until it only answers when Juspay fails
        await self._cache.save(key, entry, keep, decision.status_class.value)

    def base(self, merchant_id: str, order_id: str) -> str:
        return order_base(self._prefix, merchant_id, order_id)

    async def purge(self, merchant_id: str, order_id: str) -> int:
        """Drop every cached variant of one merchant's order; the count of entries dropped."""
        base = self.base(merchant_id, order_id)
        removed = await self._cache.drop_order(base)
        if removed is None:
            raise CacheUnavailableError("the cache could not be reached; nothing was purged")
        self._metrics.purges.labels(source="purge").inc(removed)
        await self._announce(base)
        return removed

    async def absorb_webhook(
        self,
        merchant_id: str,
        order_id: str,
        body: bytes,
        view: OrderStatusView,
        event_time: float | None,
    ) -> str:
        """Apply the order in a Juspay webhook: refresh or drop its entries. Returns what
        happened: "refreshed", "dropped" or "stale_event" (older than one already applied).

        Only an event newer than every earlier one for this order may write an entry, so a
        replayed old event (Juspay retries for hours) never overwrites a newer state.
        """
        base = self.base(merchant_id, order_id)
        newer: bool | None = None
        if event_time is not None:
            mark_ttl = max(self._policy.final_ttl, 3600)
            newer = await self._cache.advance_mark(base, event_time, mark_ttl)
            if newer is False:
                return "stale_event"
        removed = await self._cache.drop_order(base) or 0
        self._metrics.purges.labels(source="webhook").inc(removed)
        decision = policy.decide(200, view, order_id, self._policy)
        self._metrics.policy_decisions.labels(
            status_class=decision.status_class.value,
            decision="store" if decision.store and newer else "skip",
        ).inc()
        result = "dropped"
        if newer and decision.store:
            now = self._clock()
            entry = CachedEntry(
                status_code=200,
                body=body,
                content_type="application/json",
                etag=etag_for(body),
                fetched_at=now,
                fresh_until=now + decision.ttl,
                order_status=view.status or "",
                status_class=decision.status_class.value,
            )
            key = entry_key(self._prefix, merchant_id, order_id, self._default_version, False)
            await self._save(key, entry, decision)
            result = "refreshed"
        await self._announce(base)
        return result

    async def _announce(self, base: str) -> None:
        """Tell every replica (this one too) that an order's entries changed."""
        if self._bus is not None:
            await self._bus.publish(INVALIDATED, base)

    async def close(self) -> None:
        """Cancel upstream calls still under way (shutdown)."""
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
