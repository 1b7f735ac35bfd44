"""Decode micro-benchmark: msgspec's status-view decoder against json.loads on the same body.

The proxy decodes only the small status view (order_id, status, refunds[].status) of each
upstream answer; this measures what that costs next to a full `json.loads`, and next to
msgspec decoding the full Order type. Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

from proxy.core.models import Decoders


def measure(funcs: dict[str, Callable[[bytes], Any]], body: bytes, repeat: int) -> dict[str, Any]:
    """ns/op for each decoder; the repeats are interleaved so drift hits them all alike."""
    timers = {name: timeit.Timer(functools.partial(func, body)) for name, func in funcs.items()}
    loops = {name: timer.autorange()[0] for name, timer in timers.items()}  # >= 0.2 s each
    samples: dict[str, list[float]] = {name: [] for name in funcs}
    for _ in range(repeat):
        for name, timer in timers.items():
            samples[name].append(timer.timeit(loops[name]) / loops[name] * 1e9)
    return {
        name: {
            "median_ns": statistics.median(times),
            "min_ns": min(times),
            "repeats_ns": times,
            "loops": loops[name],
        }
        for name, times in samples.items()
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--body-file", type=Path, required=True)
    p.add_argument("--repeat", type=int, default=7)
    args = p.parse_args(argv)
    body = args.body_file.read_bytes()
    decoders = Decoders()
    # Same answers, or the comparison is meaningless.
    view = decoders.status_view.decode(body)
    loaded = json.loads(body)
    if (view.status, view.order_id) != (loaded["status"], loaded["order_id"]):
        raise SystemExit("msgspec and json disagree on the body")
    result: dict[str, Any] = {"body_bytes": len(body), "python": sys.version.split()[0]}
    funcs: dict[str, Callable[[bytes], Any]] = {
        "msgspec_status_view": decoders.status_view.decode,
        "msgspec_full_order": decoders.order.decode,
        "json_loads": json.loads,
    }
    result.update(measure(funcs, body, args.repeat))
    result["json_loads_over_status_view"] = (
        result["json_loads"]["median_ns"] / result["msgspec_status_view"]["median_ns"]
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
