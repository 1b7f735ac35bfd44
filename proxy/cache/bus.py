"""Events between replicas over one Redis pub/sub channel, with a link known to be alive.

Each process keeps one subscription (owned by the app's cleanup context) and dispatches what
arrives to local waiters and listeners: "order invalidated" drops in-process copies, "answer
ready for key K" wakes replicas waiting on another replica's upstream call.

Pub/sub delivers at most once, so the bus says whether it can be trusted. It is healthy only
from a confirmed subscription on, and only while the link keeps answering: it pings every
`ping_interval` and declares the link dead when nothing (message or pong) arrived for
`dead_after` seconds, which catches a half-open connection that TCP alone would not notice
for minutes. Every change of health is reported to `on_state` listeners: the in-process
cache empties itself then, because messages may have been missed while the link was down.
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

from proxy.observe.metrics import Metrics

log = structlog.get_logger("proxy.bus")

Listener = Callable[[str], None]
StateListener = Callable[[bool], None]

# Event kinds. INVALIDATED: every cached variant of an order (its key base) was dropped.
INVALIDATED = "invalidated"
ANSWER_READY = "answer"
ANSWER_FAILED = "failed"


class _LinkSilent(Exception):
    """Nothing arrived on the subscription for too long: treat the link as dead."""


class EventBus:
    def __init__(
        self,
        client: Redis | RedisCluster,
        channel: str,
        metrics: Metrics,
        *,
        timeout: float = 0.5,
        ping_interval: float = 0.5,
        dead_after: float = 1.5,
    ) -> None:
        self._client = client
        self._timeout = timeout
        self._ping_interval = ping_interval
        self._dead_after = dead_after
        self.channel = channel
        self._metrics = metrics
        self._waiters: dict[str, set[asyncio.Future[str]]] = defaultdict(set)
        self._listeners: dict[str, list[Listener]] = defaultdict(list)
        self._state_listeners: list[StateListener] = []
        self._encode = msgspec.msgpack.Encoder().encode
        self._decode = msgspec.msgpack.Decoder(tuple[str, str]).decode
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._attempt = 0
        # A bus_disconnected line was written: the next subscription writes bus_reconnected.
        self._outage_logged = False
        # Set while the subscription is confirmed and the link answers.
        self.subscribed = asyncio.Event()
        # Set to cut a reconnect backoff short (Redis answers again: try now).
        self._retry_now = asyncio.Event()

    @property
    def healthy(self) -> bool:
        return self.subscribed.is_set()

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

    def reconnect_now(self) -> None:
        """Redis answers again: end the reconnect backoff, if one is under way."""
        self._retry_now.set()

    def listen(self, kind: str, listener: Listener) -> None:
        """Call `listener(key)` for every event of this kind (from any replica, this one too)."""
        self._listeners[kind].append(listener)

    def on_state(self, listener: StateListener) -> None:
        """Call `listener(healthy)` whenever the bus becomes healthy or stops being so."""
        self._state_listeners.append(listener)

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
            try:
                listener(key)
            except Exception:
                # A listener's bug must not drop the link (which would empty every in-process
                # cache and keep doing so for each such message), nor starve the listeners after it.
                log.exception("bus_listener_failed", kind=kind)

    def _set_health(self, healthy: bool) -> None:
        if healthy == self.subscribed.is_set():
            return
        if healthy:
            self.subscribed.set()
            if self._outage_logged:
                self._outage_logged = False
                log.info("bus_reconnected", channel=self.channel)
        else:
            self.subscribed.clear()
        for listener in self._state_listeners:
            listener(healthy)

    async def _session(self, pubsub: PubSub) -> None:
        """Subscribe, then dispatch until the link fails or falls silent."""
        loop = asyncio.get_running_loop()
        # Connecting and subscribing wait on replies too: a black-holed link must not hang.
        async with asyncio.timeout(self._dead_after):
            await pubsub.subscribe(self.channel)
        last_seen = loop.time()
        next_ping = last_seen + self._ping_interval
        while not self.closing():
            message = await pubsub.get_message(timeout=self._ping_interval)
            now = loop.time()
            if message is not None:
                last_seen = now
                kind = message.get("type")
                if kind == "message":
                    self._dispatch(message["data"])
                elif kind == "subscribe":
                    # Only now are later messages sure to reach us; whatever was missed
                    # before is forgotten by the state listeners.
                    self._set_health(True)
            if now - last_seen > self._dead_after:
                raise _LinkSilent(f"nothing received for {now - last_seen:.1f}s")
            if now >= next_ping:
                next_ping = now + self._ping_interval
                await pubsub.ping()

    async def _run(self) -> None:
        delay = 0.1
        while not self.closing():
            pubsub = None
            was_healthy = False
            try:
                pubsub = await self._pubsub()
                await self._session(pubsub)
            except Exception as exc:  # this loop must outlive any client error
                was_healthy = self.healthy
                if self.closing():
                    return
                if was_healthy or not isinstance(exc, RedisError | OSError | TimeoutError):
                    log.warning("bus_disconnected", error=type(exc).__name__)
                    self._outage_logged = True
                self._metrics.redis_errors.labels(operation="subscribe").inc()
            finally:
                self._set_health(False)
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        async with asyncio.timeout(self._timeout):
                            await pubsub.aclose()  # type: ignore[no-untyped-call]
            if self.closing():
                return
            # Reconnect with capped exponential backoff (from the start again after a link
            # that worked); cancellation ends the loop.
            if was_healthy:
                delay = 0.1
            self._retry_now.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._retry_now.wait(), timeout=delay)
            delay = min(delay * 2, 2.0)
