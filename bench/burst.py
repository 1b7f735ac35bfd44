"""A burst client: N connections opened first, then N requests for one order sent at once.

wrk keeps a fixed number of connections busy; it cannot put 1,000 requests for one key in
flight at the same instant. This opens every connection beforehand (a few at a time, so the
server's accept backlog never overflows), writes all the requests back to back, and reads
every answer. It reports the status codes, the X-Cache values and the timings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections import Counter
from typing import Any

# Bound on connecting, and separately on reading every answer.
LIMIT_SECONDS = 30.0


async def _open(host: str, port: int, gate: asyncio.Semaphore) -> tuple[Any, Any]:
    async with gate:
        return await asyncio.open_connection(host, port)


async def _read_answer(reader: asyncio.StreamReader, started: float) -> tuple[int, str, float]:
    raw = await reader.read()  # Connection: close, so the server ends the stream
    elapsed = time.perf_counter() - started
    head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    lines = head.split("\r\n")
    status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
    x_cache = ""
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "x-cache":
            x_cache = value.strip()
    return status, x_cache, elapsed


async def burst(host: str, port: int, path: str, count: int) -> dict[str, Any]:
    """Open `count` connections, then send one GET `path` on each at once; read all answers."""
    gate = asyncio.Semaphore(64)
    t0 = time.perf_counter()
    async with asyncio.timeout(LIMIT_SECONDS):
        conns = await asyncio.gather(*(_open(host, port, gate) for _ in range(count)))
    connect_s = time.perf_counter() - t0
    await asyncio.sleep(0.2)  # let the server accept every connection before the burst
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: application/json\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    started = time.perf_counter()
    for _, writer in conns:
        writer.write(request)
    sent_s = time.perf_counter() - started
    try:
        async with asyncio.timeout(LIMIT_SECONDS):
            answers = await asyncio.gather(*(_read_answer(r, started) for r, _ in conns))
    finally:
        for _, writer in conns:
            writer.close()
    total_s = time.perf_counter() - started
    latencies = sorted(a[2] for a in answers)
    return {
        "requests": count,
        "connect_seconds": round(connect_s, 4),
        "send_spread_ms": round(sent_s * 1000, 3),
        "total_seconds": round(total_s, 4),
        "statuses": dict(Counter(str(a[0]) for a in answers)),
        "x_cache": dict(Counter(a[1] or "-" for a in answers)),
        "latency_ms": {
            "min": round(latencies[0] * 1000, 2),
            "p50": round(statistics.median(latencies) * 1000, 2),
            "max": round(latencies[-1] * 1000, 2),
        },
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", required=True)
    p.add_argument("--count", type=int, default=1000)
    args = p.parse_args(argv)
    print(json.dumps(asyncio.run(burst("127.0.0.1", args.port, args.path, args.count))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
