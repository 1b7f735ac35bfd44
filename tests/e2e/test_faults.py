"""Fault injection with real processes: proxies, the simulator and redis-server, on loopback.

The proxy runs as `order-proxy serve` subprocesses; Redis is killed and restarted under
traffic; the simulator is switched to 500s, resets, slow and cut-short bodies, and back.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from proxy.core.policy import FAILURE_STATUSES, FINAL_STATUSES
from tests.support.processes import (
    RedisProcess,
    ServiceProcess,
    proxy_process,
)
from tests.support.simctl import control, get

pytestmark = pytest.mark.slow

MERCHANT, KEY = "demo_merchant", "demo_api_key"
FINAL_ORDERS = ["JP1636474794", "JPAYNEW032", "145678234", "XXXX1234"]
PENDING_ORDERS = ["FLT-PEND-1", "FLT-PEND-2"]


def proxy_env(sim: ServiceProcess, redis: RedisProcess, **extra: str) -> dict[str, str]:
    return {
        "JUSPAY_BASE_URL": sim.url,
        "JUSPAY_MERCHANT_ID": MERCHANT,
        "JUSPAY_API_KEY": KEY,
        "REDIS_URL": redis.url,
        "JUSPAY_TIMEOUT_SECONDS": "3",
        **extra,
    }


async def test_sigterm_drains_in_flight_requests_and_exits_zero(
    sim: ServiceProcess, redis_proc: RedisProcess, http: aiohttp.ClientSession
) -> None:
    proxy = proxy_process(
        proxy_env(sim, redis_proc, PROXY_SHUTDOWN_DELAY_SECONDS="1", PROXY_DRAIN_SECONDS="5")
    ).start()
    try:
        await control(http, sim, "orders", order_id="SLOW-1", status="PENDING_VBV")
        await control(http, sim, "faults", kind="latency", delay=1.5, order_id="SLOW-1")
        slow = asyncio.ensure_future(get(http, f"{proxy.url}/orders/SLOW-1"))
        # Wait until the request is really in flight at the upstream.
        for _ in range(200):
            if (await control(http, sim, "stats"))["in_flight"] >= 1:
                break
            await asyncio.sleep(0.01)
        else:
            pytest.fail("the slow request never reached the simulator")
        proxy.terminate()
        # Readiness turns false at once, while the listener is still open.
        for _ in range(100):
            async with http.get(f"{proxy.url}/readyz") as resp:
                if resp.status == 503:
                    assert (await resp.json())["status"] == "draining"
                    break
            await asyncio.sleep(0.01)
        else:
            pytest.fail("readiness never turned false after SIGTERM")
        status, _, order_status = await slow
        assert (status, order_status) == (200, "PENDING_VBV")
        assert await asyncio.to_thread(proxy.wait, 10) == 0
        assert b'"stopped"' in proxy.output()
    finally:
        proxy.stop()


async def test_two_proxies_on_one_redis_make_one_upstream_call_per_missed_key(
    sim: ServiceProcess, redis_proc: RedisProcess, http: aiohttp.ClientSession
) -> None:
    a = proxy_process(proxy_env(sim, redis_proc)).start()
    b = proxy_process(proxy_env(sim, redis_proc)).start()
    try:
        await control(http, sim, "orders", order_id="DUO-PEND", status="PENDING_VBV")
        for order_id in ("DUO-PEND", "JPAYNEW032"):
            await control(http, sim, "faults", kind="latency", delay=0.5, order_id=order_id)
        for order_id in ("DUO-PEND", "JPAYNEW032"):
            urls = [f"{p.url}/orders/{order_id}" for p in (a, b) for _ in range(10)]
            results = await asyncio.gather(*(get(http, u) for u in urls))
            assert {r[0] for r in results} == {200}
            stats = await control(http, sim, "stats")
            assert stats["calls"][order_id] == 1, (order_id, stats)
    finally:
        a.stop()
        b.stop()


async def test_faults_under_traffic_never_500_never_stale_status_and_recover(
    sim: ServiceProcess,
    redis_proc: RedisProcess,
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    config = tmp_path / "proxy.toml"
    config.write_text(
        "[upstream]\nmax_concurrent = 4\nmax_queue = 64\nattempt_timeout_seconds = 1.0\n"
        "[circuit]\nopen_seconds = 0.5\nfailure_threshold = 20\nmin_calls = 50\n"
    )
    proxy = proxy_process(proxy_env(sim, redis_proc, PROXY_CONFIG_FILE=str(config))).start()
    seen: Counter[tuple[str, int]] = Counter()
    violations: list[str] = []
    try:
        for order_id in PENDING_ORDERS:
            await control(http, sim, "orders", order_id=order_id, status="PENDING_VBV")
        await control(http, sim, "reset", method="POST")

        async def burst(phase: str, rounds: int = 3) -> None:
            for _ in range(rounds):
                ids = FINAL_ORDERS + PENDING_ORDERS
                results = await asyncio.gather(
                    *(get(http, f"{proxy.url}/orders/{i}") for i in ids for _ in range(3))
                )
                for status, cache, order_status in results:
                    seen[(phase, status)] += 1
                    if status == 500 or status not in (200, 502, 503, 504):
                        violations.append(f"{phase}: answered {status}")
                    if cache in ("HIT", "STALE") and order_status not in (
                        FINAL_STATUSES | FAILURE_STATUSES
                    ):
                        violations.append(f"{phase}: {order_status} served from cache")

        await burst("baseline")
        redis_proc.stop()
        await burst("redis down")
        redis_proc.start()
        await burst("redis back")
        for phase, fault in [
            ("500s", {"kind": "status", "status": 500}),
            ("resets", {"kind": "reset"}),
            ("slow bodies", {"kind": "slow_body", "delay": 0.2}),
            ("partial bodies", {"kind": "partial_body"}),
            ("timeouts", {"kind": "timeout", "delay": 5}),
        ]:
            if phase == "timeouts":
                # Abandoned (timed-out) calls stay open at the simulator, so the bulkhead is
                # checked on everything before this phase.
                stats = await control(http, sim, "stats")
                assert stats["max_in_flight"] <= 4, stats
            await control(http, sim, "faults", **fault)
            await burst(phase, rounds=2)
            await control(http, sim, "faults", method="DELETE")

        # Recovery without restarting anything: fresh reads succeed and caching works.
        recovered = [await get(http, f"{proxy.url}/orders/{i}") for i in FINAL_ORDERS]
        assert {r[0] for r in recovered} == {200}
        again = [await get(http, f"{proxy.url}/orders/{i}") for i in FINAL_ORDERS]
        assert {r[1] for r in again} == {"HIT"}
        # The circuit may still be open from the timeout phase: a caller honours Retry-After.
        async with http.get(f"{proxy.url}/orders/{PENDING_ORDERS[0]}") as resp:
            if resp.status == 503:
                assert (await resp.json())["error_code"] == "upstream_circuit_open"
                await asyncio.sleep(int(resp.headers["Retry-After"]))
        pending = await get(http, f"{proxy.url}/orders/{PENDING_ORDERS[0]}")
        assert pending[:2] == (200, "MISS")

        assert violations == []
        # Every phase was really exercised: successes at baseline, failures under faults.
        assert seen[("baseline", 200)] > 0
        assert seen[("redis down", 200)] > 0
        assert seen[("500s", 502)] + seen[("500s", 503)] + seen[("500s", 200)] > 0
    finally:
        proxy.stop()


async def test_a_hundred_waiters_on_two_proxies_share_one_polling_schedule(
    sim: ServiceProcess, redis_proc: RedisProcess, http: aiohttp.ClientSession
) -> None:
    a = proxy_process(proxy_env(sim, redis_proc, LOG_LEVEL="info")).start()
    b = proxy_process(proxy_env(sim, redis_proc, LOG_LEVEL="info")).start()
    try:
        change_after = 3.0
        await control(
            http,
            sim,
            "orders",
            order_id="WAIT-100",
            statuses=["PENDING_VBV", "CHARGED"],
            after_seconds=change_after,
        )
        loop = asyncio.get_running_loop()
        started = loop.time()

        async def waiter(proxy: ServiceProcess) -> tuple[int, str, str, float]:
            async with http.get(f"{proxy.url}/orders/WAIT-100?wait=20") as resp:
                body = await resp.json()
                return resp.status, resp.headers["X-Wait"], body["status"], loop.time() - started

        results = await asyncio.gather(*(waiter(p) for p in (a, b) for _ in range(50)))
        assert {r[:3] for r in results} == {(200, "final", "CHARGED")}
        latest = max(r[3] for r in results)
        # Everyone answers within one polling interval (at most 5 s) of the change.
        assert change_after <= latest <= change_after + 5.0 + 1.0
        calls = (await control(http, sim, "stats"))["calls"]["WAIT-100"]
        # Callers polling Juspay themselves every second would have made ~300 calls.
        assert calls <= 12, calls
    finally:
        a.stop()
        b.stop()
