"""`?wait=` without a way around the bounds: polls count against the caller's upstream limit,
and the waiter slots are shared fairly between clients. Real simulator and `serve` processes."""

from __future__ import annotations

import asyncio
import base64
import re
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from proxy.web.auth import hash_key
from tests.support.processes import ServiceProcess, proxy_process
from tests.support.simctl import control

POLLER_KEY = "opk_poller_0123456789abcdef"
GREEDY_KEY = "opk_greedy_0123456789abcdef"
MODEST_KEY = "opk_modest_0123456789abcdef"

CONFIG = f"""
[wait]
max_waiters = 8
poll_initial_seconds = 0.1
poll_max_seconds = 0.2

[[clients]]
name = "poller"
key_sha256 = "{hash_key(POLLER_KEY)}"
merchants = ["*"]
upstream_rate_per_second = 1
upstream_burst = 5

[[clients]]
name = "greedy"
key_sha256 = "{hash_key(GREEDY_KEY)}"
merchants = ["*"]

[[clients]]
name = "modest"
key_sha256 = "{hash_key(MODEST_KEY)}"
merchants = ["*"]
"""


def auth(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


@pytest.fixture
def served(sim: ServiceProcess, tmp_path: Path) -> Iterator[ServiceProcess]:
    config = tmp_path / "proxy.toml"
    config.write_text(CONFIG)
    proc = proxy_process(
        {
            "JUSPAY_BASE_URL": sim.url,
            "JUSPAY_MERCHANT_ID": "demo_merchant",
            "JUSPAY_API_KEY": "demo_api_key",
            "PROXY_CONFIG_FILE": str(config),
            "PROXY_DRAIN_SECONDS": "1",  # waits still open at the end need not be waited for
        }
    ).start()
    yield proc
    proc.stop()


async def _pending(http: aiohttp.ClientSession, sim: ServiceProcess, *order_ids: str) -> None:
    """Orders that stay PENDING_VBV however often they are read."""
    for order_id in order_ids:
        await control(http, sim, "orders", order_id=order_id, status="PENDING_VBV")


async def test_wait_polls_stay_within_the_callers_upstream_rate_limit(
    http: aiohttp.ClientSession, sim: ServiceProcess, served: ServiceProcess
) -> None:
    orders = [f"WAITLIMIT{i}" for i in range(5)]
    await _pending(http, sim, *orders)
    before = (await control(http, sim, "stats"))["total"]
    started = time.monotonic()

    async def wait(order_id: str) -> tuple[int, str]:
        url = f"{served.url}/orders/{order_id}?wait=4"
        async with http.get(url, headers=auth(POLLER_KEY)) as resp:
            return resp.status, resp.headers.get("X-Wait", "")

    answers = await asyncio.gather(*(wait(o) for o in orders))
    elapsed = time.monotonic() - started
    calls = (await control(http, sim, "stats"))["total"] - before
    # A poll the limit refuses is skipped, never an error for the waiting caller.
    assert answers == [(200, "timeout")] * 5
    # Limit 1/s, burst 5: the five first reads and about one poll a second (the schedule
    # alone would poll every 0.2 s: some 100 calls).
    assert calls <= 5 + elapsed + 2, (calls, elapsed)


async def _waiters(http: aiohttp.ClientSession, proxy: ServiceProcess, count: int) -> None:
    """Until the proxy reports `count` callers waiting (bounded)."""
    deadline = time.monotonic() + 15
    while True:
        async with http.get(f"{proxy.url}/metrics") as resp:
            text = await resp.text()
        found = re.search(r"^order_proxy_waiters (\S+)$", text, re.MULTILINE)
        if found and float(found.group(1)) == count:
            return
        assert time.monotonic() < deadline, found.group(0) if found else text[-500:]


async def test_one_client_cannot_take_every_wait_slot(
    http: aiohttp.ClientSession, sim: ServiceProcess, served: ServiceProcess
) -> None:
    await _pending(http, sim, "WAITFAIR1")
    url = f"{served.url}/orders/WAITFAIR1"

    async def wait(key: str, seconds: float) -> tuple[int, str]:
        async with http.get(f"{url}?wait={seconds}", headers=auth(key)) as resp:
            return resp.status, resp.headers.get("X-Wait", "")

    greedy = [asyncio.ensure_future(wait(GREEDY_KEY, 20)) for _ in range(8)]
    try:
        await _waiters(http, served, 8)  # every slot is taken, all by one client
        # Another client still gets a slot: the greedy client gives up its oldest...
        modest = asyncio.ensure_future(wait(MODEST_KEY, 3))
        done, _ = await asyncio.wait(greedy, timeout=5, return_when=asyncio.FIRST_COMPLETED)
        assert [task.result() for task in done] == [(200, "timeout")]
        await _waiters(http, served, 8)
        # ...while the greedy client, holding its share already, gets no more.
        assert await wait(GREEDY_KEY, 1) == (503, "")
        assert await modest == (200, "timeout")
    finally:
        for task in greedy:
            task.cancel()
        await asyncio.gather(*greedy, return_exceptions=True)
