"""Fair sharing: per-client rate limits, shared by every replica through Redis.

Each client in `[[clients]]` may have two limits, each a rate and a burst:

    all        every request the client makes (cache hits included)
    upstream   only reads that miss the cache (or bypass it) and so would call Juspay

The algorithm is GCRA, as redis-cell implements it: a limit keeps one number per client, the
theoretical arrival time (TAT) of its next request. A request costs one emission interval
(1 / rate); it conforms while the TAT it would set is at most `burst` intervals ahead of now.
Compared with a token bucket (Envoy's limiter) it admits exactly the same traffic, but the state
is one number instead of two (tokens and a timestamp), the check is a single comparison, and the
wait until the next conforming request - our Retry-After - falls out of it directly.

Shared: one Lua script per check, applied atomically by Redis, with Redis' own clock (`TIME`),
so replicas with skewed clocks still share one limit. Keys sit under the configured prefix with
one hash tag per client (`{prefix}:ratelimit:{<client>}:<scope>`), so in a Redis Cluster each
client's keys live in one slot; a key expires once its TAT has passed (an idle client costs
nothing).

Local: each process also keeps the same GCRA for the requests it admitted itself. It answers
alone when Redis is unset, down or slow (fail open to per-process limits: Redis trouble never
fails a request), and it is asked first when Redis is up: a client already over its limit in
this process alone is over the shared limit too, so a flooding client is refused without a
round trip to Redis. After a Redis failure the shared limit is retried after `_RETRY_SECONDS`;
meanwhile every check is local, so a dead Redis adds no latency.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from proxy.appkeys import CLIENT, RECORD
from proxy.cache.keys import rate_limit_key
from proxy.cache.pipeline import AutoPipeline, RedisCommandError
from proxy.config.settings import ClientSettings, RateLimit
from proxy.core.errors import RateLimited
from proxy.observe.metrics import Metrics

log = structlog.get_logger("proxy.ratelimit")

SCOPES = ("all", "upstream")
# After a failed Redis check, checks stay local this long before Redis is tried again.
_RETRY_SECONDS = 1.0
# Float sums of intervals may overshoot the tolerance by a rounding error: not a refusal.
_EPSILON = 1e-9

# GCRA on one key. KEYS[1]: the client's TAT (microseconds, Redis' clock); ARGV: emission
# interval (µs), burst tolerance (µs), cost (requests). Returns {1, 0} when the request conforms
# (the TAT moves on and expires when reached), else {0, µs until it would conform}.
_GCRA_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now) or now
if tat < now then tat = now end
local new_tat = tat + tonumber(ARGV[3]) * interval
local allow_at = new_tat - tolerance
if allow_at > now then
  return {0, math.ceil(allow_at - now)}
end
local ttl = string.format('%.0f', math.ceil((new_tat - now) / 1000))
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', ttl)
return {1, 0}
"""


class LocalGcra:
    """GCRA state for this process only; the clock is injectable (seconds, monotonic)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tat: dict[str, float] = {}  # bounded: configured clients x scopes

    def wait(self, key: str, limit: RateLimit) -> float:
        """Seconds until one more request would conform (0: it conforms now). Takes nothing."""
        now = self._clock()
        tat = max(self._tat.get(key, now), now)
        wait = tat + limit.interval - limit.tolerance - now
        return wait if wait > _EPSILON else 0.0

    def take(self, key: str, limit: RateLimit) -> None:
        """Count one admitted request (also one the shared limit admitted)."""
        now = self._clock()
        self._tat[key] = max(self._tat.get(key, now), now) + limit.interval

    def acquire(self, key: str, limit: RateLimit) -> float:
        """Take one request if it conforms; else the seconds to wait (nothing taken)."""
        wait = self.wait(key, limit)
        if wait == 0:
            self.take(key, limit)
        return wait


class SharedGcra:
    """GCRA state in Redis, one atomic script per check (through an auto-pipeline)."""

    def __init__(self, pipe: AutoPipeline) -> None:
        self._pipe = pipe

    async def acquire(self, key: str, limit: RateLimit) -> float:
        """0 when the request conforms (and was counted), else the seconds to wait.
        Raises RedisCommandError when Redis could not decide."""
        # Whole microseconds; the tolerance is `burst` whole intervals, so a full burst always
        # fits however the interval was rounded.
        interval_us = max(1, round(limit.interval * 1_000_000))
        reply: Any = await self._pipe.call(
            "EVAL", _GCRA_SCRIPT, 1, key, interval_us, limit.burst * interval_us, 1
        )
        try:
            allowed, wait_us = int(reply[0]), int(reply[1])
        except (TypeError, ValueError, IndexError):
            raise RedisCommandError("bad_reply") from None
        return 0.0 if allowed == 1 else wait_us / 1_000_000


class RateLimiter:
    """Every client's limits; shared through Redis when it answers, per process otherwise."""

    def __init__(
        self,
        clients: tuple[ClientSettings, ...],
        metrics: Metrics,
        *,
        prefix: str,
        redis: Redis | RedisCluster | None = None,
        timeout: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._metrics = metrics
        self._clock = clock
        self._local = LocalGcra(clock)
        self._pipe = (
            AutoPipeline(redis, timeout=timeout, on_batch=metrics.redis_batch)
            if redis is not None
            else None
        )
        self._shared = SharedGcra(self._pipe) if self._pipe is not None else None
        self._down_until = 0.0
        self._shared_up = True
        self._keys: dict[tuple[str, str], str] = {}
        # Label values only for configured clients with a limit: the series set is bounded.
        for client in clients:
            for scope in SCOPES:
                if client.limit(scope) is not None:
                    self._keys[client.name, scope] = rate_limit_key(prefix, client.name, scope)
                    metrics.rate_limited.labels(client=client.name, scope=scope)

    @property
    def shared(self) -> bool:
        """Whether limits are shared through Redis (configured, and not known to be down)."""
        return self._shared is not None and self._shared_up

    async def acquire(self, client: ClientSettings, scope: str) -> None:
        """Count one request of `client` against its `scope` limit, or raise RateLimited."""
        limit = client.limit(scope)
        if limit is None:
            return
        key = self._keys[client.name, scope]
        wait = self._local.wait(key, limit)
        if wait == 0 and self._shared is not None and self._clock() >= self._down_until:
            try:
                wait = await self._shared.acquire(key, limit)
            except RedisCommandError as exc:
                self._redis_failed(exc.reason)
            else:
                self._redis_answered()
                if wait == 0:
                    self._local.take(key, limit)
                    return
                self._refuse(client, scope, limit, wait)
        # Local decision: over the limit in this process alone, or Redis unset or down.
        wait = self._local.acquire(key, limit)
        if wait > 0:
            self._refuse(client, scope, limit, wait)

    def admit(self, client: ClientSettings, scope: str) -> Callable[[], Awaitable[None]]:
        """A check to run later (the handler runs the upstream one on a miss, before
        `OrderService.fetch`)."""

        async def check() -> None:
            await self.acquire(client, scope)

        return check

    def _refuse(
        self, client: ClientSettings, scope: str, limit: RateLimit, wait: float
    ) -> NoReturn:
        self._metrics.rate_limited.labels(client=client.name, scope=scope).inc()
        what = "requests" if scope == "all" else "reads that call Juspay"
        raise RateLimited(
            f"client {client.name!r} is over its rate limit for {what} "
            f"({limit.rate_per_second:g}/s, burst {limit.burst}); retry after {wait:.3f} s",
            retry_after=max(1, math.ceil(wait)),
        )

    def _redis_failed(self, reason: str) -> None:
        self._metrics.redis_errors.labels(operation="ratelimit").inc()
        self._down_until = self._clock() + _RETRY_SECONDS
        if self._shared_up:
            self._shared_up = False
            log.warning(
                "rate_limits_local",
                reason=reason,
                detail="Redis did not answer: rate limits are enforced per process until it does",
            )

    def _redis_answered(self) -> None:
        if not self._shared_up:
            self._shared_up = True
            log.info("rate_limits_shared", detail="Redis answers again: rate limits are shared")

    async def close(self) -> None:
        if self._pipe is not None:
            await self._pipe.close()


RATE_LIMITER = web.AppKey("rate_limiter", RateLimiter)


@web.middleware
async def limit_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """After client authentication: count the request against the client's `all` limit."""
    client = request.get(CLIENT)
    if client is not None and client.rate_limit is not None:
        request[RECORD].client = client.name
        await request.app[RATE_LIMITER].acquire(client, "all")
    return await handler(request)


def upstream_admit(request: web.Request) -> Callable[[], Awaitable[None]] | None:
    """What the handler runs before a read that would call Juspay (None: no limit)."""
    client = request.get(CLIENT)
    if client is None or client.upstream_rate_limit is None:
        return None
    return request.app[RATE_LIMITER].admit(client, "upstream")


def any_limits(clients: tuple[ClientSettings, ...]) -> bool:
    return any(c.rate_limit is not None or c.upstream_rate_limit is not None for c in clients)
