"""`make soak`: minutes of mixed traffic with faults against real processes, on loopback only.

Starts its own redis-server (free port, no persistence), the simulator and `order-proxy serve`,
drives a fixed concurrency of callers through a schedule of faults (Juspay 500s, resets, slow
bodies, Redis killed and restarted, ...), and reports answers by status, latency percentiles
and the proxy's memory (RSS) over time. Exits 1 if the proxy ever answered 500, served a
non-final status from cache, or its memory kept growing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proxy.core.policy import FAILURE_STATUSES, FINAL_STATUSES
from tests.support.processes import (
    RedisProcess,
    ServiceProcess,
    proxy_process,
    simulator_process,
)

MERCHANT, KEY = "demo_merchant", "demo_api_key"
FINAL = ["JP1636474794", "JPAYNEW032", "145678234", "XXXX1234", "234823498237423894273498"]
PENDING = [f"SOAK-PEND-{i}" for i in range(5)]
# Read with plain GETs only (never no-cache): when Juspay refunds it without a webhook, only
# the verification sample can notice.
QUIET_ORDER = "SOAK-REFUND-1"
# (seconds, name, simulator fault or None, redis action)
SCHEDULE = [
    (10, "steady", None, None),
    (5, "juspay 500s", {"kind": "status", "status": 500}, None),
    (5, "steady", None, None),
    (5, "resets", {"kind": "reset"}, None),
    (5, "slow bodies", {"kind": "slow_body", "delay": 0.3}, None),
    (5, "redis down", None, "stop"),
    (5, "redis back", None, "start"),
    (5, "partial bodies", {"kind": "partial_body"}, None),
    (5, "juspay 429s", {"kind": "status", "status": 429}, None),
    # Juspay refunds a cached order and its webhook never comes: only the verification sample
    # can notice (and its fresh read replaces the stale entry).
    (5, "refund, no webhook", None, "refund"),
    (5, "steady", None, None),
]
# What the report reads back from the proxy's /metrics at the end.
CONSISTENCY_METRICS = (
    "order_proxy_cache_verifications_total",
    "order_proxy_cache_fenced_saves_total",
    "order_proxy_cache_invalidations_total",
    "order_proxy_cache_rejected_entries_total",
)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def control(
    http: aiohttp.ClientSession, sim: ServiceProcess, path: str, body: object
) -> None:
    method = "DELETE" if body is None else "POST"
    async with http.request(method, f"{sim.url}/__sim/{path}", json=body) as resp:
        resp.raise_for_status()


async def caller(
    *,
    http: aiohttp.ClientSession,
    proxy: ServiceProcess,
    stop: asyncio.Event,
    statuses: Counter[str],
    latencies: list[float],
    problems: list[str],
) -> None:
    rng = random.Random()  # noqa: S311 - traffic mix, not security
    while not stop.is_set():
        roll = rng.random()
        if roll < 0.6:
            order_id = rng.choice(FINAL)
        elif roll < 0.7:
            order_id = QUIET_ORDER
        elif roll < 0.95:
            order_id = rng.choice(PENDING)
        else:
            order_id = f"SOAK-MISSING-{rng.randrange(1000)}"
        no_cache = order_id != QUIET_ORDER and rng.random() < 0.02
        headers = {"Cache-Control": "no-cache"} if no_cache else {}
        started = time.perf_counter()
        try:
            async with http.get(f"{proxy.url}/orders/{order_id}", headers=headers) as resp:
                body = await resp.read()
                cache = resp.headers.get("X-Cache", "")
                status = resp.status
        except aiohttp.ClientError as exc:
            statuses[f"client error {type(exc).__name__}"] += 1
            continue
        latencies.append(time.perf_counter() - started)
        if len(latencies) > 200_000:
            del latencies[: len(latencies) // 2]
        statuses[str(status)] += 1
        if status == 500:
            problems.append("answered 500")
        if cache in ("HIT", "STALE"):
            order_status = json.loads(body).get("status")
            if order_status not in FINAL_STATUSES | FAILURE_STATUSES | {"NOT_FOUND"}:
                problems.append(f"{order_status} served from cache")


async def soak(seconds: float, concurrency: int) -> int:
    redis = RedisProcess()
    sim = simulator_process(MERCHANT, KEY)
    proxy = proxy_process(
        {
            "JUSPAY_BASE_URL": sim.url,
            "JUSPAY_MERCHANT_ID": MERCHANT,
            "JUSPAY_API_KEY": KEY,
            "REDIS_URL": redis.url,
            "JUSPAY_TIMEOUT_SECONDS": "3",
            # Ten times the default, so a few minutes give a sample worth reading.
            "PROXY_VERIFY_SAMPLE_RATE": "0.01",
        }
    )
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    problems: list[str] = []
    memory: list[tuple[float, float]] = []
    consistency: dict[str, float] = {}
    refunds: list[dict[str, object]] = []
    try:
        redis.start()
        sim.start()
        proxy.start()
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            for order_id in PENDING:
                await control(http, sim, "orders", {"order_id": order_id, "status": "PENDING_VBV"})
            await control(http, sim, "orders", {"order_id": QUIET_ORDER, "status": "CHARGED"})
            stop = asyncio.Event()
            callers = [
                asyncio.create_task(
                    caller(
                        http=http,
                        proxy=proxy,
                        stop=stop,
                        statuses=statuses,
                        latencies=latencies,
                        problems=problems,
                    )
                )
                for _ in range(concurrency)
            ]
            started = time.monotonic()
            memory.append((0.0, rss_mib(proxy.pid)))
            step = 0
            while time.monotonic() - started < seconds:
                length, name, fault, redis_action = SCHEDULE[step % len(SCHEDULE)]
                step += 1
                if fault is not None:
                    await control(http, sim, "faults", fault)
                if redis_action == "refund":
                    # Refunds accumulate, as Juspay's do: each phase adds one.
                    refunds.append({"id": f"rf-soak-{len(refunds) + 1}", "status": "SUCCESS"})
                    await control(
                        http,
                        sim,
                        "orders",
                        {"order_id": QUIET_ORDER, "status": "CHARGED", "refunds": refunds},
                    )
                elif redis_action == "stop":
                    redis.stop()
                elif redis_action == "start":
                    redis.start()
                print(f"[{time.monotonic() - started:6.1f}s] {name}", flush=True)
                await asyncio.sleep(min(length, max(0.0, seconds - (time.monotonic() - started))))
                if fault is not None:
                    await control(http, sim, "faults", None)
                memory.append((time.monotonic() - started, rss_mib(proxy.pid)))
            if redis.proc is None:
                redis.start()
            stop.set()
            await asyncio.gather(*callers)
            consistency = await scrape(http, proxy)
    finally:
        proxy.stop()
        sim.stop()
        redis.close()

    return _report(
        seconds,
        concurrency,
        statuses=statuses,
        latencies=latencies,
        problems=problems,
        memory=memory,
        consistency=consistency,
    )


async def scrape(http: aiohttp.ClientSession, proxy: ServiceProcess) -> dict[str, float]:
    """The proxy's consistency counters, by series (labels included)."""
    async with http.get(f"{proxy.url}/metrics") as resp:
        text = await resp.text()
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(CONSISTENCY_METRICS):
            series, _, value = line.rpartition(" ")
            found[series] = float(value)
    return found


def _report(
    seconds: float,
    concurrency: int,
    *,
    statuses: Counter[str],
    latencies: list[float],
    problems: list[str],
    memory: list[tuple[float, float]],
    consistency: dict[str, float],
) -> int:
    total = sum(statuses.values())
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000 if ordered else 0.0

    first_half = [m for t, m in memory if t <= seconds / 2]
    second_half = [m for t, m in memory if t > seconds / 2]
    growth = (
        (statistics.median(second_half) - statistics.median(first_half))
        if (first_half and second_half)
        else 0.0
    )
    report = {
        "seconds": seconds,
        "concurrency": concurrency,
        "requests": total,
        "requests_per_second": round(total / seconds, 1),
        "answers": dict(statuses.most_common()),
        "latency_ms": {
            "p50": round(pct(0.5), 2),
            "p95": round(pct(0.95), 2),
            "p99": round(pct(0.99), 2),
            "max": round(pct(1.0), 2),
        },
        "rss_mib": {
            "start": round(memory[0][1], 1),
            "end": round(memory[-1][1], 1),
            "max": round(max(m for _, m in memory), 1),
            "median_growth_second_half": round(growth, 1),
        },
        "consistency": consistency,
        "problems": sorted(set(problems)),
    }
    print(json.dumps(report, indent=2))
    failed = bool(problems) or growth > 32
    print("SOAK FAILED" if failed else "SOAK PASSED")
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180.0, help="run length (default 180)")
    parser.add_argument("--concurrency", type=int, default=16, help="callers (default 16)")
    args = parser.parse_args()
    return asyncio.run(soak(args.seconds, args.concurrency))


if __name__ == "__main__":
    raise SystemExit(main())
