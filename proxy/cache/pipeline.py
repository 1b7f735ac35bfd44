"""Auto-pipelining: Redis commands issued in one event-loop turn travel in one round trip.

Under load, dozens of requests ask Redis something in the same turn of the loop. Sending each
alone costs a round trip and redis-py's per-command overhead (tens of microseconds of CPU);
sending them together as one non-transactional pipeline costs one of each. At low load a
batch is a single command, so nothing is lost. One deadline covers the whole batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster


class RedisCommandError(Exception):
    """A command (or its whole batch) failed; `reason` names the low-level error."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AutoPipeline:
    def __init__(
        self,
        client: Redis | RedisCluster,
        *,
        timeout: float,
        max_batch: int = 512,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._client = client
        self._on_batch = on_batch
        self._timeout = timeout
        self._max_batch = max_batch
        self._pending: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    def call(self, *args: Any) -> Awaitable[Any]:
        """Queue one command; the future resolves with its reply or RedisCommandError."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((args, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), self._max_batch):
            task = asyncio.create_task(self._send(pending[start : start + self._max_batch]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        if self._on_batch is not None:
            self._on_batch(len(batch))
        try:
            async with asyncio.timeout(self._timeout):
                results = await self._execute(batch)
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:
            # redis-py raises more than RedisError mid-failover (AttributeError on a closed
            # connection, RedisClusterException): whatever it is, no caller may hang on it.
            if isinstance(self._client, RedisCluster) and len(batch) > 1:
                # One dead master fails a whole cluster pipeline; resend one by one so only
                # the commands for its slots fail.
                await asyncio.gather(*(self._send([item]) for item in batch))
                return
            error = RedisCommandError(type(exc).__name__)
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        _deliver(batch, results)

    async def _execute(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> list[Any]:
        if len(batch) == 1:
            return [await self._client.execute_command(*batch[0][0])]
        pipe = self._client.pipeline(transaction=False)
        for args, _ in batch:
            pipe.execute_command(*args)
        results: list[Any] = await pipe.execute(raise_on_error=False)
        return results

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _deliver(batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]], results: list[Any]) -> None:
    for (_, future), result in zip(batch, results, strict=True):
        if future.done():
            continue  # the caller went away
        if isinstance(result, Exception):
            future.set_exception(RedisCommandError(type(result).__name__))
        else:
            future.set_result(result)
