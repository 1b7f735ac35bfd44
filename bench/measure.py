"""Measuring one scenario: a check that it answers what it claims, then warm-up and wrk runs."""

from __future__ import annotations

import functools
import statistics
from typing import Any

from bench.env import Env, worker_pids
from bench.harness import CLIENT_CORE, BenchError, Proc, cpu_seconds, request, run_wrk


def expect(port: int, path: str, *, body: bytes | None, x_cache: str | None = None) -> None:
    """One request before measuring: the scenario must answer what it claims to."""
    answer = request(port, path)
    if answer.status != 200:
        raise BenchError(f"GET {path} answered {answer.status}: {answer.body[:200]!r}")
    if body is not None and answer.body != body:
        raise BenchError(f"GET {path} answered {len(answer.body)} bytes, not the bench body")
    if x_cache is not None:
        seen = answer.headers.get("x-cache") or answer.headers.get("x-cache-status")
        if seen != x_cache:
            raise BenchError(f"GET {path} answered X-Cache {seen!r}, expected {x_cache!r}")


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median req/s (the lower middle one for an even count)."""
    ordered = sorted(runs, key=lambda r: r["rps"])
    return ordered[(len(ordered) - 1) // 2]


def measure(
    env: Env,
    port: int,
    path: str,
    server: Proc,
    aux: dict[str, Proc] | None = None,
    *,
    script_args: tuple[str, ...] = (),
    wrk_core: int | None = CLIENT_CORE,
    headers: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Warm up, then `runs` wrk runs; CPU of the server (all its processes: `--workers`) and
    of helpers, for context. `wrk_core=None`: wrk unpinned (the workers scenarios)."""
    cfg = env.cfg
    helpers = aux or {}
    conns = cfg.connections
    wrk = functools.partial(
        run_wrk,
        env.pinning,
        port,
        path,
        connections=conns,
        script_args=script_args,
        core=wrk_core,
        headers=headers,
    )
    warm = wrk(cfg.warmup)
    pids = [server.pid, *worker_pids(server)]

    def server_cpu() -> float:
        return sum(cpu_seconds(pid) for pid in pids)

    runs: list[dict[str, Any]] = []
    for _ in range(cfg.runs):
        before = server_cpu()
        aux_before = {name: cpu_seconds(p.pid) for name, p in helpers.items()}
        result = wrk(cfg.duration)
        spent = server_cpu() - before
        if not server.alive():
            raise BenchError(f"{server.name} died during the run: {server.log_tail()}")
        requests = max(1, result["requests"])
        result["cpu_us_per_req"] = spent * 1e6 / requests
        result["server_cpu_util"] = spent / result["seconds"]
        result["aux_cpu_us_per_req"] = {
            name: (cpu_seconds(p.pid) - aux_before[name]) * 1e6 / requests
            for name, p in helpers.items()
        }
        result["aux_cpu_util"] = {
            name: (cpu_seconds(p.pid) - aux_before[name]) / result["seconds"]
            for name, p in helpers.items()
        }
        runs.append(result)
    return {
        "path": path if not script_args else f"/orders/{script_args[2]}<n> ({script_args[0]})",
        "warmup": {k: warm[k] for k in ("requests", "rps", "non_2xx")},
        "runs": runs,
        "median": median_run(runs),
        "medians_per_metric": {
            key: statistics.median(r[key] for r in runs)
            for key in ("rps", "p50_ms", "p99_ms", "cpu_us_per_req")
        },
    }
