"""A bounded set of background tasks the app owns: webhook refreshes, verification reads.

Nothing here is fire-and-forget: every task is tracked, the set is bounded (work offered
while it is full is declined and counted by the caller), and shutdown cancels what is left.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

log = structlog.get_logger("proxy.tasks")


class BackgroundTasks:
    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def __len__(self) -> int:
        return len(self._tasks)

    def start(self, work: Callable[[], Coroutine[Any, Any, None]], name: str) -> bool:
        """Run `work()` in the background; False (and nothing started) when full or closed."""
        if self._closed or len(self._tasks) >= self._limit:
            return False
        task = asyncio.create_task(work(), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return True

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background_task_failed", task=task.get_name(), exc_info=task.exception())

    async def join(self) -> None:
        """Wait until every task started so far (and any they started) has finished."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def close(self) -> None:
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
