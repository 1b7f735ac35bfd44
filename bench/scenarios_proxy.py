"""Proxy scenarios: HIT and MISS paths of `order-proxy serve`, in-process, Redis and workers."""

from __future__ import annotations

import sys
import time
from typing import Any

from bench.env import (
    HIT_ORDER,
    PENDING_CYCLE,
    PENDING_ORDER,
    PENDING_PREFIX,
    Env,
    sim_calls,
    start_proxy,
)
from bench.harness import CLIENT_CORE, BenchError, Proc, listening_port, wait_ready
from bench.measure import expect, measure


def access_lines(proc: Proc) -> int:
    """Access lines the proxy wrote to its stdout (the log file)."""
    return proc.log_path.read_bytes().count(b'"event":"request"')


def _with_log_check(proc: Proc, result: dict[str, Any], before: int) -> dict[str, Any]:
    """Default config: one access line per request, none dropped (checked after the run)."""
    time.sleep(0.2)  # the writer thread's last chunk: written within a loop turn or two
    requests = sum(r["requests"] for r in result["runs"]) + result["warmup"]["requests"]
    result["access_lines"] = access_lines(proc) - before
    result["access_lines_per_request"] = result["access_lines"] / max(1, requests)
    return result


def _memory_hit(
    env: Env, name: str, log_level: str, extra: dict[str, str] | None = None
) -> dict[str, Any]:
    proc, port = start_proxy(env, name, log_level=log_level, extra_env=extra)
    try:
        path = f"/orders/{HIT_ORDER}"
        expect(port, path, body=env.body, x_cache="MISS")
        expect(port, path, body=env.body, x_cache="HIT")
        before = access_lines(proc)
        result = measure(env, port, path, proc)
        if log_level == "info":
            _with_log_check(proc, result, before)
        expect(port, path, body=env.body, x_cache="HIT")
        return result
    finally:
        env.procs.stop(proc)


def scenario_proxy_memory_hit(env: Env) -> dict[str, Any]:
    return _memory_hit(env, "proxy-memory-hit", "warning")


def scenario_proxy_memory_hit_default(env: Env) -> dict[str, Any]:
    return _memory_hit(env, "proxy-memory-hit-default", "info")


def scenario_proxy_memory_hit_app(env: Env) -> dict[str, Any]:
    # The default configuration with the fast lane off: every request through web.Application.
    return _memory_hit(env, "proxy-memory-hit-app", "info", {"PROXY_FAST_LANE": "false"})


def _workers(env: Env, workers: int) -> dict[str, Any]:
    """Default config with Redis (which `--workers 2` requires; both scenarios use it, so they
    compare alike), in-process HIT, the server on both cores (1 process, or `--workers 2`)
    and wrk unpinned: the machine has two cores, so all share them."""
    if env.redis is None:
        raise BenchError("redis-server is not installed")
    name = f"proxy-workers-{workers}"
    proc, port = start_proxy(env, name, redis=True, log_level="info", workers=workers, cores="0,1")
    try:
        path = f"/orders/{HIT_ORDER}"
        for _ in range(4 * workers):  # fill each worker's in-process layer
            expect(port, path, body=env.body, x_cache=None)
        result = measure(env, port, path, proc, wrk_core=None)
        expect(port, path, body=env.body, x_cache="HIT")
        result["workers"] = workers
        return result
    finally:
        env.procs.stop(proc)


def scenario_workers_1(env: Env) -> dict[str, Any]:
    return _workers(env, 1)


def scenario_workers_2(env: Env) -> dict[str, Any]:
    return _workers(env, 2)


def scenario_proxy_redis_hit(env: Env) -> dict[str, Any]:
    if env.redis is None:
        raise BenchError("redis-server is not installed")
    # The default log level, as the ladder of issue 24 compares it, and the in-process layer
    # off: every hit is one Redis round trip (with it on, a repeated hit is a memory hit).
    config = env.tmp / "redis-hit.toml"
    config.write_text("[cache]\nmemory_layer_ttl_seconds = 0\n")
    proc, port = start_proxy(
        env, "proxy-redis-hit", redis=True, log_level="info", config_file=config
    )
    try:
        path = f"/orders/{HIT_ORDER}"
        expect(port, path, body=env.body, x_cache=None)  # MISS, or HIT if already stored
        expect(port, path, body=env.body, x_cache="HIT")
        result = measure(env, port, path, proc, {"redis": env.redis})
        expect(port, path, body=env.body, x_cache="HIT")
        return result
    finally:
        env.procs.stop(proc)


def _upstream_share(env: Env, before: int, result: dict[str, Any]) -> None:
    _, total = sim_calls(env.sim_port, "")
    requests = sum(r["requests"] for r in result["runs"]) + result["warmup"]["requests"]
    result["upstream_calls_per_request"] = (total - before) / max(1, requests)


def scenario_proxy_miss(env: Env) -> dict[str, Any]:
    return _miss(env, "proxy-miss", "warning")


def scenario_proxy_miss_default(env: Env) -> dict[str, Any]:
    return _miss(env, "proxy-miss-default", "info")


def _miss(env: Env, name: str, log_level: str) -> dict[str, Any]:
    """A MISS per request: PENDING_VBV orders (never cached), cycling over 256 of them."""
    proc, port = start_proxy(env, name, log_level=log_level)
    try:
        path = f"/orders/{PENDING_PREFIX}0"
        before, _ = sim_calls(env.sim_port, f"{PENDING_PREFIX}0")
        expect(port, path, body=None, x_cache="MISS")
        expect(port, path, body=None, x_cache="MISS")
        after, _ = sim_calls(env.sim_port, f"{PENDING_PREFIX}0")
        if after - before != 2:
            raise BenchError(f"2 MISS requests made {after - before} upstream calls, not 2")
        _, total = sim_calls(env.sim_port, "")
        before = access_lines(proc)
        result = measure(env, port, "/", proc, {"simulator": env.sim}, script_args=PENDING_CYCLE)
        _upstream_share(env, total, result)
        if log_level == "info":
            _with_log_check(proc, result, before)
        return result
    finally:
        env.procs.stop(proc)


def scenario_proxy_miss_one(env: Env) -> dict[str, Any]:
    """32 connections asking for ONE pending order: concurrent misses share upstream calls."""
    proc, port = start_proxy(env, "proxy-miss-one")
    try:
        path = f"/orders/{PENDING_ORDER}"
        expect(port, path, body=None, x_cache="MISS")
        _, total = sim_calls(env.sim_port, "")
        result = measure(env, port, path, proc, {"simulator": env.sim})
        _upstream_share(env, total, result)
        return result
    finally:
        env.procs.stop(proc)


# A caller's sampled trace, as a service mesh or an instrumented client sends it.
CALLER_TRACEPARENT = "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def _traced_hit(
    env: Env, name: str, otel: dict[str, str] | None, headers: tuple[str, ...]
) -> dict[str, Any]:
    """The in-process HIT (quiet logs) with tracing as `otel` sets it (None: off), spans
    exported to a sink on the client core; compare with proxy_memory_hit."""
    sink = None
    extra: dict[str, str] = {}
    if otel is not None:
        sink = env.procs.start(
            "otlp-sink",
            [sys.executable, "-m", "bench.otlp_sink", "--port", "0"],
            core=CLIENT_CORE,
        )
        sink_port = listening_port(sink)
        wait_ready(sink_port, "/healthz", sink)
        extra = {
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{sink_port}/v1/traces",
            **otel,
        }
    proc, port = start_proxy(env, name, log_level="warning", extra_env=extra)
    try:
        path = f"/orders/{HIT_ORDER}"
        expect(port, path, body=env.body, x_cache="MISS")
        expect(port, path, body=env.body, x_cache="HIT")
        result = measure(env, port, path, proc, headers=headers)
        expect(port, path, body=env.body, x_cache="HIT")
        result["tracing"] = otel or "off"
        return result
    finally:
        env.procs.stop(proc)
        if sink is not None:
            env.procs.stop(sink)


def scenario_hit_trace_off(env: Env) -> dict[str, Any]:
    # Tracing off, the caller's traceparent continued: parsed, on the line, nothing exported.
    return _traced_hit(env, "proxy-hit-trace-off", None, (CALLER_TRACEPARENT,))


def scenario_hit_traced_1pct(env: Env) -> dict[str, Any]:
    otel = {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01"}
    return _traced_hit(env, "proxy-hit-traced-1pct", otel, ())


def scenario_hit_traced_all(env: Env) -> dict[str, Any]:
    return _traced_hit(env, "proxy-hit-traced-all", {"OTEL_TRACES_SAMPLER": "always_on"}, ())
