"""CPU cost of one access line: the msgspec line through the buffered sink vs the structlog line.

    .venv/bin/python -m bench.accessline_micro [--lines 200000] [--per-turn 32] [--out FILE]

Both write real lines to a real file (`--out`, default a temporary file), from an event loop,
`--per-turn` lines per loop turn (about what one turn handles under load). The cost is the
process's CPU time per line (write(2) included), the median of 5 repetitions, minus the same
loop turns with no line. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import structlog

from proxy.appkeys import RequestRecord
from proxy.observe import accesslog
from proxy.observe.logs import configure_logging
from proxy.web.middlewares import _write_request_line

FIELDS: dict[str, Any] = {
    "method": "GET",
    "route": "order",
    "status": 200,
    "duration_ms": 0.412,
    "cache": "hit",
    "merchant_id": "demo_merchant",
    "order_id": "BENCH-HIT",
    "order_status": "CHARGED",
}
REQUEST_ID = "0123456789abcdef0123456789abcdef"


# The middleware's own function, on a stand-in for the two request attributes it reads.
REQUEST: Any = SimpleNamespace(method="GET", path="/orders/BENCH-HIT")
RECORD = RequestRecord(
    request_id=REQUEST_ID,
    route="order",
    merchant_id="demo_merchant",
    order_id="BENCH-HIT",
    cache="hit",
    order_status="CHARGED",
)


def fast_line() -> None:
    _write_request_line(REQUEST, RECORD, 200, 0.000412, True)


_log = structlog.get_logger("proxy.access")


def structlog_line() -> None:
    token = accesslog.REQUEST_ID.set(REQUEST_ID)
    _log.info("request", **FIELDS)
    accesslog.REQUEST_ID.reset(token)


def _nothing() -> None:
    return None


async def drive(emit: Any, lines: int, per_turn: int) -> float:
    started = time.process_time()
    for _ in range(lines // per_turn):
        for _ in range(per_turn):
            emit()
        await asyncio.sleep(0)  # one loop turn: the sink hands its buffer over here
    sink = accesslog.sink()
    assert sink is not None
    sink.close()  # every line written (the writer thread's CPU is in process_time too)
    return (time.process_time() - started) * 1e6 / lines


def measure(kind: str, out: Path, lines: int, per_turn: int) -> dict[str, Any]:
    runs = []
    for _ in range(5):
        with out.open("w") as stream:
            configure_logging("info", "json", stream=stream)
            if kind == "structlog":
                accesslog.configure(json_lines=False, level=logging.INFO)
            emit = {"msgspec": fast_line, "structlog": structlog_line}.get(kind, _nothing)
            runs.append(asyncio.run(drive(emit, lines, per_turn)))
    return {"median_us": statistics.median(runs), "runs_us": runs}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--lines", type=int, default=200_000)
    p.add_argument("--per-turn", type=int, default=32)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="order-proxy-accessline-") as tmp:
        out = args.out or Path(tmp) / "access.log"
        # The loop turns themselves (asyncio.sleep(0) every --per-turn lines) cost the same in
        # every variant: measured with no line at all and subtracted.
        empty = measure("empty", out, args.lines, args.per_turn)["median_us"]
        fast = measure("msgspec", out, args.lines, args.per_turn)
        slow = measure("structlog", out, args.lines // 4, args.per_turn)
        fast["median_us"] -= empty
        slow["median_us"] -= empty
        result = {
            "lines": args.lines,
            "per_turn": args.per_turn,
            "loop_turn_us_per_line_subtracted": empty,
            "msgspec_sink": fast,
            "structlog": slow,
            "sample_line": out.read_text().splitlines()[0] if out.exists() else None,
        }
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
