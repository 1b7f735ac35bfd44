"""The application factory: routes from the table, middleware, the resources one app owns."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

import aiohttp
import msgspec
import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from proxy.appkeys import (
    BUS,
    CACHE_HEALTH,
    DECODERS,
    INTERNAL_APP,
    LIFECYCLE,
    METRICS,
    OPENAPI,
    ORDER_SERVICE,
    SETTINGS,
    TRACING,
    UPSTREAM,
    WAITS,
    WEBHOOK_AUTH,
    CacheHealth,
    Lifecycle,
)
from proxy.cache.bus import EventBus
from proxy.cache.coalesce import ReplicaCoalescer
from proxy.cache.connect import build_redis
from proxy.cache.facade import OrderCache
from proxy.cache.keys import KeySchema
from proxy.cache.memory import MemoryStore
from proxy.cache.redis import RedisStore
from proxy.config.settings import Settings
from proxy.core.models import Decoders
from proxy.core.orders import OrderService, ServiceOptions
from proxy.core.tasks import BackgroundTasks
from proxy.core.waits import WaitRegistry
from proxy.observe.metrics import Metrics
from proxy.observe.tracing import Tracing
from proxy.upstream.client import Credentials, JuspayClient, build_session, close_session
from proxy.web import routes
from proxy.web.auth import ClientKeyAuth, WebhookAuth
from proxy.web.fastlane import FAST_LANE, FastLane
from proxy.web.middlewares import make_observe
from proxy.web.openapi import build_openapi
from proxy.web.operator_views import OPERATOR_VIEWS, OperatorViews
from proxy.web.ratelimit import RATE_LIMITER, RateLimiter, any_limits, limit_requests
from proxy.web.routes import RouteRows, register
from proxy.web.serverheader import strip_server_header
from proxy.web.webhook_limits import WEBHOOK_LIMITS, WebhookLimits

log = structlog.get_logger("proxy.app")

# Webhook refreshes and verification reads running at once; more are declined (they are an
# optimisation and a sample, never needed for a correct answer).
_BACKGROUND_LIMIT = 64


def create_app(
    settings: Settings,
    *,
    redis: Redis | RedisCluster | None = None,
    upstream: aiohttp.ClientSession | None = None,
    clock: Callable[[], float] | None = None,
) -> web.Application:
    """Build the proxy. Tests may pass their own Redis client, HTTP session to Juspay
    (`upstream`) or wall clock; else the client and session are made here, at start-up, and
    closed at shutdown, and the clock is `time.time`."""
    rows: RouteRows = {}  # filled as the routes are registered, below
    # Spans only with an exporter set; the SDK starts (and stops) with the app, below.
    tracing = Tracing(settings.tracing) if settings.tracing.enabled else None
    middlewares: list[Middleware] = [
        make_observe(rows, log_requests=_log_requests(settings), tracing=tracing)
    ]
    if settings.clients:
        middlewares.append(ClientKeyAuth(settings.clients, rows))
    if any_limits(settings.clients):
        middlewares.append(limit_requests)  # per-client rate limits, after authentication
    app = web.Application(
        middlewares=middlewares,
        client_max_size=settings.server.max_request_body_bytes,
        handler_args={
            "max_line_size": settings.server.max_line_size,
            "max_field_size": settings.server.max_field_size,
        },
    )
    app[SETTINGS] = settings
    app[METRICS] = metrics = Metrics()
    app[LIFECYCLE] = lifecycle = Lifecycle()
    app[OPENAPI] = msgspec.json.encode(build_openapi())
    app[DECODERS] = Decoders()
    # Basic pairs (shared and per merchant) and JWT keyrings; with none, every webhook is a 401.
    app[WEBHOOK_AUTH] = WebhookAuth(settings)
    app[WEBHOOK_LIMITS] = WebhookLimits(settings.server, metrics)
    views = OperatorViews(metrics.render, settings.server.operator_refresh_seconds)
    app[OPERATOR_VIEWS] = views
    if tracing is not None:
        app[TRACING] = tracing
        # Before the resources: it closes after them, so their last spans are exported.
        app.cleanup_ctx.append(_tracing)
    app.cleanup_ctx.append(_resources(redis, upstream, clock or time.time))
    app.on_shutdown.append(_start_draining)
    app.on_response_prepare.append(strip_server_header)

    register(app, routes.API, rows)
    if settings.server.internal_port is None:
        register(app, routes.INTERNAL, rows)
    else:
        app[INTERNAL_APP] = _internal_app(settings, metrics, lifecycle, views)
    # The order reads' own middlewares and handlers, for the low-level server (BoundedRunner).
    app[FAST_LANE] = FastLane(app, middlewares, rows)
    return app


def _internal_app(
    settings: Settings, metrics: Metrics, lifecycle: Lifecycle, views: OperatorViews
) -> web.Application:
    """The internal listener's app (PROXY_INTERNAL_PORT): the internal routes, reporting the
    proxy app's metrics, lifecycle and (once started) cache health. No client keys: these routes
    never need one (they hold no order data); keep this port off the gateway's path."""
    rows: RouteRows = {}
    app = web.Application(middlewares=[make_observe(rows, log_requests=_log_requests(settings))])
    app[METRICS] = metrics
    app[LIFECYCLE] = lifecycle
    app[OPERATOR_VIEWS] = views
    app.on_response_prepare.append(strip_server_header)
    register(app, routes.INTERNAL, rows)
    return app


def _log_requests(settings: Settings) -> bool:
    """Whether request lines can be seen at all (False when info lines are filtered out)."""
    return settings.log.level in ("debug", "info")


async def _tracing(app: web.Application) -> AsyncIterator[None]:
    tracing = app[TRACING]
    tracing.start()
    try:
        yield
    finally:
        await tracing.close()


async def _start_draining(app: web.Application) -> None:
    app[LIFECYCLE].draining = True


def _resources(
    redis: Redis | RedisCluster | None,
    upstream: aiohttp.ClientSession | None,
    clock: Callable[[], float],
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def resources(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        metrics = app[METRICS]
        decoders = app[DECODERS]
        session = upstream or build_session(settings.upstream)
        redis_client = redis
        owns_redis = False
        if redis_client is None and settings.redis.url is not None:
            redis_client = build_redis(settings.redis)
            owns_redis = True
        keys = KeySchema(settings.redis.key_prefix)
        memory = MemoryStore(
            max_entries=settings.cache.memory_max_entries,
            max_bytes=settings.cache.memory_max_bytes,
        )
        store: RedisStore | None = None
        bus: EventBus | None = None
        replicas: ReplicaCoalescer | None = None
        if redis_client is not None:
            timeout = settings.redis.socket_timeout_seconds
            store = RedisStore(
                redis_client,
                channel=keys.channel,
                timeout=timeout,
                # A generation must outlive any read that noted it (saves extend it further).
                generation_ttl=max(300, int(settings.upstream.timeout_seconds * 10)),
                ack_replicas=settings.redis.ack_replicas,
                ack_timeout=settings.redis.ack_timeout_seconds,
                on_batch=metrics.redis_batch,
                on_rejected=lambda reason: metrics.rejected_entries.labels(reason=reason).inc(),
            )
            bus = EventBus(redis_client, keys.channel, metrics, timeout=timeout)
            app[BUS] = bus
            cache = OrderCache(
                memory,
                metrics,
                remote=store,
                bus=bus,
                front_ttl=settings.cache.memory_layer_ttl_seconds,
                grace=settings.cache.outage_grace_seconds,
            )
            bus.start()
            if settings.cache.distributed_coalescing:
                replicas = ReplicaCoalescer(
                    store, bus, metrics, lock_seconds=settings.upstream.timeout_seconds + 1
                )
        else:
            cache = OrderCache(memory, metrics)
            log.warning(
                "in_process_cache",
                detail="REDIS_URL is unset: entries live in this process only and are not "
                "shared between replicas",
            )
        app[UPSTREAM] = client = JuspayClient(
            session,
            settings.upstream,
            Credentials(settings.merchants, settings.secret_refresh_seconds),
            metrics,
            decoders,
        )
        app[ORDER_SERVICE] = service = OrderService(
            cache,
            client,
            keys,
            ServiceOptions(
                default_version=settings.upstream.api_version,
                policy=settings.cache.policy,
                stale_if_error_seconds=settings.cache.stale_if_error_seconds,
                verify_sample_rate=settings.cache.verify_sample_rate,
            ),
            metrics,
            decode_view=decoders.status_view.decode,
            background=BackgroundTasks(limit=_BACKGROUND_LIMIT),
            replicas=replicas,
            clock=clock,
        )
        # Set on the app serving /readyz. The internal listener's app starts after this one
        # (proxy.server), so it is not yet frozen here.
        app.get(INTERNAL_APP, app)[CACHE_HEALTH] = CacheHealth(cache, bus)
        app[WAITS] = waits = WaitRegistry(service, metrics, settings.wait, store=store, bus=bus)
        # Per-client rate limits: shared through Redis, per process while it is down.
        app[RATE_LIMITER] = limiter = RateLimiter(
            settings.clients,
            metrics,
            prefix=keys.prefix,
            redis=redis_client,
            timeout=settings.redis.socket_timeout_seconds,
        )
        app[LIFECYCLE].ready = True
        try:
            yield
        finally:
            app[LIFECYCLE].ready = False
            await waits.close()
            await service.close()
            await limiter.close()
            if bus is not None:
                await bus.close()
            if store is not None:
                await store.close()
            if upstream is None:
                await close_session(session)
            if owns_redis and redis_client is not None:
                await redis_client.aclose()

    return resources
