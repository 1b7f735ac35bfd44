"""Shared fixtures: a real redis-server for the session, the simulator, and proxy builders."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from proxy.app import create_app
from proxy.config.secrets import Secret
from proxy.config.settings import (
    CacheSettings,
    MerchantSettings,
    RedisSettings,
    Settings,
    UpstreamSettings,
)
from proxy.devtools.simulator import SimulatorState, create_simulator_app
from tests.support.processes import RedisProcess, ServiceProcess, simulator_process

# The `logs` fixture (JSON log lines captured in memory), for every test folder.
pytest_plugins = ["tests.support.logcapture"]

MERCHANT = "merchant_a"
API_KEY = "key_a_0123456789"
OTHER_MERCHANT = "merchant_b"
OTHER_API_KEY = "key_b_9876543210"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisProcess]:
    server = RedisProcess().start()
    yield server
    server.close()


@pytest.fixture
def own_redis() -> Iterator[RedisProcess]:
    """A redis-server only this test uses, so the test may stop and restart it."""
    server = RedisProcess().start()
    yield server
    server.close()


@pytest.fixture
def redis_proc() -> Iterator[RedisProcess]:
    """A redis-server process of this test's own (it may stop and restart it)."""
    server = RedisProcess().start()
    yield server
    server.close()


@pytest.fixture
def sim() -> Iterator[ServiceProcess]:
    """`order-proxy simulate` as a process: one merchant, `demo_merchant` / `demo_api_key`."""
    proc = simulator_process().start()
    yield proc
    proc.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session for talking to processes; bounded, so a request nobody answers fails
    here rather than at the test's timeout."""
    connector = aiohttp.TCPConnector(limit=200)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        yield session


@pytest.fixture
def simulator_state() -> SimulatorState:
    state = SimulatorState({MERCHANT: API_KEY, OTHER_MERCHANT: OTHER_API_KEY})
    state.seed_samples()
    return state


@pytest.fixture
async def simulator(
    simulator_state: SimulatorState, aiohttp_server: Callable[..., Awaitable[TestServer]]
) -> TestServer:
    return await aiohttp_server(create_simulator_app(simulator_state))


def make_settings(upstream_url: URL, *, redis_url: str | None = None, **changes: Any) -> Settings:
    """Settings for a test: two merchants, the simulator as upstream, a private key prefix,
    and no verification sample (its background reads would make call counts a matter of
    chance; the tests of the sample turn it on)."""
    settings = Settings(
        merchants=(
            MerchantSettings(MERCHANT, Secret(API_KEY, "test")),
            MerchantSettings(OTHER_MERCHANT, Secret(OTHER_API_KEY, "test")),
        ),
        default_merchant=MERCHANT,
        upstream=UpstreamSettings(base_url=upstream_url, timeout_seconds=5.0),
        redis=RedisSettings(
            url=Secret(redis_url, "test") if redis_url else None,
            # Each test writes under its own prefix: no FLUSHALL, no cross-test leaks.
            key_prefix=f"test-{uuid.uuid4().hex[:12]}",
        ),
        cache=CacheSettings(verify_sample_rate=0.0),
    )
    return replace(settings, **changes)


ProxyFactory = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


@pytest.fixture
async def make_proxy(
    aiohttp_client: Callable[..., Awaitable[TestClient[web.Request, web.Application]]],
    simulator: TestServer,
    redis_server: RedisProcess,
) -> ProxyFactory:
    """Build a proxy client in front of the simulator; Redis by default, memory on request."""

    async def factory(
        *, memory: bool = False, settings: Settings | None = None, **changes: Any
    ) -> TestClient[web.Request, web.Application]:
        if settings is None:
            settings = make_settings(
                simulator.make_url(""),
                redis_url=None if memory else redis_server.url,
                **changes,
            )
        return await aiohttp_client(create_app(settings))

    return factory


@pytest.fixture
async def proxy(make_proxy: ProxyFactory) -> TestClient[web.Request, web.Application]:
    return await make_proxy()


@pytest.fixture
async def redis_client(redis_server: RedisProcess) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()
