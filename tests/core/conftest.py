"""Fixtures for the core package's tests: a scripted upstream and an order service built on it,
over memory alone or over a real Redis (each test under its own key prefix)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from proxy.cache.bus import EventBus
from proxy.cache.coalesce import ReplicaCoalescer
from proxy.cache.facade import OrderCache
from proxy.cache.keys import KeySchema
from proxy.cache.memory import MemoryStore
from proxy.cache.redis import RedisStore
from proxy.config.secrets import Secret
from proxy.config.settings import DEFAULT_API_VERSION, MerchantSettings, UpstreamSettings
from proxy.core.models import Decoders
from proxy.core.orders import OrderService, ServiceOptions
from proxy.core.policy import CachePolicy
from proxy.core.tasks import BackgroundTasks
from proxy.observe.metrics import Metrics
from proxy.upstream.client import Credentials, JuspayClient, build_session, close_session
from tests.support.processes import RedisProcess
from tests.support.upstream_app import Upstream

MERCHANT = "merchant_a"
API_KEY = "key_a_0123456789"
# Generous for a shared 2-core machine: a slow Redis reply must not turn a miss into "error".
REDIS_TIMEOUT = 1.0


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    stub = await Upstream(MERCHANT).start()
    yield stub
    await stub.close()


@pytest.fixture(params=["memory", "redis"])
def layer(request: pytest.FixtureRequest) -> str:
    """Each service test runs without Redis and with it (as `_resources` in app.py builds)."""
    return str(request.param)


@pytest.fixture
async def service(
    upstream: Upstream, layer: str, request: pytest.FixtureRequest
) -> AsyncIterator[OrderService]:
    """An OrderService wired like the app's: memory cache, or Redis store + bus + coalescer."""
    metrics = Metrics()
    decoders = Decoders()
    keys = KeySchema(f"test-{uuid.uuid4().hex[:12]}")
    upstream_settings = UpstreamSettings(base_url=upstream.url, timeout_seconds=5.0)
    memory = MemoryStore(max_entries=1000, max_bytes=16 * 1024 * 1024)
    client: aioredis.Redis | None = None
    store: RedisStore | None = None
    bus: EventBus | None = None
    replicas: ReplicaCoalescer | None = None
    if layer == "redis":
        server: RedisProcess = request.getfixturevalue("redis_server")
        client = aioredis.Redis.from_url(server.url)
        store = RedisStore(client, channel=keys.channel, timeout=REDIS_TIMEOUT, generation_ttl=300)
        bus = EventBus(client, keys.channel, metrics, timeout=REDIS_TIMEOUT)
        cache = OrderCache(memory, metrics, remote=store, bus=bus, front_ttl=30.0)
        bus.start()
        # Until subscribed the front layer is bypassed: start from the steady state.
        await asyncio.wait_for(bus.subscribed.wait(), 5)
        replicas = ReplicaCoalescer(
            store, bus, metrics, lock_seconds=upstream_settings.timeout_seconds + 1
        )
    else:
        cache = OrderCache(memory, metrics)
    session = build_session(upstream_settings)
    juspay = JuspayClient(
        session,
        upstream_settings,
        Credentials((MerchantSettings(MERCHANT, Secret(API_KEY, "test")),)),
        metrics,
        decoders,
    )
    built = OrderService(
        cache,
        juspay,
        keys,
        ServiceOptions(
            default_version=DEFAULT_API_VERSION,
            policy=CachePolicy(),
            stale_if_error_seconds=600,
        ),
        metrics,
        decode_view=decoders.status_view.decode,
        background=BackgroundTasks(limit=8),
        replicas=replicas,
    )
    yield built
    await built.close()
    if bus is not None:
        await bus.close()
    if store is not None:
        await store.close()
    await close_session(session)
    if client is not None:
        await client.aclose()
