"""The read-through order service: cache, then one shared upstream call per key, then policy.

A read walks: `lookup` (the cache; a fresh entry is the answer) -> `fetch` (join or start the
in-flight upstream read for its key) -> Juspay's answer, judged once by the caching policy
-> one entry built from it -> a fenced save. Every caller waiting on the same read gets its
answer, cacheable or not, error or not. `lookup` returns a `Miss` for anything it cannot
answer, so a caller can record the cache result (and apply its own admission) before the
upstream call; `get` does both steps for callers that need neither.

Who may share a read in flight (so nobody is answered with a status from before an
invalidation they could have known about):
- a plain read joins a read only if both saw the order in the same generation (no
  invalidation came in between); when Redis could not tell, only a read younger than
  `_BLIND_JOIN_SECONDS`, the bound the contract allows for replicas to forget;
- a no-cache read joins only a read that started after the no-cache request arrived.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from proxy.cache.coalesce import ReplicaCoalescer
from proxy.cache.entries import CachedEntry, new_entry
from proxy.cache.facade import Fence, OrderCache
from proxy.cache.keys import KeySchema, base_of
from proxy.cache.memory import Fence as LocalFence
from proxy.cache.redis import CacheUnavailable, Saved
from proxy.core import lowerbound, policy
from proxy.core.errors import (
    CacheUnavailableError,
    Overloaded,
    UpstreamBadBody,
    UpstreamError,
)
from proxy.core.followups import LAGGING, FollowUps
from proxy.core.models import OrderStatusView
from proxy.core.reads import CacheResult, Miss, OrderAnswer, OrderQuery, fresh
from proxy.core.state import fingerprint
from proxy.core.tasks import BackgroundTasks
from proxy.observe import tracing
from proxy.observe.metrics import Metrics
from proxy.upstream.client import JuspayClient, UpstreamCall

# The read types live in reads.py; they are named here too, where callers meet them.
__all__ = [
    "CacheResult",
    "Miss",
    "OrderAnswer",
    "OrderQuery",
    "OrderService",
    "ServiceOptions",
    "fresh",
]

log = structlog.get_logger("proxy.orders")

# A miss whose Redis lookup failed cannot compare generations; it joins only a read this
# young (an invalidation acknowledged elsewhere is then at most this old when it is served).
_BLIND_JOIN_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class _Fetched:
    """What one upstream read produced, shared by every caller that waited on it."""

    entry: CachedEntry
    # None when another replica made the call and shared its answer.
    upstream_status: int | None
    upstream_elapsed: float | None
    stored: bool = False


@dataclass(eq=False, slots=True)
class _Flight:
    """An upstream read in flight for one key, and what decides who may share it."""

    task: asyncio.Task[_Fetched]
    # What its creator's lookup saw: ("redis", generation) or ("memory", fence); None when
    # the lookup failed or was skipped (no-cache).
    seen: tuple[str, object] | None
    local: LocalFence
    started: float


@dataclass(frozen=True, slots=True)
class ServiceOptions:
    """The few settings the service itself needs."""

    default_version: str
    policy: policy.CachePolicy
    stale_if_error_seconds: int
    # Share of cache hits re-read from Juspay in the background to measure staleness.
    verify_sample_rate: float = 0.0


class OrderService:
    """Order reads through the cache and Juspay, invalidations, and their background reads."""

    def __init__(
        self,
        cache: OrderCache,
        upstream: JuspayClient,
        keys: KeySchema,
        options: ServiceOptions,
        metrics: Metrics,
        *,
        decode_view: Callable[[bytes], OrderStatusView],
        background: BackgroundTasks,
        replicas: ReplicaCoalescer | None = None,
        clock: Callable[[], float] = time.time,
        sample: Callable[[], float] = random.random,
    ) -> None:
        self._cache = cache
        self._upstream = upstream
        self._keys = keys
        self._options = options
        self._policy = options.policy
        self._metrics = metrics
        self.background = background
        self._replicas = replicas
        self._clock = clock
        self._calls_saved = metrics.calls_saved
        self._inflight: dict[str, _Flight] = {}
        # The reads it makes on its own: refreshes, lagging re-reads, the verification sample.
        self.followups = FollowUps(
            self.get,
            self.key,
            background,
            metrics,
            decode_view=decode_view,
            clock=clock,
            sample=sample,
            verify_sample_rate=options.verify_sample_rate,
        )
        # Every read in flight, also older ones a newer read replaced in _inflight.
        self._tasks: set[asyncio.Task[_Fetched]] = set()

    def key(self, query: OrderQuery) -> str:
        return self._keys.entry(
            query.merchant_id,
            query.order_id,
            query.version,
            query.full_gateway_response,
            query.txn_uuid,
        )

    def base(self, merchant_id: str, order_id: str) -> str:
        return self._keys.base(merchant_id, order_id)

    async def get(self, query: OrderQuery) -> OrderAnswer:
        """The answer for one order: `lookup`, then `fetch` if the cache could not answer."""
        found = await self.lookup(query)
        return found if isinstance(found, OrderAnswer) else await self.fetch(found)

    async def lookup(self, query: OrderQuery) -> OrderAnswer | Miss:
        """The cache's answer (a hit), or a Miss saying why there is none; nothing upstream."""
        key = self.key(query)
        if query.no_cache:
            return Miss(key, query, CacheResult.BYPASS)
        # The hot path: a fresh entry in memory is answered without awaiting anything.
        entry = self._cache.peek(key)
        if entry is not None and self._clock() < entry.fresh_until:
            return self._hit(query, entry)
        entry, seen, failed = await self._cached(key, entry)
        if entry is not None and self._clock() < entry.fresh_until:
            return self._hit(query, entry)
        # An entry past its freshness is kept only for stale-if-error (final entries, see _read).
        return Miss(key, query, CacheResult.ERROR if failed else CacheResult.MISS, seen, entry)

    async def fetch(
        self, miss: Miss, admit: Callable[[], Awaitable[None]] | None = None
    ) -> OrderAnswer:
        """The answer from Juspay for what `lookup` could not answer: one read per key shared
        by whoever may share it, or a stale final entry when Juspay fails. `admit` (the
        caller's upstream rate limit) is asked only when this caller starts a read of its own:
        joining a read in flight costs Juspay nothing."""
        key, query = miss.key, miss.query
        loop = asyncio.get_running_loop()
        flight = self._inflight.get(key)
        coalesced = flight is not None and self._may_join(
            flight, query, key, miss.seen, loop.time()
        )
        if not coalesced and admit is not None:
            await admit()
            # A read may have started while the limit was checked.
            flight = self._inflight.get(key)
            coalesced = flight is not None and self._may_join(
                flight, query, key, miss.seen, loop.time()
            )
        if flight is None or not coalesced:
            local = self._cache.local_fence(key)
            task = asyncio.create_task(
                self._fetch(key, query, local), name=f"fetch:{query.order_id}"
            )
            flight = _Flight(task, miss.seen, local, loop.time())
            # The newest read is the one later requests may join; an older one still answers
            # its own waiters.
            self._inflight[key] = flight
            task.add_done_callback(self._forget(key, flight))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self._metrics.coalesced.inc()
            self._calls_saved.inc()
        # shield: a caller that goes away must not cancel the read others are waiting on.
        try:
            with tracing.span("coalesce.wait") if coalesced else tracing.NO_SPAN:
                fetched = await asyncio.shield(flight.task)
        except (UpstreamError, Overloaded) as exc:
            stale = miss.stale
            if stale is None or not self._may_serve_stale(stale):
                raise
            log.warning("serving_stale", error_code=exc.error_code, order_id=query.order_id)
            age = max(0, int(self._clock() - stale.fetched_at))
            return OrderAnswer(stale, CacheResult.STALE, age)
        return OrderAnswer(
            fetched.entry,
            miss.cache,
            None,
            coalesced=coalesced,
            upstream_status=fetched.upstream_status,
            upstream_elapsed=fetched.upstream_elapsed,
            stored=fetched.stored,
        )

    def _hit(self, query: OrderQuery, entry: CachedEntry) -> OrderAnswer:
        self._calls_saved.inc()
        if self.followups.verify_sample_rate > 0:
            self.followups.maybe_verify(query, entry)
        now = self._clock()
        return OrderAnswer(
            entry,
            CacheResult.HIT,
            max(0, int(now - entry.fetched_at)),
            ttl=int(entry.fresh_until - now),
        )

    async def _cached(
        self, key: str, entry: CachedEntry | None
    ) -> tuple[CachedEntry | None, tuple[str, object] | None, bool]:
        """After peek() gave `entry` (None, or kept past its freshness): the cached entry,
        what the lookup saw of the order's generation (None if it could not tell), and
        whether Redis failed."""
        cache = self._cache
        if cache.remote is None:
            return entry, ("memory", cache.local_fence(key)), False
        # (A front-layer copy never outlives its freshness by more than clock skew: ask Redis.)
        with tracing.span("redis GET", "client", **tracing.REDIS) as span:
            lookup = await cache.lookup(key)
            if span is not None:
                span.set_attribute("order_proxy.found", lookup.entry is not None)
        if lookup.failed:
            return None, None, True
        # The epoch too: a generation restored by a restarted Redis is not the one it was.
        return lookup.entry, ("redis", (lookup.generation, lookup.epoch)), False

    def _may_join(
        self,
        flight: _Flight,
        query: OrderQuery,
        key: str,
        seen: tuple[str, object] | None,
        now: float,
    ) -> bool:
        if query.no_cache:
            return query.not_before is not None and flight.started >= query.not_before
        if seen is not None:
            return flight.seen == seen
        # Redis could not tell whether the order was invalidated since this read began.
        return (
            self._cache.local_current(key, flight.local)
            and now - flight.started <= _BLIND_JOIN_SECONDS
        )

    def _forget(self, key: str, flight: _Flight) -> Callable[[asyncio.Task[_Fetched]], None]:
        def done(task: asyncio.Task[_Fetched]) -> None:
            if self._inflight.get(key) is flight:
                del self._inflight[key]
            # Mark the outcome as seen even if every waiter went away.
            if not task.cancelled():
                task.exception()

        return done

    def _may_serve_stale(self, entry: CachedEntry) -> bool:
        return (
            entry.status_class == policy.StatusClass.FINAL
            and self._clock() - entry.fresh_until <= self._options.stale_if_error_seconds
        )

    async def _fetch(self, key: str, query: OrderQuery, local: LocalFence) -> _Fetched:
        replicas = self._replicas
        if replicas is None:
            fence = await self._cache.note(key, local)
            return await self._read(key, query, fence)
        born = self._cache.now()
        started = time.time_ns()
        result = await replicas.run(
            key,
            lambda noted: self._read(
                key,
                query,
                Fence(local, born=born, floor=self._cache.local_floor(base_of(key)))
                if noted is None
                else Fence(local, noted[0], noted[1], born, noted[2]),
            ),
            lambda fetched: fetched.entry,
            may_follow=not query.no_cache,
        )
        if isinstance(result, _Fetched):
            return result
        tracing.past_span("coalesce.wait", started, **{"order_proxy.read_by": "another replica"})
        return _Fetched(result, None, None)

    async def _read(self, key: str, query: OrderQuery, fence: Fence) -> _Fetched:
        """One upstream read, the policy's one decision on it, its entry and a fenced save."""
        answer = await self._upstream.fetch(
            UpstreamCall(
                merchant_id=query.merchant_id,
                order_id=query.order_id,
                version=query.version,
                full_gateway_response=query.full_gateway_response,
                routing_id=query.routing_id,
                txn_uuid=query.txn_uuid,
            )
        )
        decision = policy.decide(answer.status, answer.view, query.order_id, self._policy)
        status_class = decision.status_class
        # The client counts the calls that failed; an answer is counted here, once judged.
        self._metrics.upstream_requests.labels(outcome=_outcome(answer.status, status_class)).inc()
        if answer.status == 200 and status_class is policy.StatusClass.INVALID:
            raise UpstreamBadBody(
                "Juspay's answer is not a JSON order"
                if answer.view is None
                else "Juspay's answer is not the order that was asked for"
            )
        self._metrics.policy_decisions.labels(
            status_class=status_class.value,
            decision="store" if decision.store else "skip",
        ).inc()
        ttl, entry_class = decision.ttl, status_class.value
        floor = lowerbound.decode(fence.floor) if fence.floor is not None else None
        if (
            floor is not None
            and query.txn_uuid is None  # one attempt's answer is not the order's state
            and answer.status == 200
            and answer.view is not None
            and lowerbound.lags(answer.view, floor)
        ):
            # Juspay's read side lags the webhook it sent: answer it, but do not store it
            # (every read goes to Juspay until it catches up), and read again in the
            # background until it shows what the webhook did.
            ttl, entry_class = 0, LAGGING
            self.followups.lagging(query, answer.view, floor)
        entry = new_entry(
            key,
            answer.status,
            answer.body,
            answer.content_type,
            order_status=(answer.view.status or "") if answer.view else "",
            status_class=entry_class,
            now=self._clock(),
            ttl=ttl,
            state=fingerprint(answer.status, answer.view),
        )
        keep = ttl
        stored = False
        if entry_class == policy.StatusClass.FINAL.value and keep > 0:
            keep += self._options.stale_if_error_seconds  # past fresh_until: only if Juspay fails
        if keep > 0 or query.no_cache:
            with tracing.span("redis SET", "client", **tracing.REDIS):
                saved = await self._cache.save(
                    key, entry, keep, fence, status_class.value, fresh=query.no_cache
                )
            if saved is Saved.CHANGED:
                self._metrics.invalidations.labels(source="refresh").inc()
            stored = ttl > 0 and saved in (Saved.STORED, Saved.CHANGED)
        return _Fetched(entry, answer.status, answer.elapsed, stored)

    # --- invalidation -----------------------------------------------------------------------
    async def invalidate(
        self,
        merchant_id: str,
        order_id: str,
        source: str,
        floor: lowerbound.Floor | None = None,
    ) -> int:
        """Drop every cached variant of one merchant's order, on every replica, and fence out
        every read of it in flight; the count of entries dropped. A webhook's `floor` (the
        least Juspay's state now is) holds the reads that follow to it, on every replica.
        Raises CacheUnavailableError when that cannot be confirmed (nothing may be
        acknowledged)."""
        encoded = lowerbound.encode(floor) if floor is not None else None
        try:
            removed = await self._cache.invalidate(self.base(merchant_id, order_id), encoded)
        except CacheUnavailable:
            # Not acknowledged: the webhook or purge is answered 5xx and retried.
            raise CacheUnavailableError(
                "the cache could not confirm the invalidation durably; nothing may be assumed"
            ) from None
        self._metrics.invalidations.labels(source=source).inc()
        self._metrics.purges.labels(source=source).inc(removed)
        return removed

    def refresh_later(self, merchant_id: str, order_id: str) -> bool:
        """Read the order's default variant from Juspay in the background (after a webhook),
        through the normal path: coalesced, fenced and policy-checked."""
        query = OrderQuery(merchant_id, order_id, self._options.default_version)
        return self.followups.refresh(query)

    async def close(self) -> None:
        """Cancel background work and upstream calls still under way (shutdown)."""
        await self.background.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


def _outcome(http_status: int, status_class: policy.StatusClass) -> str:
    """The `outcome` label of an upstream call that Juspay answered (see UPSTREAM_OUTCOMES)."""
    if http_status == 200:
        return UpstreamBadBody.outcome if status_class is policy.StatusClass.INVALID else "ok"
    return "not_found" if status_class is policy.StatusClass.NOT_FOUND else "client_error"
