"""The application factory: routes, middleware, and the resources one app owns."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import aiohttp
import msgspec
import redis.asyncio as aioredis
import structlog
from aiohttp import web
from redis.backoff import NoBackoff
from redis.retry import Retry

from proxy import handlers, health, webhooks
from proxy.auth import ClientKeyAuth, WebhookCredentials
from proxy.bus import EventBus
from proxy.cache import MemoryStore, OrderCache, RedisStore
from proxy.coalesce import ReplicaCoalescer
from proxy.keys import (
    LIFECYCLE,
    METRICS,
    OPENAPI,
    ORDER_SERVICE,
    SETTINGS,
    WEBHOOK_AUTH,
    Lifecycle,
)
from proxy.metrics import Metrics
from proxy.middlewares import observe
from proxy.models import Decoders
from proxy.openapi import build_openapi
from proxy.orders import OrderService
from proxy.secrets import Secret, SecretFile
from proxy.settings import RedisSettings, Settings
from proxy.upstream import Credentials, JuspayClient, build_session, close_session

log = structlog.get_logger("proxy.app")


def build_redis(settings: RedisSettings) -> aioredis.Redis:
    """A pooled client with short timeouts and no retries: a slow cache is worse than none."""
    assert settings.url is not None
    return aioredis.Redis.from_url(
        settings.url.reveal(),
        socket_timeout=settings.socket_timeout_seconds,
        socket_connect_timeout=settings.connect_timeout_seconds,
        max_connections=settings.max_connections,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=30,
        client_name="order-proxy",
    )


def create_app(
    settings: Settings,
    *,
    redis: aioredis.Redis | None = None,
    http_session: aiohttp.ClientSession | None = None,
) -> web.Application:
    """Build the proxy. Tests pass their own Redis client or HTTP session; else they are made
    here, at start-up, and closed at shutdown."""
    auth = ClientKeyAuth(settings.clients, anonymous=not settings.clients)
    app = web.Application(
        middlewares=[observe, auth],
        client_max_size=settings.server.max_request_body_bytes,
        handler_args={
            "max_line_size": settings.server.max_line_size,
            "max_field_size": settings.server.max_field_size,
        },
    )
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app[LIFECYCLE] = Lifecycle()
    app[OPENAPI] = msgspec.json.encode(build_openapi())
    if settings.webhook is not None:
        hook = settings.webhook
        password: Secret | SecretFile = hook.password
        if hook.password_file is not None:
            password = SecretFile(
                hook.password_file, hook.password, check_interval=settings.secret_refresh_seconds
            )
        app[WEBHOOK_AUTH] = WebhookCredentials(hook.username, password)
    app.cleanup_ctx.append(_resources(redis, http_session))
    app.on_shutdown.append(_start_draining)
    app.on_response_prepare.append(_strip_server_header)

    app.router.add_get("/orders/{order_id:[\\s\\S]*}", handlers.get_order, name="order")
    app.router.add_get("/order/status", handlers.get_order_status, name="order_status")
    app.router.add_delete("/cache/orders/{order_id}", handlers.purge_order, name="purge")
    app.router.add_post("/webhooks/juspay", webhooks.juspay_webhook, name="webhook")
    app.router.add_get("/healthz", health.healthz, name="healthz")
    app.router.add_get("/readyz", health.readyz, name="readyz")
    app.router.add_get("/metrics", health.metrics, name="metrics")
    app.router.add_get("/openapi.json", health.openapi, name="openapi")
    return app


async def _strip_server_header(request: web.Request, response: web.StreamResponse) -> None:
    # Allow-list on the way out too: no software versions for whoever is probing.
    response.headers.popall("Server", None)


async def _start_draining(app: web.Application) -> None:
    app[LIFECYCLE].draining = True


def _resources(
    redis: aioredis.Redis | None, http_session: aiohttp.ClientSession | None
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def resources(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        metrics = app[METRICS]
        decoders = Decoders()
        session = http_session or build_session(settings.upstream)
        redis_client = redis
        owns_redis = False
        if redis_client is None and settings.redis.url is not None:
            redis_client = build_redis(settings.redis)
            owns_redis = True
        store: MemoryStore | RedisStore
        bus: EventBus | None = None
        replicas: ReplicaCoalescer | None = None
        if redis_client is not None:
            store = RedisStore(redis_client, decoders)
            bus = EventBus(redis_client, f"{settings.redis.key_prefix}:events", metrics)
            bus.start()
            if settings.cache.distributed_coalescing:
                replicas = ReplicaCoalescer(
                    store, bus, metrics, lock_seconds=settings.upstream.timeout_seconds + 1
                )
        else:
            store = MemoryStore(
                max_entries=settings.cache.memory_max_entries,
                max_bytes=settings.cache.memory_max_bytes,
            )
            log.warning(
                "in_process_cache",
                detail="REDIS_URL is unset: entries live in this process only and are not "
                "shared between replicas",
            )
        cache = OrderCache(store, metrics)
        client = JuspayClient(
            session,
            settings.upstream,
            Credentials(settings.merchants, settings.secret_refresh_seconds),
            metrics,
            decoders,
        )
        service = OrderService(cache, client, settings, metrics, replicas=replicas, bus=bus)
        app[ORDER_SERVICE] = service
        app[LIFECYCLE].ready = True
        try:
            yield
        finally:
            app[LIFECYCLE].ready = False
            await service.close()
            if bus is not None:
                await bus.close()
            if http_session is None:
                await close_session(session)
            if owns_redis and redis_client is not None:
                await redis_client.aclose()

    return resources
