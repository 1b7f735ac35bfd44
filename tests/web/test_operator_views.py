"""/metrics and /readyz at a bounded cost however often they are asked (no key needed)."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import redis.asyncio as aioredis

from proxy.web.operator_views import Coalesced
from tests.conftest import ProxyFactory, make_settings
from tests.support.processes import RedisProcess


async def _pings(client: aioredis.Redis) -> int:
    stats: dict[str, Any] = await client.info("commandstats")
    return int(stats.get("cmdstat_ping", {}).get("calls", 0))


async def test_a_readyz_flood_costs_redis_about_one_check_a_second(
    make_proxy: ProxyFactory, simulator: Any, own_redis: RedisProcess
) -> None:
    proxy = await make_proxy(
        settings=make_settings(simulator.make_url(""), redis_url=own_redis.url)
    )
    client = aioredis.Redis.from_url(own_redis.url)
    try:
        before = await _pings(client)
        started = time.monotonic()
        for _ in range(6):  # 300 readiness checks, in bursts of 50
            answers = await asyncio.gather(*(proxy.get("/readyz") for _ in range(50)))
            assert all(a.status == 200 for a in answers)
            assert {(await a.json())["cache"]["redis"] for a in answers} == {"up"}
        elapsed = time.monotonic() - started
        pings = await _pings(client) - before
    finally:
        await client.aclose()
    # One check per second at most, plus the bus' own pings (two a second): far below 300.
    assert pings <= 3 * (elapsed + 1) + 2, (pings, elapsed)


async def test_metrics_are_rendered_at_most_once_an_interval_and_never_older_than_the_scrape() -> (
    None
):
    renders: list[float] = []

    def render() -> float:
        renders.append(time.monotonic())
        return renders[-1]

    coalesced = Coalesced(render, interval=0.2)

    async def fresh_scrape() -> tuple[float, float]:
        at = time.monotonic()
        return at, await coalesced.get()

    results: list[tuple[float, float]] = []
    for _ in range(5):  # five bursts of 40 scrapes, one after the other
        results += await asyncio.gather(*(fresh_scrape() for _ in range(40)))
    # 200 scrapes over about a second: one rendering per 0.2 s, give or take the first.
    assert len(renders) <= 7
    assert all(rendered >= at for at, rendered in results)
    gaps = [b - a for a, b in itertools.pairwise(renders)]
    assert min(gaps) >= 0.2 - 0.01
