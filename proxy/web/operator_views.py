"""/metrics and /readyz at a bounded cost, however often they are asked (no key needed).

A Prometheus rendering costs milliseconds of CPU and a readiness check a Redis round trip:
on the API port (no PROXY_INTERNAL_PORT) a flood of either was a lever on every caller's
latency. Each is now done at most once per `operator_refresh_seconds` per process:

- /metrics: a scrape is answered by the first rendering that starts after it arrived, so it
  is never older than the scrape; scrapes within the interval wait for, and share, the next.
- /readyz: Redis' good answer is reused for the interval unless real traffic has seen Redis
  fail since; a bad one is checked again; callers arriving during a check share it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Generic, TypeVar

from aiohttp import web

T = TypeVar("T")


class Coalesced(Generic[T]):
    """`compute()` (synchronous) run at most once per `interval`; every caller gets a result
    computed after it asked."""

    def __init__(
        self,
        compute: Callable[[], T],
        interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._compute = compute
        self._interval = interval
        self._clock = clock
        self._last = -interval
        self._next: asyncio.Future[T] | None = None

    async def get(self) -> T:
        if self._next is None:
            wait = self._last + self._interval - self._clock()
            if wait <= 0:
                self._last = self._clock()
                return self._compute()
            loop = asyncio.get_running_loop()
            self._next = loop.create_future()
            loop.call_later(wait, self._run)
        return await asyncio.shield(self._next)

    def _run(self) -> None:
        future, self._next = self._next, None
        assert future is not None
        self._last = self._clock()
        try:
            future.set_result(self._compute())
        except Exception as exc:  # handed to every waiter, raised there
            future.set_exception(exc)


class RedisCheck:
    """Redis' answer for /readyz. A good answer is reused for `interval` while nothing since
    has seen Redis fail (`healthy()`, the cache's own view from real traffic); a bad one is
    checked again at once, callers arriving during a check sharing it. So a flood costs a
    healthy Redis at most one PING per interval, and an outage or a recovery shows at once."""

    def __init__(
        self,
        check: Callable[[], Awaitable[bool]],
        healthy: Callable[[], bool],
        interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._check = check
        self._healthy = healthy
        self._interval = interval
        self._clock = clock
        self._up_at: float | None = None
        self._running: asyncio.Task[bool] | None = None

    async def get(self) -> bool:
        up_at = self._up_at
        if up_at is not None and self._clock() - up_at < self._interval and self._healthy():
            return True
        if self._running is None:
            self._running = asyncio.create_task(self._refresh())
        return await asyncio.shield(self._running)

    async def _refresh(self) -> bool:
        try:
            up = await self._check()
            self._up_at = self._clock() if up else None
            return up
        finally:
            self._running = None


class OperatorViews:
    """One process' /metrics rendering and /readyz Redis check, each bounded in rate."""

    def __init__(self, render: Callable[..., bytes], interval: float) -> None:
        self.interval = interval
        # One schedule per format (Prometheus text, OpenMetrics when a scraper asks for it).
        self._formats = {
            open_metrics: Coalesced(partial(render, open_metrics=open_metrics), interval)
            for open_metrics in (False, True)
        }
        self._redis: RedisCheck | None = None

    async def render(self, *, open_metrics: bool = False) -> bytes:
        return await self._formats[open_metrics].get()

    async def redis_up(
        self, check: Callable[[], Awaitable[bool]], healthy: Callable[[], bool]
    ) -> bool:
        if self._redis is None:
            self._redis = RedisCheck(check, healthy, self.interval)
        return await self._redis.get()


OPERATOR_VIEWS = web.AppKey("operator_views", OperatorViews)
