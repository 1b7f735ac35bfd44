"""Load scenarios: a burst for one order, waiters, 100k orders in memory, micro-benchmarks."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from typing import Any

from bench.burst import burst
from bench.env import (
    BURST_ORDER,
    BURST_ORDER_REDIS,
    MEMORY_MAX_BYTES,
    MIB,
    Env,
    put_order,
    sim_calls,
    start_proxy,
)
from bench.harness import (
    BENCH,
    SERVER_CORE,
    BenchError,
    cpu_seconds,
    request,
    run_wrk,
    status_kib,
)
from bench.waiters import direct_polling_calls, wait_all


def scenario_accessline(env: Env) -> dict[str, Any]:
    return _micro(env, ["bench.accessline_micro", "--out", str(env.tmp / "al.log")], timeout=300)


def _micro(env: Env, module_args: list[str], *, timeout: float) -> dict[str, Any]:
    """A micro-benchmark module run on the server core; the JSON object it prints."""
    argv = [sys.executable, "-m", *module_args]
    done = subprocess.run(
        env.pinning.wrap(SERVER_CORE, argv),
        cwd=BENCH.parent,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"{module_args[0]} failed: {done.stderr[-800:]!r}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _burst(env: Env, order_id: str, *, redis: bool) -> dict[str, Any]:
    cfg = env.cfg
    put_order(env.sim_port, order_id, "CHARGED")
    name = "proxy-burst-redis" if redis else "proxy-burst-memory"
    proc, port = start_proxy(env, name, redis=redis)
    fault = {"kind": "latency", "delay": cfg.burst_delay, "order_id": order_id}
    try:
        if request(env.sim_port, "/__sim/faults", method="POST", json_body=fault).status != 200:
            raise BenchError("simulator refused the latency fault")
        calls_before, total_before = sim_calls(env.sim_port, order_id)
        outcome = asyncio.run(burst("127.0.0.1", port, f"/orders/{order_id}", cfg.burst_count))
        calls_after, total_after = sim_calls(env.sim_port, order_id)
        outcome.update(
            order_id=order_id,
            layer="redis" if redis else "memory",
            upstream_delay_seconds=cfg.burst_delay,
            upstream_calls=calls_after - calls_before,
            upstream_calls_all_orders=total_after - total_before,
        )
        return outcome
    finally:
        request(env.sim_port, "/__sim/faults", method="DELETE")
        env.procs.stop(proc)


def scenario_burst_memory(env: Env) -> dict[str, Any]:
    return _burst(env, BURST_ORDER, redis=False)


def scenario_burst_redis(env: Env) -> dict[str, Any]:
    if env.redis is None:
        raise BenchError("redis-server is not installed")
    return _burst(env, BURST_ORDER_REDIS, redis=True)


WAIT_ORDER = "BENCH-WAIT"
WAITERS = 100
SETTLE_AFTER = 5.0


def scenario_waiters(env: Env) -> dict[str, Any]:
    """100 waiters on two proxy replicas sharing Redis, for one order that settles in 5 s."""
    if env.redis is None:
        raise BenchError("redis-server is not installed")
    replicas = [start_proxy(env, f"proxy-wait-{i}", redis=True) for i in range(2)]
    try:
        scripted = {
            "order_id": WAIT_ORDER,
            "statuses": ["PENDING_VBV", "CHARGED"],
            "after_seconds": SETTLE_AFTER,
        }
        if request(env.sim_port, "/__sim/orders", method="POST", json_body=scripted).status != 200:
            raise BenchError("simulator refused the scripted order")
        before, _ = sim_calls(env.sim_port, WAIT_ORDER)
        outcome = asyncio.run(
            wait_all([port for _, port in replicas], f"/orders/{WAIT_ORDER}?wait=30", WAITERS)
        )
        after, _ = sim_calls(env.sim_port, WAIT_ORDER)
        outcome.update(
            waiters=WAITERS,
            replicas=len(replicas),
            settle_after_seconds=SETTLE_AFTER,
            upstream_calls=after - before,
            direct_polling_calls=direct_polling_calls(WAITERS, SETTLE_AFTER),
        )
        return outcome
    finally:
        for proc, _ in replicas:
            env.procs.stop(proc)


_METRIC_LINE = re.compile(r"^(order_proxy_memory_cache_(?:bytes|entries)) ([0-9.e+]+)$", re.M)


def scenario_memory(env: Env) -> dict[str, Any]:
    """100k distinct cacheable orders through the in-process layer, bounded at 64 MiB.

    The simulator knows only the orders it was told about; its `oversized` fault (with no
    order id) answers every unknown id with a 200 CHARGED body of the size asked for, so
    each distinct id is a cacheable ~4 KB answer without registering 100k orders first.
    """
    cfg = env.cfg
    config = env.tmp / "memory.toml"
    config.write_text(f"[cache]\nmemory_max_bytes = {MEMORY_MAX_BYTES}\n")
    proc, port = start_proxy(env, "proxy-memory", config_file=config)
    # Body = {"order_id": "MEM-n", "status": "CHARGED", "padding": "xx…"}: ~60 bytes + size.
    fault = {"kind": "oversized", "size": len(env.body) - 64}
    try:
        if request(env.sim_port, "/__sim/faults", method="POST", json_body=fault).status != 200:
            raise BenchError("simulator refused the oversized fault")
        probe = request(port, "/orders/MEMWARM-1")
        if probe.status != 200 or probe.headers.get("x-cache") != "MISS":
            raise BenchError(f"memory probe answered {probe.status} {probe.headers}")
        entry_body_bytes = len(probe.body)
        rss_before = status_kib(proc.pid, "VmRSS")
        cpu_before = cpu_seconds(proc.pid)
        started = time.monotonic()
        fill = run_wrk(
            env.pinning,
            port,
            "/",
            duration=180,
            connections=cfg.connections,
            script_args=("distinct", str(cfg.memory_orders), "MEM-"),
        )
        fill_seconds = time.monotonic() - started
        if not proc.alive():
            raise BenchError(f"proxy died while filling: {proc.log_tail()}")
        rss_after = status_kib(proc.pid, "VmRSS")
        hwm = status_kib(proc.pid, "VmHWM")
        cpu = cpu_seconds(proc.pid) - cpu_before
        gauges = {
            m.group(1): float(m.group(2))
            for m in _METRIC_LINE.finditer(request(port, "/metrics").body.decode())
        }
        last = request(port, f"/orders/MEM-{cfg.memory_orders}").headers.get("x-cache")
        first = request(port, "/orders/MEM-1").headers.get("x-cache")
        return {
            "method": "real server: order-proxy serve + simulator oversized fault + wrk",
            "distinct_orders": fill["requests"],
            "fill_seconds": round(fill_seconds, 2),
            "fill": fill,
            "cpu_us_per_req": cpu * 1e6 / max(1, fill["requests"]),
            "entry_body_bytes": entry_body_bytes,
            "memory_max_bytes": MEMORY_MAX_BYTES,
            "rss_before_mib": rss_before / 1024,
            "rss_after_mib": rss_after / 1024,
            "rss_peak_mib": hwm / 1024,
            "rss_growth_mib": (rss_after - rss_before) / 1024,
            "cache_bytes_gauge_mib": gauges.get("order_proxy_memory_cache_bytes", 0) / MIB,
            "cache_entries_gauge": gauges.get("order_proxy_memory_cache_entries", 0),
            "newest_order_x_cache": last,
            "oldest_order_x_cache": first,
        }
    finally:
        request(env.sim_port, "/__sim/faults", method="DELETE")
        env.procs.stop(proc)


def scenario_decode(env: Env) -> dict[str, Any]:
    return _micro(env, ["bench.decode_micro", "--body-file", str(env.body_file)], timeout=120)
