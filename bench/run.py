"""order-proxy benchmark: the proxy's hot paths against ceilings measured in the same run.

    .venv/bin/python -m bench.run [--quick] [--duration S] [--runs N] [--only a,b]

Every server under test is a single process pinned to core 0; wrk (-t1 -c32 --latency), the
simulator, redis-server and this harness share core 1. Each scenario is warmed up, then run
`--runs` times; the table shows the MEDIAN run (by req/s) with its p50, p99 and the server's
CPU time per request (utime+stime from /proc/<pid>/stat over the run / requests).

Scenarios (all on 127.0.0.1):
  ceilings  aiohttp's low-level web.Server and a bare web.Application returning the bytes
            from memory; aiohttp + one redis.asyncio GET;
            aiohttp forwarding to the simulator with one shared session; nginx proxy_cache
            hit with an injected Authorization header (when nginx is installed)
  proxy     `order-proxy serve`, stdout redirected to a file: in-process HIT and MISS in the
            default configuration (LOG_LEVEL=info: one JSON access line per request, checked
            after the run), the same with the fast lane off, with quiet logs (warning), Redis
            HIT (info), MISS on one order, a
            1,000-request burst for one uncached order (upstream calls counted by the
            simulator), 100k distinct orders through the in-process layer with a 64 MiB bound
            (RSS checked)
  tracing   the in-process HIT (quiet logs) with a caller's traceparent and tracing off, and
            with tracing on (OTLP to a sink on the client core) at 1 % and 100 % sampling
  workers   the default-config HIT (with Redis, which several workers need) with the server
            on both cores: one process, then `serve --workers 2` (wrk unpinned: two cores)
  accessline  CPU of one access line (bench.accessline_micro) vs the structlog line
  decode    msgspec status-view decode vs json.loads of the same ~4 KB body

Targets are reported as PASS / FALL SHORT; the exit status never depends on them. Raw results
go to bench/runs/<UTC timestamp>.json and bench/runs/latest.json (ignored by git); `make
bench-accept` copies the latest to bench/results/latest.json, the tracked reference.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

from bench.env import (
    HIT_ORDER,
    MEMORY_MAX_BYTES,
    PENDING_COUNT,
    PENDING_ORDER,
    PENDING_PREFIX,
    SIM_HEADERS,
    Config,
    Env,
    put_order,
    start_redis,
    start_simulator,
)
from bench.harness import BENCH, BenchError, Pinning, Processes, request
from bench.report import HEADER, build_rows, machine_info, notes, render_table
from bench.scenarios import SCENARIOS

RESULTS = BENCH / "runs"  # ignored by git; `make bench-accept` keeps a run as the reference


# --- main ------------------------------------------------------------------------------------


def _interrupt(signum: int, _: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def parse_args(argv: list[str] | None) -> Config:
    p = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="1 run of 2 s each: a harness smoke test")
    p.add_argument("--duration", type=float, default=None, help="seconds per run (default 5)")
    p.add_argument("--runs", type=int, default=None, help="runs per scenario (default 3)")
    p.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    p.add_argument(
        "--only",
        default="",
        help="comma-separated scenarios to run: " + ",".join(SCENARIOS),
    )
    args = p.parse_args(argv)
    only = frozenset(s for s in args.only.split(",") if s)
    unknown = only - SCENARIOS.keys()
    if unknown:
        p.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    runs = args.runs or (1 if args.quick else 3)
    duration = args.duration or (2.0 if args.quick else 5.0)
    if runs < 1 or duration < 1:
        p.error("--runs and --duration must be at least 1")
    return Config(
        runs=runs,
        duration=duration,
        warmup=1.0 if args.quick else 2.0,
        connections=args.connections,
        burst_count=1000,
        burst_delay=0.5,
        memory_orders=20_000 if args.quick else 100_000,
        quick=args.quick,
        only=only,
    )


def setup_env(cfg: Config, pinning: Pinning, procs: Processes, tmp: Path) -> Env:
    """The simulator with the bench orders, the bench body, and redis-server."""
    sim, sim_port = start_simulator(procs)
    put_order(sim_port, HIT_ORDER, "CHARGED")
    put_order(sim_port, PENDING_ORDER, "PENDING_VBV")
    for i in range(PENDING_COUNT):
        put_order(sim_port, f"{PENDING_PREFIX}{i}", "PENDING_VBV", size_like=PENDING_ORDER)
    answer = request(sim_port, f"/orders/{HIT_ORDER}", headers=SIM_HEADERS)
    if answer.status != 200:
        raise BenchError(f"simulator answered {answer.status} for {HIT_ORDER}")
    body_file = tmp / "body.json"
    body_file.write_bytes(answer.body)
    redis_started = start_redis(procs, tmp)
    if redis_started is None:
        print("redis-server not found: the Redis scenarios are skipped", flush=True)
    return Env(
        cfg=cfg,
        pinning=pinning,
        procs=procs,
        tmp=tmp,
        sim=sim,
        sim_port=sim_port,
        redis=redis_started[0] if redis_started else None,
        redis_url=redis_started[1] if redis_started else None,
        body=answer.body,
        body_file=body_file,
    )


def _log_tails(tmp: Path, since: float) -> dict[str, str]:
    """The end of every log written to since a scenario started (for its error record)."""
    return {
        log.stem: log.read_bytes()[-1500:].decode("utf-8", "replace")
        for log in sorted(tmp.glob("*.log"))
        if log.stat().st_mtime >= since
    }


def run_scenarios(env: Env) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for key, (label, func) in SCENARIOS.items():
        if env.cfg.only and key not in env.cfg.only:
            continue
        t0 = time.monotonic()
        wall0 = time.time()
        print(f"-- {label} ...", end=" ", flush=True)
        try:
            results[key] = func(env)
        except Exception as exc:  # one broken scenario must not lose the others' results
            results[key] = {
                "error": f"{type(exc).__name__}: {exc}",
                "logs": _log_tails(env.tmp, wall0 - 1),
            }
        status = "ERROR" if "error" in results[key] else "done"
        print(f"{status} ({time.monotonic() - t0:.0f}s)", flush=True)
    return results


def write_results(record: dict[str, Any]) -> str:
    RESULTS.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(record, indent=2, default=str)
    (RESULTS / f"{stamp}.json").write_text(text)
    (RESULTS / "latest.json").write_text(text)
    return f"bench/runs/{stamp}.json"


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    pinning = Pinning.detect()
    print(f"pinning: {pinning.note}", flush=True)
    info = machine_info(pinning)
    pinning.pin_self()
    # Explicitly, also for SIGINT: a shell starting us in the background may ignore it.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="order-proxy-bench-") as tmp_name:
        tmp = Path(tmp_name)
        procs = Processes(tmp, pinning)
        try:
            env = setup_env(cfg, pinning, procs, tmp)
            print(f"body: {len(env.body)} bytes ({HIT_ORDER}, CHARGED)", flush=True)
            results = run_scenarios(env)
        except KeyboardInterrupt:
            print("\ninterrupted: stopping every process started", file=sys.stderr)
            return 130
        except BenchError as exc:
            print(f"bench set-up failed: {exc}", file=sys.stderr)
            return 1
        finally:
            procs.close()

    rows = build_rows(results, cfg)
    print()
    print(render_table(rows))
    print()
    for note in notes(results, cfg, pinning, len(env.body)):
        print(note)
    path = write_results(
        {
            "machine": info,
            "config": {
                "runs": cfg.runs,
                "duration_seconds": cfg.duration,
                "warmup_seconds": cfg.warmup,
                "wrk": f"wrk -t1 -c{cfg.connections} --latency",
                "quick": cfg.quick,
                "body_bytes": len(env.body),
                "log_level": "info (default scenarios) / warning (quiet)",
                "burst_count": cfg.burst_count,
                "burst_upstream_delay_seconds": cfg.burst_delay,
                "memory_orders": cfg.memory_orders,
                "memory_max_bytes": MEMORY_MAX_BYTES,
            },
            "elapsed_seconds": round(time.monotonic() - started, 1),
            "table": {"header": HEADER, "rows": rows},
            "results": results,
        }
    )
    print(f"\nraw results: {path} (and bench/runs/latest.json; `make bench-accept` keeps it)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
