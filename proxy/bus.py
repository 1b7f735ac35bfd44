"""Events between replicas over one Redis pub/sub channel.

Each process keeps one subscription (owned by the app's cleanup context) and dispatches what
arrives to local waiters and listeners: "answer ready for key K" wakes replicas waiting on
another replica's upstream call. When Redis is unreachable the bus reconnects with backoff;
meanwhile waiters simply time out and fall back, so nothing depends on it for correctness.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable

import msgspec
import structlog
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from proxy.metrics import Metrics

log = structlog.get_logger("proxy.bus")

Listener = Callable[[str], None]


class EventBus:
    def __init__(
        self,
        client: Redis | RedisCluster,
        channel: str,
        metrics: Metrics,
        *,
        timeout: float = 0.5,
    ) -> None:
        self._client = client
        self._timeout = timeout
        self.channel = channel
        self._metrics = metrics
        self._waiters: dict[str, set[asyncio.Future[str]]] = defaultdict(set)
        self._listeners: dict[str, list[Listener]] = defaultdict(list)
        self._encode = msgspec.msgpack.Encoder().encode
        self._decode = msgspec.msgpack.Decoder(tuple[str, str]).decode
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._attempt = 0
        self.subscribed = asyncio.Event()

    def closing(self) -> bool:
        return self._closing

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="event-bus")

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            # redis-py can turn a cancellation that races its read timeout into a TimeoutError,
            # so cancel until the task is really done (the flag ends its loop either way).
            while not self._task.done():
                self._task.cancel()
                await asyncio.wait({self._task}, timeout=0.5)
        for futures in self._waiters.values():
            for future in futures:
                future.cancel()
        self._waiters.clear()

    def listen(self, kind: str, listener: Listener) -> None:
        """Call `listener(key)` for every event of this kind (from any replica, this one too)."""
        self._listeners[kind].append(listener)

    def waiter(self, key: str) -> asyncio.Future[str]:
        """A future that resolves with the kind of the next event about `key`."""
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiters[key].add(future)
        return future

    def discard(self, key: str, future: asyncio.Future[str]) -> None:
        futures = self._waiters.get(key)
        if futures is not None:
            futures.discard(future)
            if not futures:
                del self._waiters[key]

    def message(self, kind: str, key: str) -> bytes:
        return self._encode((kind, key))

    async def publish(self, kind: str, key: str) -> bool:
        try:
            async with asyncio.timeout(self._timeout):
                await self._client.publish(self.channel, self.message(kind, key))
        except (RedisError, OSError, TimeoutError):
            self._metrics.redis_errors.labels(operation="publish").inc()
            return False
        return True

    async def _pubsub(self) -> PubSub:
        client = self._client
        if not isinstance(client, RedisCluster):
            return client.pubsub()
        # Classic pub/sub reaches subscribers on every node, so any live primary will do.
        # redis-py would always pick the channel's slot owner and keep retrying it while that
        # master is down: rotate through the primaries instead, one per attempt.
        await client.initialize()
        primaries = client.get_primaries()
        self._attempt += 1
        node = primaries[self._attempt % len(primaries)] if primaries else None
        return client.pubsub(node=node)

    def _dispatch(self, data: bytes) -> None:
        try:
            kind, key = self._decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return
        for future in self._waiters.pop(key, ()):
            if not future.done():
                future.set_result(kind)
        for listener in self._listeners.get(kind, ()):
            listener(key)

    async def _run(self) -> None:
        delay = 0.1
        while not self.closing():
            pubsub = None
            try:
                pubsub = await self._pubsub()
                await pubsub.subscribe(self.channel)
                self.subscribed.set()
                delay = 0.1
                while not self.closing():
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        self._dispatch(message["data"])
            except Exception as exc:  # this loop must outlive any client error
                if self.closing():
                    return
                if self.subscribed.is_set() or not isinstance(exc, RedisError | OSError):
                    log.warning("bus_disconnected", error=type(exc).__name__)
                self.subscribed.clear()
                self._metrics.redis_errors.labels(operation="subscribe").inc()
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()  # type: ignore[no-untyped-call]
            if self.closing():
                return
            # Reconnect with capped exponential backoff; cancellation ends the loop.
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
