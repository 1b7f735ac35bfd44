"""Retries, circuit breaker, bulkhead and stale-if-error, in-process against the simulator."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestServer

from proxy.appkeys import METRICS, ORDER_SERVICE
from proxy.cache import keys
from proxy.cache.entries import CachedEntry, EntryCodec, etag_for
from proxy.config.settings import Settings
from proxy.core.errors import CircuitOpen
from proxy.core.orders import OrderQuery
from proxy.devtools.simulator import Fault, SimulatorState
from proxy.upstream.circuit import CircuitBreaker, CircuitSettings, CircuitState
from tests.conftest import MERCHANT, ProxyFactory, make_settings
from tests.support.epochs import redis_epoch
from tests.support.processes import RedisProcess

ORDER = "JP1636474794"


def metric(app: object, name: str, **labels: str) -> float:
    value = app[METRICS].registry.get_sample_value(name, labels)  # type: ignore[index]
    return float(value or 0.0)


def tuned(simulator: TestServer, redis_url: str | None = None, **upstream: object) -> Settings:
    settings = make_settings(simulator.make_url(""), redis_url=redis_url)
    return replace(settings, upstream=replace(settings.upstream, **upstream))


async def test_transient_503s_are_retried_and_the_caller_sees_the_order(
    make_proxy: ProxyFactory, simulator_state: SimulatorState, simulator: TestServer
) -> None:
    simulator_state.add_fault(Fault(kind="status", status=503, remaining=2))
    proxy = await make_proxy(settings=tuned(simulator, backoff_base_seconds=0.01))
    resp = await proxy.get(f"/orders/{ORDER}")
    assert resp.status == 200
    assert simulator_state.calls[ORDER] == 3
    assert metric(proxy.app, "order_proxy_upstream_retries_total") == 2
    assert metric(proxy.app, "order_proxy_upstream_requests_total", outcome="server_error") == 2


async def test_resets_are_retried(
    make_proxy: ProxyFactory, simulator_state: SimulatorState, simulator: TestServer
) -> None:
    simulator_state.add_fault(Fault(kind="reset", remaining=1))
    proxy = await make_proxy(settings=tuned(simulator, backoff_base_seconds=0.01))
    resp = await proxy.get(f"/orders/{ORDER}")
    assert resp.status == 200
    assert simulator_state.calls[ORDER] == 2


async def test_429_is_retried_after_retry_after(
    make_proxy: ProxyFactory, simulator_state: SimulatorState, simulator: TestServer
) -> None:
    simulator_state.add_fault(Fault(kind="status", status=429, remaining=1))
    proxy = await make_proxy(settings=tuned(simulator))
    loop = asyncio.get_running_loop()
    started = loop.time()
    resp = await proxy.get(f"/orders/{ORDER}")
    assert resp.status == 200
    assert simulator_state.calls[ORDER] == 2
    assert loop.time() - started >= 1.0  # the simulator's Retry-After: 1 was honoured


async def test_4xx_and_500_are_never_retried(
    make_proxy: ProxyFactory, simulator_state: SimulatorState, simulator: TestServer
) -> None:
    proxy = await make_proxy(settings=tuned(simulator, backoff_base_seconds=0.01))
    assert (await proxy.get("/orders/NOPE1")).status == 400
    assert simulator_state.calls["NOPE1"] == 1
    simulator_state.add_fault(Fault(kind="status", status=500))
    assert (await proxy.get(f"/orders/{ORDER}")).status == 502
    assert simulator_state.calls[ORDER] == 1


async def test_retries_stay_within_the_overall_deadline(
    make_proxy: ProxyFactory, simulator_state: SimulatorState, simulator: TestServer
) -> None:
    simulator_state.add_fault(Fault(kind="timeout", delay=30))
    proxy = await make_proxy(
        settings=tuned(simulator, timeout_seconds=0.6, attempt_timeout_seconds=0.25)
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    resp = await proxy.get(f"/orders/{ORDER}")
    elapsed = loop.time() - started
    assert resp.status == 504
    assert elapsed < 1.5
    assert simulator_state.calls[ORDER] >= 2  # it did retry the timed-out attempt


def test_circuit_opens_on_a_run_of_failures_and_probes_after_the_pause() -> None:
    now = [0.0]
    changes: list[tuple[CircuitState, CircuitState]] = []
    breaker = CircuitBreaker(
        CircuitSettings(failure_threshold=3, open_seconds=5),
        on_change=lambda old, new: changes.append((old, new)),
        clock=lambda: now[0],
    )
    for _ in range(3):
        breaker.before_call()
        breaker.record(failed=True)
    assert breaker.state is CircuitState.OPEN
    with pytest.raises(CircuitOpen) as info:
        breaker.before_call()
    assert info.value.retry_after == 5
    now[0] = 5.0
    breaker.before_call()  # the probe
    assert breaker.state is CircuitState.HALF_OPEN
    with pytest.raises(CircuitOpen):
        breaker.before_call()  # a second caller while probing: one probe at a time
    breaker.record(failed=False)
    assert breaker.state is CircuitState.CLOSED
    assert changes == [
        (CircuitState.CLOSED, CircuitState.OPEN),
        (CircuitState.OPEN, CircuitState.HALF_OPEN),
        (CircuitState.HALF_OPEN, CircuitState.CLOSED),
    ]


def test_circuit_opens_on_failure_ratio_and_a_failed_probe_reopens() -> None:
    now = [0.0]
    breaker = CircuitBreaker(
        CircuitSettings(failure_threshold=100, failure_ratio=0.5, window=10, min_calls=10),
        clock=lambda: now[0],
    )
    for i in range(10):
        breaker.record(failed=i % 2 == 1)  # 5 of 10 failed, never 2 in a row
        if i < 9:
            assert breaker.state is CircuitState.CLOSED
    assert breaker.state is CircuitState.OPEN
    now[0] = 100.0
    breaker.before_call()
    breaker.record(failed=True)
    assert breaker.state is CircuitState.OPEN


async def test_open_circuit_fails_fast_without_calling_juspay(
    make_proxy: ProxyFactory, simulator_state: SimulatorState, simulator: TestServer
) -> None:
    simulator_state.add_fault(Fault(kind="status", status=503))
    settings = tuned(
        simulator,
        max_attempts=1,
        circuit=CircuitSettings(failure_threshold=3, open_seconds=60),
    )
    proxy = await make_proxy(settings=settings)
    for _ in range(3):
        assert (await proxy.get(f"/orders/{ORDER}")).status == 502
    assert simulator_state.calls[ORDER] == 3
    fast = await proxy.get(f"/orders/{ORDER}")
    assert fast.status == 503
    assert (await fast.json())["error_code"] == "upstream_circuit_open"
    assert int(fast.headers["Retry-After"]) >= 1
    assert simulator_state.calls[ORDER] == 3  # no call while open
    assert metric(proxy.app, "order_proxy_circuit_state") == 2
    assert metric(proxy.app, "order_proxy_upstream_rejected_total", reason="circuit_open") == 1


async def test_bulkhead_caps_concurrent_upstream_calls_and_sheds_the_rest(
    make_proxy: ProxyFactory, simulator_state: SimulatorState, simulator: TestServer
) -> None:
    ids = [f"BULK{i}" for i in range(12)]
    for order_id in ids:
        simulator_state.put_order(MERCHANT, order_id, "PENDING_VBV")
    simulator_state.add_fault(Fault(kind="latency", delay=0.3))
    proxy = await make_proxy(settings=tuned(simulator, max_concurrent=2, max_queue=3))
    responses = await asyncio.gather(*(proxy.get(f"/orders/{i}") for i in ids))
    statuses = sorted(r.status for r in responses)
    assert statuses.count(200) == 5  # 2 running + 3 queued
    assert statuses.count(503) == 7
    shed = [r for r in responses if r.status == 503]
    assert all(r.headers["Retry-After"] == "1" for r in shed)
    assert {(await r.json())["error_code"] for r in shed} == {"overloaded"}
    assert simulator_state.max_in_flight <= 2
    assert metric(proxy.app, "order_proxy_upstream_rejected_total", reason="shed") == 7


async def _seed_expired(
    redis_client: aioredis.Redis, proxy_app: object, order_id: str, status_class: str, body: bytes
) -> None:
    service = proxy_app[ORDER_SERVICE]  # type: ignore[index]
    key = service.key(OrderQuery(MERCHANT, order_id, "2023-06-30"))
    now = time.time()
    entry = CachedEntry(
        key=key,
        status_code=200,
        body=body,
        content_type="application/json",
        etag=etag_for(body),
        fetched_at=now - 100,
        fresh_until=now - 10,
        order_status="CHARGED",
        status_class=status_class,
        generation="seeded",
        epoch=await redis_epoch(redis_client),
    )
    await redis_client.set(keys.gen_key(keys.base_of(key)), b"seeded", ex=600)
    await redis_client.set(key, EntryCodec().encode(entry), ex=600)


async def test_expired_final_entry_answers_stale_when_juspay_fails(
    make_proxy: ProxyFactory,
    simulator_state: SimulatorState,
    simulator: TestServer,
    redis_client: aioredis.Redis,
    redis_server: RedisProcess,
) -> None:
    proxy = await make_proxy(settings=tuned(simulator, redis_server.url, max_attempts=1))
    body = b'{"order_id": "STALE1", "status": "CHARGED"}'
    await _seed_expired(redis_client, proxy.app, "STALE1", "final", body)
    simulator_state.add_fault(Fault(kind="status", status=500))
    resp = await proxy.get("/orders/STALE1")
    assert resp.status == 200
    assert resp.headers["X-Cache"] == "STALE"
    assert resp.headers["Cache-Status"] == "order-proxy; fwd=stale"
    assert int(resp.headers["Age"]) >= 100
    assert await resp.read() == body
    assert simulator_state.calls["STALE1"] == 1  # it did try Juspay first


async def test_expired_failure_entry_is_never_served_stale(
    make_proxy: ProxyFactory,
    simulator_state: SimulatorState,
    simulator: TestServer,
    redis_client: aioredis.Redis,
    redis_server: RedisProcess,
) -> None:
    proxy = await make_proxy(settings=tuned(simulator, redis_server.url, max_attempts=1))
    body = b'{"order_id": "STALE2", "status": "AUTHORIZATION_FAILED"}'
    await _seed_expired(redis_client, proxy.app, "STALE2", "failure", body)
    simulator_state.add_fault(Fault(kind="status", status=500))
    resp = await proxy.get("/orders/STALE2")
    assert resp.status == 502


async def test_expired_entry_is_refreshed_when_juspay_answers(
    make_proxy: ProxyFactory,
    simulator_state: SimulatorState,
    redis_client: aioredis.Redis,
) -> None:
    proxy = await make_proxy()
    await _seed_expired(redis_client, proxy.app, ORDER, "final", b'{"old": true}')
    resp = await proxy.get(f"/orders/{ORDER}")
    assert resp.headers["X-Cache"] == "MISS"
    assert (await resp.json())["order_id"] == ORDER
    again = await proxy.get(f"/orders/{ORDER}")
    assert again.headers["X-Cache"] == "HIT"
