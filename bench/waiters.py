"""The `waiters` bench row: upstream calls per settled order with 100 callers waiting.

100 callers want to know when one order settles (PENDING_VBV, then CHARGED after a few
seconds). Polling Juspay themselves every second, each would call until it saw CHARGED. Through
two proxy replicas with `?wait=`, they share one polling schedule.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import aiohttp


async def wait_all(ports: list[int], path: str, waiters: int) -> dict[str, Any]:
    started = time.monotonic()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one(port: int) -> tuple[int, str, str, float]:
            async with session.get(f"http://127.0.0.1:{port}{path}") as resp:
                body = await resp.json()
                return (
                    resp.status,
                    resp.headers.get("X-Wait", ""),
                    str(body.get("status")),
                    time.monotonic() - started,
                )

        results = await asyncio.gather(*(one(ports[i % len(ports)]) for i in range(waiters)))
    return {
        "answers": sorted({f"{s} {w} {o}" for s, w, o, _ in results}),
        "last_answer_seconds": round(max(r[3] for r in results), 3),
    }


def direct_polling_calls(waiters: int, settle_after: float, interval: float = 1.0) -> int:
    """Calls if each caller polled Juspay itself every `interval` s until it saw the change."""
    return waiters * (math.floor(settle_after / interval) + 1)
