"""A bulkhead for upstream calls: at most N at once, a bounded queue, and shedding beyond it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from proxy.core.errors import Overloaded


class Bulkhead:
    """The slots and the queue; `waiting` is exported as order_proxy_upstream_queued."""

    def __init__(
        self,
        *,
        max_concurrent: int,
        max_queue: int,
        on_shed: Callable[[], None] | None = None,
    ) -> None:
        self._on_shed = on_shed
        self._semaphore = asyncio.Semaphore(max_concurrent)
        self._max_queue = max_queue
        self._waiting = 0

    @property
    def waiting(self) -> int:
        return self._waiting

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the N slots; raise Overloaded when the queue for them is full."""
        if self._semaphore.locked() and self._waiting >= self._max_queue:
            if self._on_shed is not None:
                self._on_shed()
            raise Overloaded("too many upstream calls are waiting", retry_after=1)
        self._waiting += 1
        try:
            await self._semaphore.acquire()
        finally:
            self._waiting -= 1
        try:
            yield
        finally:
            self._semaphore.release()
