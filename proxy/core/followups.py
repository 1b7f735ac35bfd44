"""Reads the service makes on its own, in the background: the refresh after a webhook, the
re-reads of an order whose read lagged its webhook, and the verification sample of hits."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import msgspec
import structlog

from proxy.cache.entries import CachedEntry
from proxy.cache.facade import FLOOR_SECONDS
from proxy.core import lowerbound
from proxy.core.errors import ProxyError
from proxy.core.models import OrderStatusView
from proxy.core.reads import OrderAnswer, OrderQuery, fresh
from proxy.core.tasks import BackgroundTasks
from proxy.observe.metrics import Metrics

log = structlog.get_logger("proxy.orders")

# The class of an answer that lags the order's last webhook (see lagging): answered, never
# stored, and a `?wait=` keeps waiting through it (Juspay is catching up).
LAGGING = "lagging"
# The backoff between the re-reads of a lagging order: 1, 2, 4, 8, 16, 16... s.
_CHASE_FIRST_DELAY = 1.0
_CHASE_MAX_DELAY = 16.0

Get = Callable[[OrderQuery], Awaitable[OrderAnswer]]


class FollowUps:
    """Background reads through the service's own read path (`get`): coalesced, fenced and
    policy-checked like any other, within the bounded set of background tasks."""

    def __init__(
        self,
        get: Get,
        key: Callable[[OrderQuery], str],
        background: BackgroundTasks,
        metrics: Metrics,
        *,
        decode_view: Callable[[bytes], OrderStatusView],
        clock: Callable[[], float],
        sample: Callable[[], float],
        verify_sample_rate: float,
    ) -> None:
        self._get = get
        self._key = key
        self._background = background
        self._metrics = metrics
        self._decode_view = decode_view
        self._clock = clock
        self._sample = sample
        self.verify_sample_rate = verify_sample_rate
        # Keys whose lagging re-reads are being chased (see lagging).
        self._chasing: set[str] = set()

    # --- after a webhook --------------------------------------------------------------------
    def refresh(self, query: OrderQuery) -> bool:
        """Read the order from Juspay in the background; False if the set was full."""
        return self._background.start(
            lambda: self._refresh(query), name=f"refresh:{query.order_id}"
        )

    async def _refresh(self, query: OrderQuery) -> None:
        try:
            await self._get(query)
        except ProxyError as exc:
            log.info("refresh_failed", order_id=query.order_id, error_code=exc.error_code)

    # --- webhooks as lower bounds -----------------------------------------------------------
    def lagging(self, query: OrderQuery, view: OrderStatusView, floor: lowerbound.Floor) -> None:
        """A read showed less than the order's last webhook: count it, and (once per order at
        a time) read it again in the background until it catches up or the floor lapses."""
        self._metrics.lagging_rereads.inc()
        key = self._key(query)
        if key in self._chasing:
            return
        log.info(
            "webhook_lagging_reread",
            merchant_id=query.merchant_id,
            order_id=query.order_id,
            event_name=floor.event,
            juspay_status=view.status,
            webhook_status=floor.status,
        )
        plain = msgspec.structs.replace(query, no_cache=False, not_before=None)
        if self._background.start(lambda: self._chase(key, plain), name=f"chase:{key}"):
            self._chasing.add(key)

    async def _chase(self, key: str, query: OrderQuery) -> None:
        """Fresh reads with a bounded backoff until Juspay shows at least what its webhook
        did (a lagging answer is not stored) or the floor lapses."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FLOOR_SECONDS
        delay = _CHASE_FIRST_DELAY
        try:
            while loop.time() + delay < deadline:
                await asyncio.sleep(delay)  # the backoff between re-reads, not a wait
                delay = min(delay * 2, _CHASE_MAX_DELAY)
                try:
                    answer = await self._get(fresh(query))
                except ProxyError:
                    continue
                if answer.entry.status_class != LAGGING:
                    return
        finally:
            self._chasing.discard(key)

    # --- verification sample ----------------------------------------------------------------
    def maybe_verify(self, query: OrderQuery, served: CachedEntry) -> None:
        if self._sample() >= self.verify_sample_rate:
            return
        if not self._background.start(
            lambda: self._verify(query, served), name=f"verify:{query.order_id}"
        ):
            self._metrics.verifications.labels(result="skipped").inc()

    async def _verify(self, query: OrderQuery, served: CachedEntry) -> None:
        """Re-read a hit's order from Juspay and compare; a divergence also refreshes it."""
        try:
            answer = await self._get(fresh(query))
        except ProxyError:
            self._metrics.verifications.labels(result="error").inc()
            return
        ours, theirs = self._state(served), self._state(answer.entry)
        if ours == theirs:
            self._metrics.verifications.labels(result="match").inc()
            return
        self._metrics.verifications.labels(result="diverged").inc()
        log.warning(
            "cache_diverged",
            merchant_id=query.merchant_id,
            order_id=query.order_id,
            cached_status=ours[1],
            cached_refunds=list(ours[2]),
            juspay_status=theirs[1],
            juspay_refunds=list(theirs[2]),
            cached_age=max(0, int(self._clock() - served.fetched_at)),
        )

    def _state(self, entry: CachedEntry) -> tuple[int, str, tuple[str, ...]]:
        """What a caller acts on: HTTP status, order status and each refund's status."""
        try:
            view = self._decode_view(entry.body)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            # A 4xx body need not be JSON; its status code still counts.
            return (entry.status_code, entry.order_status, ())
        refunds = tuple(refund.status or "" for refund in view.refunds or ())
        return (entry.status_code, view.status or "", refunds)
