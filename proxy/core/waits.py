"""Waiting until an order is final: one polling schedule per order, however many waiters.

Callers poll payments until they settle (Juspay tells them to keep polling PENDING_VBV and
AUTHORIZING). With `?wait=N` they hand that job to the proxy: all waiters for one order key
in this process share one watch, and the watches of all replicas share one polling schedule
(a short Redis lease decides who polls; the others listen). Polls back off between attempts
and go through the normal read path, so they are coalesced, cached and bulkheaded like any
other read. A webhook for the order, or a peer replica seeing it settle, wakes every waiter
at once. A caller that goes away only removes itself; the watch ends with its last waiter.

Bounded without a key: each poll is paid for from the upstream rate limit of one of the
watch's waiters (in turn; a poll none of them can pay for is skipped until the next tick),
so waiting never reads Juspay more often than the callers could themselves. The `max_waiters`
slots are shared fairly between clients: when they are all taken, a client holding fewer
than the biggest holder takes that holder's oldest slot (its caller gets the latest answer
early, `X-Wait: timeout`), so one client can hold the pool only while nobody else wants it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import msgspec
import structlog

from proxy.cache.bus import INVALIDATED, EventBus
from proxy.cache.keys import poll_key
from proxy.cache.redis import CacheUnavailable, RedisStore
from proxy.config.settings import WaitSettings
from proxy.core.errors import Overloaded, ProxyError, RateLimited
from proxy.core.followups import LAGGING
from proxy.core.orders import CacheResult, OrderAnswer, OrderQuery, OrderService, fresh
from proxy.core.policy import StatusClass
from proxy.observe.metrics import Metrics

log = structlog.get_logger("proxy.waits")

# Bus event: a replica saw this order (its key base) settle.
SETTLED = "settled"
# Statuses a waiter keeps waiting through; anything else ends the wait. An answer that lags
# the order's last webhook (LAGGING) is about to change too: Juspay is catching up.
_MOVING = frozenset({StatusClass.IN_PROGRESS.value, StatusClass.UNKNOWN.value, LAGGING})


# Charges one upstream read to a caller's rate limit, or raises RateLimited.
Admit = Callable[[], Awaitable[None]]


def is_settled(answer: OrderAnswer) -> bool:
    return answer.entry.status_class not in _MOVING


def _newer(a: OrderAnswer, b: OrderAnswer) -> bool:
    """Whether `a` was read from Juspay after `b`."""
    return a.entry.fetched_at > b.entry.fetched_at


@dataclass(eq=False)
class _Waiter:
    client: str
    admit: Admit | None  # None: the caller has no upstream limit
    preempted: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    gone: bool = False


@dataclass(eq=False)
class _Watch:
    key: str
    base: str
    query: OrderQuery
    latest: OrderAnswer
    waiters: list[_Waiter] = field(default_factory=list)
    turns: itertools.count[int] = field(default_factory=itertools.count)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    wake_cause: str = ""
    settled: asyncio.Future[OrderAnswer] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    task: asyncio.Task[None] | None = None


class WaitRegistry:
    def __init__(
        self,
        service: OrderService,
        metrics: Metrics,
        settings: WaitSettings,
        *,
        store: RedisStore | None = None,
        bus: EventBus | None = None,
    ) -> None:
        self._service = service
        self._metrics = metrics
        self._settings = settings
        self._store = store
        self._bus = bus
        self._watches: dict[str, _Watch] = {}
        self._by_base: dict[str, set[_Watch]] = defaultdict(set)
        self._waiters = 0
        self._by_client: dict[str, list[_Waiter]] = {}  # oldest first
        self._token = uuid.uuid4().hex
        metrics.gauge_function(metrics.waiters, lambda: self._waiters)
        if bus is not None:
            bus.listen(INVALIDATED, lambda base: self._wake(base, "webhook"))
            bus.listen(SETTLED, lambda base: self._wake(base, "peer"))

    @property
    def settings(self) -> WaitSettings:
        return self._settings

    @property
    def waiting(self) -> int:
        """Callers waiting now."""
        return self._waiters

    @property
    def watching(self) -> int:
        """Orders with a polling schedule in this process now."""
        return len(self._watches)

    def _wake(self, base: str, cause: str) -> None:
        for watch in self._by_base.get(base, ()):
            if not watch.wake.is_set():
                watch.wake_cause = cause
                watch.wake.set()

    async def wait(
        self,
        query: OrderQuery,
        first: OrderAnswer,
        seconds: float,
        *,
        client: str = "",
        admit: Admit | None = None,
    ) -> tuple[OrderAnswer, bool]:
        """The answer once the order settles, or the latest one when `seconds` pass (or the
        slot goes to a client holding fewer). `client` names the caller ("" anonymous);
        `admit` charges a poll to its upstream rate limit."""
        if self._waiters >= self._settings.max_waiters and not self._make_room(client):
            self._metrics.wait_results.labels(result="shed").inc()
            raise Overloaded("too many callers are waiting for orders", retry_after=1)
        key = self._service.key(query)
        watch = self._watches.get(key)
        if watch is None:
            watch = _Watch(key, self._service.base(query.merchant_id, query.order_id), query, first)
            self._watches[key] = watch
            self._by_base[watch.base].add(watch)
            watch.task = asyncio.create_task(self._run(watch), name=f"watch:{query.order_id}")
        else:
            self._metrics.wait_polls_saved.inc()  # joined a schedule someone else started
            if _newer(first, watch.latest):
                watch.latest = first  # this caller's own read is the latest news
        waiter = _Waiter(client, admit)
        watch.waiters.append(waiter)
        self._by_client.setdefault(client, []).append(waiter)
        self._waiters += 1
        try:
            # asyncio.wait never cancels what it waits for: the watch outlives this caller.
            await asyncio.wait(
                (watch.settled, waiter.preempted),
                timeout=seconds,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            self._leave(waiter)
            if waiter in watch.waiters:
                watch.waiters.remove(waiter)
            if not watch.waiters:
                self._end(watch)
        if watch.settled.done() and not watch.settled.cancelled():
            self._metrics.wait_results.labels(result="final").inc()
            return watch.settled.result(), True
        result = "preempted" if waiter.preempted.done() else "timeout"
        self._metrics.wait_results.labels(result=result).inc()
        # Never older than what this caller's own request read (a no-cache read that joined
        # a schedule whose last poll came before it).
        return (first if _newer(first, watch.latest) else watch.latest), False

    def _leave(self, waiter: _Waiter) -> None:
        """Give up a waiter's slot (once)."""
        if waiter.gone:
            return
        waiter.gone = True
        self._waiters -= 1
        mine = self._by_client[waiter.client]
        mine.remove(waiter)
        if not mine:
            del self._by_client[waiter.client]

    def _make_room(self, client: str) -> bool:
        """With every slot taken: free the oldest slot of the client holding the most, if it
        holds more than one more than `client` does (its share); else there is no room."""
        mine = len(self._by_client.get(client, ()))
        biggest = max(self._by_client.values(), key=len, default=[])
        if len(biggest) <= mine + 1:
            return False
        victim = biggest[0]
        self._leave(victim)
        if not victim.preempted.done():
            victim.preempted.set_result(None)
        return True

    async def _charge(self, watch: _Watch) -> bool:
        """Whether one of the watch's waiters pays for a poll from its upstream rate limit,
        each in turn first (a caller without a limit pays nothing)."""
        waiters = list(watch.waiters)
        if not waiters:
            return False
        start = next(watch.turns) % len(waiters)
        for waiter in waiters[start:] + waiters[:start]:
            if waiter.admit is None:
                return True
            try:
                await waiter.admit()
            except RateLimited:
                continue
            return True
        return False

    def _end(self, watch: _Watch) -> None:
        if self._watches.get(watch.key) is watch:
            del self._watches[watch.key]
        watches = self._by_base.get(watch.base)
        if watches is not None:
            watches.discard(watch)
            if not watches:
                del self._by_base[watch.base]
        if watch.task is not None and not watch.task.done():
            watch.task.cancel()

    async def _run(self, watch: _Watch) -> None:
        s = self._settings
        delay = s.poll_initial_seconds
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(watch.wake.wait(), timeout=delay)
            if watch.wake.is_set():
                cause = watch.wake_cause or "webhook"
                watch.wake.clear()
                query = watch.query  # someone refreshed or settled it: read, maybe a hit
            elif await self._may_poll(watch) and await self._charge(watch):
                cause = "poll"
                query = fresh(watch.query)
                self._metrics.wait_polls.inc()
            else:
                # Another replica polls this order (listen for its news), or no waiter's
                # upstream limit could pay for a poll now: try again at the next tick.
                delay = min(delay * s.poll_factor, s.poll_max_seconds)
                continue
            try:
                answer = await self._service.get(query)
            except ProxyError as exc:
                log.info("wait_poll_failed", order_id=watch.query.order_id, error=exc.error_code)
                delay = min(delay * s.poll_factor, s.poll_max_seconds)
                continue
            if answer.cache is CacheResult.BYPASS:
                # The schedule's own fresh read: to its waiters it is an upstream read, a
                # MISS (X-Cache: BYPASS means the caller itself sent no-cache).
                answer = msgspec.structs.replace(answer, cache=CacheResult.MISS)
            if not _newer(watch.latest, answer):
                watch.latest = answer
            if is_settled(answer):
                self._metrics.wait_wakeups.labels(cause=cause).inc()
                # Everyone waiting on this watch gets this one answer.
                self._metrics.wait_polls_saved.inc(max(0, len(watch.waiters) - 1))
                if not watch.settled.done():
                    watch.settled.set_result(answer)
                if cause == "poll" and self._bus is not None:
                    await self._bus.publish(SETTLED, watch.base)
                return
            delay = min(delay * s.poll_factor, s.poll_max_seconds)

    async def _may_poll(self, watch: _Watch) -> bool:
        """Whether this replica holds the order's polling lease (always, without Redis)."""
        if self._store is None:
            return True
        lease_ms = int(self._settings.poll_max_seconds * 2 * 1000)
        try:
            return await self._store.hold(poll_key(watch.key), self._token, lease_ms)
        except CacheUnavailable:
            return True  # fail open: poll ourselves rather than leave waiters hanging

    async def close(self) -> None:
        tasks = [w.task for w in self._watches.values() if w.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
