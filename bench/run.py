"""order-proxy benchmark: the proxy's hot paths against ceilings measured in the same run.

    .venv/bin/python -m bench.run [--quick] [--duration S] [--runs N] [--only a,b]

Every server under test is a single process pinned to core 0; wrk (-t1 -c32 --latency), the
simulator, redis-server and this harness share core 1. Each scenario is warmed up, then run
`--runs` times; the table shows the MEDIAN run (by req/s) with its p50, p99 and the server's
CPU time per request (utime+stime from /proc/<pid>/stat over the run / requests).

Scenarios (all on 127.0.0.1):
  ceilings  bare aiohttp returning the bytes from memory; aiohttp + one redis.asyncio GET;
            aiohttp forwarding to the simulator with one shared session; nginx proxy_cache
            hit with an injected Authorization header (when nginx is installed)
  proxy     `order-proxy serve`, stdout redirected to a file: in-process HIT and MISS in the
            default configuration (LOG_LEVEL=info: one JSON access line per request, checked
            after the run) and with quiet logs (warning), Redis HIT, MISS on one order, a
            1,000-request burst for one uncached order (upstream calls counted by the
            simulator), 100k distinct orders through the in-process layer with a 64 MiB bound
            (RSS checked)
  tracing   the in-process HIT (quiet logs) with a caller's traceparent and tracing off, and
            with tracing on (OTLP to a sink on the client core) at 1 % and 100 % sampling
  workers   the default-config HIT with the server on both cores: one process, then
            `serve --workers 2` (wrk unpinned: the machine has two cores)
  accessline  CPU of one access line (bench.accessline_micro) vs the structlog line
  decode    msgspec status-view decode vs json.loads of the same ~4 KB body

Targets are reported as PASS / FALL SHORT; the exit status never depends on them. Raw results
go to bench/results/<UTC timestamp>.json and bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import functools
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import redis

from bench.burst import burst
from bench.harness import (
    API_KEY,
    AUTHORIZATION,
    BENCH,
    BIN,
    CLIENT_CORE,
    MERCHANT,
    SERVER_CORE,
    BenchError,
    Pinning,
    Proc,
    Processes,
    clean_env,
    cpu_seconds,
    find_binary,
    free_port,
    request,
    run_wrk,
    status_kib,
    wait_ready,
)
from bench.waiters import direct_polling_calls, wait_all
from proxy.devtools.simulator import SimulatorState

RESULTS = BENCH / "results"
HIT_ORDER = "BENCH-HIT"
PENDING_ORDER = "BENCH-PENDING"
# The MISS scenarios cycle over this many PENDING_VBV orders, so that (almost) no two requests
# for one order are in flight at once and the proxy's coalescing does not hide the miss path.
PENDING_PREFIX = "BENCH-PENDING-"
PENDING_COUNT = 256
BURST_ORDER = "BENCH-BURST"
BURST_ORDER_REDIS = "BENCH-BURST-R"
TARGET_BODY_BYTES = 4096
MEMORY_MAX_BYTES = 64 * 1024 * 1024
MIB = 1024 * 1024
# A server using less of its core than this in a run was probably held back by the client
# core (wrk and the helpers): its ceiling is then a lower bound.
CLIENT_BOUND_UTIL = 0.9
SIM_HEADERS = {"Authorization": AUTHORIZATION, "x-merchantid": MERCHANT}


@dataclass(frozen=True)
class Config:
    runs: int
    duration: float
    warmup: float
    connections: int
    burst_count: int
    burst_delay: float
    memory_orders: int
    quick: bool
    only: frozenset[str]

    @classmethod
    def single_server(cls, duration: float, warmup: float) -> Config:
        """For tools that drive one server at a time (bench.ab, bench.profile_hits): one run,
        the simulator and Redis only, no burst or memory scenario."""
        return cls(
            runs=1,
            duration=duration,
            warmup=warmup,
            connections=32,
            burst_count=0,
            burst_delay=0.0,
            memory_orders=0,
            quick=True,
            only=frozenset(),
        )


@dataclass
class Env:
    """What every scenario needs: the process group, the shared upstreams, the body."""

    cfg: Config
    pinning: Pinning
    procs: Processes
    tmp: Path
    sim: Proc
    sim_port: int
    redis: Proc | None
    redis_url: str | None
    body: bytes
    body_file: Path


# --- set-up ----------------------------------------------------------------------------------


def refund(i: int) -> dict[str, Any]:
    """A settled partial refund, shaped like the ones in Juspay's samples."""
    return {
        "id": f"rf_bench_{i:04d}",
        "unique_request_id": f"bench_refund_{i:04d}",
        "ref": f"{7000000000 + i}",
        "amount": 1,
        "created": "2021-11-23T15:35:32Z",
        "status": "SUCCESS",
        "error_message": "",
        "sent_to_gateway": True,
        "initiated_by": "API",
        "refund_source": "PAYU",
        "refund_type": "STANDARD",
        "arn": f"7401823{i:08d}",
    }


@functools.cache
def padded_refunds(order_id: str, status: str) -> list[dict[str, Any]]:
    """Settled refunds that bring the simulator's card-sample body closest to ~4 KB."""
    state = SimulatorState({MERCHANT: API_KEY})
    best: list[dict[str, Any]] = []
    best_gap = 1 << 30
    for count in range(40):
        refunds = [refund(i) for i in range(count)]
        size = len(json.dumps(state.order_body(MERCHANT, order_id, status, refunds)))
        if abs(size - TARGET_BODY_BYTES) < best_gap:
            best, best_gap = refunds, abs(size - TARGET_BODY_BYTES)
        if size > TARGET_BODY_BYTES:
            break
    return best


def put_order(sim_port: int, order_id: str, status: str, *, size_like: str | None = None) -> None:
    """Register an order of ~4 KB (sized as `size_like`'s body, to save recomputing it)."""
    refunds = padded_refunds(size_like or order_id, status)
    payload = {"order_id": order_id, "status": status, "refunds": refunds}
    answer = request(sim_port, "/__sim/orders", method="POST", json_body=payload)
    if answer.status != 200:
        raise BenchError(f"simulator refused order {order_id}: {answer.status} {answer.body!r}")


def sim_calls(sim_port: int, order_id: str) -> tuple[int, int]:
    stats = json.loads(request(sim_port, "/__sim/stats").body)
    return int(stats["calls"].get(order_id, 0)), int(stats["total"])


def start_simulator(procs: Processes) -> tuple[Proc, int]:
    port = free_port()
    argv = [str(BIN / "order-proxy"), "simulate", "--port", str(port)]
    proc = procs.start("simulator", argv, core=CLIENT_CORE)
    wait_ready(port, "/__sim/stats", proc)
    return proc, port


def start_redis(procs: Processes, tmp: Path) -> tuple[Proc, str] | None:
    binary = find_binary("redis-server")
    if binary is None:
        return None
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
    argv += ["no", "--dir", str(tmp), "--protected-mode", "yes", "--daemonize", "no"]
    proc = procs.start("redis-server", argv, core=CLIENT_CORE)
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
    deadline = time.monotonic() + 10
    try:
        while True:
            try:
                if client.ping():
                    break
            except redis.RedisError:
                if time.monotonic() > deadline or not proc.alive():
                    raise BenchError(f"redis-server did not start: {proc.log_tail()}") from None
                time.sleep(0.05)
    finally:
        client.close()
    return proc, f"redis://127.0.0.1:{port}/0"


def start_proxy(
    env: Env,
    name: str,
    *,
    redis: bool = False,
    config_file: Path | None = None,
    log_level: str = "warning",
    workers: int = 0,
    cores: str | None = None,
    source: Path | None = None,
    extra_env: dict[str, str] | None = None,
) -> tuple[Proc, int]:
    """`order-proxy serve` pinned to the server core, its stdout (JSON logs) redirected to a
    file, as a container runtime would. `log_level="info"` is the default configuration (one
    access line per request); "warning" the quiet one. `workers`: `serve --workers N`, pinned
    to `cores` (e.g. "0,1"). `source`: run the `proxy` package found in that directory (another
    checkout, e.g. a `git worktree` of an older commit) instead of this one."""
    port = free_port()
    extra = {
        "JUSPAY_BASE_URL": f"http://127.0.0.1:{env.sim_port}",
        "JUSPAY_MERCHANT_ID": MERCHANT,
        "JUSPAY_API_KEY": API_KEY,
        "PROXY_PORT": str(port),
        "PROXY_DRAIN_SECONDS": "1",
        "LOG_LEVEL": log_level,
    }
    if redis:
        if env.redis_url is None:
            raise BenchError("redis-server is not installed")
        extra["REDIS_URL"] = env.redis_url
    if config_file is not None:
        extra["PROXY_CONFIG_FILE"] = str(config_file)
    if source is not None:
        extra["PYTHONPATH"] = str(source)  # ahead of this checkout's editable install
    extra.update(extra_env or {})
    argv = [str(BIN / "order-proxy"), "serve"]
    if workers > 1:
        argv += ["--workers", str(workers)]
    if cores is not None:
        if env.pinning.enabled:
            argv = ["taskset", "-c", cores, *argv]
        proc = env.procs.start(name, argv, core=None, env=clean_env(**extra))
        wait_ready(port, "/readyz", proc)
        _wait_workers(proc, max(1, workers))
        return proc, port
    proc = env.procs.start(name, argv, core=SERVER_CORE, env=clean_env(**extra))
    wait_ready(port, "/readyz", proc)
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    if children:
        raise BenchError(
            f"{name}: serve started worker processes {children}; CPU per request "
            "is read from one process, so the bench needs a single-process serve"
        )
    return proc, port


def worker_pids(proc: Proc) -> list[int]:
    """The `serve --workers N` children (under taskset, the process itself is serve)."""
    text = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text()
    return [int(pid) for pid in text.split()]


def _wait_workers(proc: Proc, workers: int) -> None:
    deadline = time.monotonic() + 30
    while proc.log_path.read_bytes().count(b'"listening"') < workers:
        if time.monotonic() > deadline or not proc.alive():
            raise BenchError(f"{proc.name}: {workers} workers not listening: {proc.log_tail()}")
        time.sleep(0.05)


def start_python_server(env: Env, module: str, *args: str) -> tuple[Proc, int]:
    port = free_port()
    argv = [sys.executable, "-m", f"bench.{module}", "--port", str(port), *args]
    proc = env.procs.start(module, argv, core=SERVER_CORE)
    wait_ready(port, "/healthz", proc)
    return proc, port


# --- measuring -------------------------------------------------------------------------------


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


# --- scenarios -------------------------------------------------------------------------------


def scenario_bare(env: Env) -> dict[str, Any]:
    proc, port = start_python_server(env, "ceiling_bare", "--body-file", str(env.body_file))
    try:
        expect(port, f"/orders/{HIT_ORDER}", body=env.body)
        return measure(env, port, f"/orders/{HIT_ORDER}", proc)
    finally:
        env.procs.stop(proc)


def scenario_redis_get(env: Env) -> dict[str, Any]:
    if env.redis is None or env.redis_url is None:
        raise BenchError("redis-server is not installed")
    proc, port = start_python_server(
        env, "ceiling_redis", "--body-file", str(env.body_file), "--redis-url", env.redis_url
    )
    try:
        expect(port, f"/orders/{HIT_ORDER}", body=env.body)
        return measure(env, port, f"/orders/{HIT_ORDER}", proc, {"redis": env.redis})
    finally:
        env.procs.stop(proc)


PENDING_CYCLE = ("cycle", str(PENDING_COUNT), PENDING_PREFIX)


def scenario_forward(env: Env) -> dict[str, Any]:
    upstream = f"http://127.0.0.1:{env.sim_port}"
    proc, port = start_python_server(env, "ceiling_forward", "--upstream", upstream)
    try:
        expect(port, f"/orders/{PENDING_PREFIX}0", body=None)
        return measure(env, port, "/", proc, {"simulator": env.sim}, script_args=PENDING_CYCLE)
    finally:
        env.procs.stop(proc)


NGINX_CONF = """\
# Written by bench/run.py: nginx proxy_cache in front of the simulator, one process.
error_log {tmp}/nginx-error.log warn;
pid {tmp}/nginx.pid;
worker_rlimit_nofile 4096;
events {{ worker_connections 2048; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path {tmp}/nginx-client-body;
    proxy_temp_path {tmp}/nginx-proxy-temp;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
    proxy_cache_path {tmp}/nginx-cache levels=1:2 keys_zone=orders:10m max_size=256m
                     inactive=1h use_temp_path=off;
    upstream juspay {{
        server 127.0.0.1:{sim_port};
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port};
        location /orders/ {{
            proxy_pass http://juspay;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "{authorization}";
            proxy_set_header x-merchantid {merchant};
            proxy_cache orders;
            proxy_cache_key $uri;
            proxy_cache_valid 200 1h;
            proxy_cache_lock on;
            add_header X-Cache-Status $upstream_cache_status;
        }}
    }}
}}
"""


def scenario_nginx(env: Env) -> dict[str, Any]:
    nginx = find_binary("nginx")
    if nginx is None:
        raise BenchError("nginx is not installed")
    port = free_port()
    prefix = env.tmp / "nginx"
    prefix.mkdir(exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            tmp=prefix,
            sim_port=env.sim_port,
            port=port,
            authorization=AUTHORIZATION,
            merchant=MERCHANT,
        )
    )
    argv = [nginx, "-p", f"{prefix}/", "-c", str(conf), "-g", "daemon off; master_process off;"]
    proc = env.procs.start("nginx", argv, core=SERVER_CORE)
    try:
        path = f"/orders/{HIT_ORDER}"
        deadline = time.monotonic() + 10
        while True:
            try:
                expect(port, path, body=env.body)  # the first one fills the cache
                break
            except OSError:
                if time.monotonic() > deadline or not proc.alive():
                    raise BenchError(f"nginx did not start: {proc.log_tail()}") from None
                time.sleep(0.05)
        expect(port, path, body=env.body, x_cache="HIT")
        return measure(env, port, path, proc)
    finally:
        env.procs.stop(proc)


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


def _memory_hit(env: Env, name: str, log_level: str) -> dict[str, Any]:
    proc, port = start_proxy(env, name, log_level=log_level)
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


def _workers(env: Env, workers: int) -> dict[str, Any]:
    """Default config, in-process HIT, the server on both cores (1 process, or `--workers 2`)
    and wrk unpinned: the machine has two cores, so all share them."""
    name = f"proxy-workers-{workers}"
    proc, port = start_proxy(env, name, log_level="info", workers=workers, cores="0,1")
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
        sink_port = free_port()
        sink = env.procs.start(
            "otlp-sink",
            [sys.executable, "-m", "bench.otlp_sink", "--port", str(sink_port)],
            core=CLIENT_CORE,
        )
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


def scenario_proxy_redis_hit(env: Env) -> dict[str, Any]:
    if env.redis is None:
        raise BenchError("redis-server is not installed")
    proc, port = start_proxy(env, "proxy-redis-hit", redis=True)
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


SCENARIOS: dict[str, tuple[str, Callable[[Env], dict[str, Any]]]] = {
    "bare": ("ceiling: bare aiohttp, bytes from memory", scenario_bare),
    "redis_get": ("ceiling: aiohttp + 1 redis GET", scenario_redis_get),
    "forward": ("ceiling: aiohttp forward to simulator", scenario_forward),
    "nginx": ("ceiling: nginx proxy_cache HIT", scenario_nginx),
    "proxy_memory_hit_default": (
        "proxy: in-process HIT, default (info, JSON log to file)",
        scenario_proxy_memory_hit_default,
    ),
    "proxy_memory_hit": ("proxy: in-process HIT, quiet logs", scenario_proxy_memory_hit),
    "proxy_hit_trace_off": (
        "proxy: in-process HIT, caller traceparent, tracing off",
        scenario_hit_trace_off,
    ),
    "proxy_hit_traced_1pct": (
        "proxy: in-process HIT, tracing on, 1% sampled",
        scenario_hit_traced_1pct,
    ),
    "proxy_hit_traced_all": (
        "proxy: in-process HIT, tracing on, all sampled",
        scenario_hit_traced_all,
    ),
    "proxy_redis_hit": ("proxy: Redis HIT", scenario_proxy_redis_hit),
    "proxy_miss_default": (
        "proxy: MISS (256 orders), default (info, log to file)",
        scenario_proxy_miss_default,
    ),
    "proxy_miss": ("proxy: MISS (PENDING_VBV, 256 orders), quiet", scenario_proxy_miss),
    "proxy_miss_one": ("proxy: MISS, 1 order (coalesced)", scenario_proxy_miss_one),
    "burst_memory": ("proxy: burst, 1 uncached order (in-proc)", scenario_burst_memory),
    "burst_redis": ("proxy: burst, 1 uncached order (Redis)", scenario_burst_redis),
    "memory": ("proxy: 100k orders in-process, 64 MiB", scenario_memory),
    "waiters": ("proxy: 100 waiters, 2 replicas, settles at 5s", scenario_waiters),
    "decode": ("decode: msgspec status view vs json", scenario_decode),
    "accessline": ("access line: msgspec + sink vs structlog", scenario_accessline),
    "workers_1": ("workers: 1 process, default, both cores", scenario_workers_1),
    "workers_2": ("workers: serve --workers 2, default", scenario_workers_2),
}


# --- report ----------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _ratio_row(
    results: dict[str, Any], key: str, ceiling: str, min_rps: float, max_p99: float | None
) -> tuple[str, str, str]:
    mine, base = results.get(key, {}), results.get(ceiling, {})
    if "median" not in mine or "median" not in base:
        return "-", "-", "NO DATA"
    rps = mine["median"]["rps"] / base["median"]["rps"]
    ratio = f"{rps:.2f}x rps"
    target = f">={min_rps:g}x {ceiling} rps"
    ok = rps >= min_rps
    if max_p99 is not None:
        p99 = mine["median"]["p99_ms"] / base["median"]["p99_ms"]
        ratio += f", {p99:.2f}x p99"
        target += f", p99<={max_p99:g}x"
        ok = ok and p99 <= max_p99
    return ratio, target, "PASS" if ok else "FALL SHORT"


TARGETS = {
    # scenario: (ceiling scenario, minimum req/s ratio, maximum p99 ratio)
    "proxy_memory_hit_default": ("bare", 0.85, 1.3),
    "proxy_memory_hit": ("bare", 0.9, 1.5),
    # Tracing must cost a hit next to nothing when off, and little at 1 % sampling.
    "proxy_hit_trace_off": ("proxy_memory_hit", 0.97, None),
    "proxy_hit_traced_1pct": ("proxy_memory_hit", 0.90, None),
    "proxy_redis_hit": ("redis_get", 1.5, None),
    "proxy_miss_default": ("forward", 0.85, None),
    "proxy_miss": ("forward", 0.85, None),
    "workers_2": ("workers_1", 1.7, None),
}
# One access line: at most this many us of CPU (bench.accessline_micro).
ACCESS_LINE_MAX_US = 3.0


def _wrk_row(results: dict[str, Any], key: str) -> list[str]:
    data = results[key]
    m = data["median"]
    if key in TARGETS:
        ratio, target, verdict = _ratio_row(results, key, *TARGETS[key])
    elif key == "proxy_miss_one":
        share = data.get("upstream_calls_per_request", 0.0)
        ratio, target, verdict = f"{share:.2f} upstream calls/req", "-", "info"
    elif key == "nginx" and "median" in results.get("proxy_memory_hit", {}):
        hit = results["proxy_memory_hit"]["median"]["rps"]
        ratio, target, verdict = f"hit/nginx {hit / m['rps']:.2f}x", "-", "info"
    else:
        ratio, target, verdict = "-", "-", "ceiling"
    if not key.startswith("proxy") and m["server_cpu_util"] < CLIENT_BOUND_UTIL:
        verdict += "*"
    if m["non_2xx"] or m["socket_errors"]:
        verdict += f" ({m['non_2xx']} non-2xx, {m['socket_errors']} sock err)"
    cells = [f"{m['rps']:,.0f}", f"{m['p50_ms']:.2f}", f"{m['p99_ms']:.2f}"]
    return [*cells, f"{m['cpu_us_per_req']:.0f}", ratio, target, verdict]


def _burst_row(data: dict[str, Any], cfg: Config) -> list[str]:
    calls = data["upstream_calls"]
    ok = calls == 1 and data["statuses"] == {"200": cfg.burst_count}
    lat = data["latency_ms"]
    return [
        "-",
        f"{lat['p50']:.0f}",
        f"{lat['max']:.0f}",
        "-",
        f"{calls} upstream call(s) / {data['requests']}",
        "exactly 1, all 200",
        "PASS" if ok else "FALL SHORT",
    ]


def _memory_row(data: dict[str, Any]) -> list[str]:
    bound = data["memory_max_bytes"] / MIB
    fill = data["fill"]
    return [
        f"{fill['rps']:,.0f}",
        f"{fill['p50_ms']:.2f}",
        f"{fill['p99_ms']:.2f}",
        f"{data['cpu_us_per_req']:.0f}",
        f"RSS {data['rss_after_mib']:.0f} MiB (start {data['rss_before_mib']:.0f}, "
        f"+{data['rss_growth_mib']:.0f})",
        f"RSS <= {bound + 50:.0f} MiB",
        "PASS" if data["rss_after_mib"] <= bound + 50 else "FALL SHORT",
    ]


def _waiters_row(data: dict[str, Any]) -> list[str]:
    calls, direct = data["upstream_calls"], data["direct_polling_calls"]
    ok = data["answers"] == ["200 final CHARGED"] and calls < direct
    return [
        "-",
        "-",
        f"{data['last_answer_seconds'] * 1000:.0f}",
        "-",
        f"{calls} upstream calls vs {direct} polling directly "
        f"({direct / max(calls, 1):.0f}x fewer)",
        "far fewer than 1/waiter/s",
        "PASS" if ok else "FALL SHORT",
    ]


def _decode_row(data: dict[str, Any]) -> list[str]:
    view = data["msgspec_status_view"]["median_ns"]
    loads = data["json_loads"]["median_ns"]
    ratio = f"json/msgspec {loads / view:.1f}x"
    return ["-", f"{view / 1000:.2f}us", f"{loads / 1000:.2f}us", "-", ratio, "-", "info"]


def _accessline_row(data: dict[str, Any]) -> list[str]:
    fast = data["msgspec_sink"]["median_us"]
    slow = data["structlog"]["median_us"]
    return [
        "-",
        f"{fast:.2f}us",
        f"{slow:.2f}us",
        f"{fast:.1f}",
        f"structlog/msgspec {slow / fast:.1f}x",
        f"<= {ACCESS_LINE_MAX_US:g} us CPU",
        "PASS" if fast <= ACCESS_LINE_MAX_US else "FALL SHORT",
    ]


def build_rows(results: dict[str, Any], cfg: Config) -> list[list[str]]:
    rows: list[list[str]] = []
    for key, (label, _) in SCENARIOS.items():
        data = results.get(key)
        if data is None:
            continue
        if "error" in data:
            cells = ["-"] * 6 + ["ERROR"]
        elif "median" in data:
            cells = _wrk_row(results, key)
        elif key.startswith("burst"):
            cells = _burst_row(data, cfg)
        elif key == "memory":
            cells = _memory_row(data)
        elif key == "waiters":
            cells = _waiters_row(data)
        elif key == "accessline":
            cells = _accessline_row(data)
        else:
            cells = _decode_row(data)
        rows.append([label, *cells])
    return rows


HEADER = ["scenario", "req/s", "p50 ms", "p99 ms", "CPU us/req", "ratio", "target", "verdict"]


def render_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    right = {1, 2, 3, 4}

    def line(cells: list[str]) -> str:
        return " | ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    sep = "-+-".join("-" * w for w in widths)
    return "\n".join([line(HEADER), sep, *(line(r) for r in rows)])


def notes(results: dict[str, Any], cfg: Config, pinning: Pinning, body_len: int) -> list[str]:
    out = [
        f"median of {cfg.runs} run(s) x {cfg.duration:g}s after {cfg.warmup:g}s warm-up; "
        f"wrk -t1 -c{cfg.connections} --latency; body {body_len} bytes",
        f"pinning: {pinning.note}",
        "proxy runs as `order-proxy serve`, stdout redirected to a file; 'default' = "
        "LOG_LEVEL=info (one JSON access line per request, as installed), 'quiet' = warning",
        "workers_1/workers_2: server on cores 0,1 and wrk unpinned (2 cores shared by all)",
        "access line (p50 column = msgspec line through the sink, p99 column = structlog line, "
        "CPU us per line incl. the writer thread)",
        "CPU us/req is the server process only; its core use in the median run (below 90% "
        "the server was not the bottleneck: a ceiling marked * is then a lower bound):",
        "  "
        + ", ".join(
            f"{k} {d['median']['server_cpu_util'] * 100:.0f}%"
            for k, d in results.items()
            if isinstance(d, dict) and "median" in d
        ),
        "helpers' CPU (same median run):",
    ]
    for key, data in results.items():
        median = data.get("median", {}) if isinstance(data, dict) else {}
        aux, util = median.get("aux_cpu_us_per_req"), median.get("aux_cpu_util")
        if aux and util:
            parts = [f"{n} {aux[n]:.0f} us/req ({util[n] * 100:.0f}% of a core)" for n in aux]
            out.append(f"  {key}: " + ", ".join(parts))
    for key in ("proxy_memory_hit_default", "proxy_miss_default"):
        lines = results.get(key, {}).get("access_lines_per_request")
        if lines is not None:
            out.append(f"{key}: {lines:.3f} access lines written per request")
    for key in ("proxy_miss", "proxy_miss_one"):
        share = results.get(key, {}).get("upstream_calls_per_request")
        if share is not None:
            out.append(f"{key}: {share:.3f} upstream calls per request")
    for key in ("burst_memory", "burst_redis"):
        data = results.get(key, {})
        if "upstream_calls" in data:
            out.append(
                f"{key}: {data['requests']} requests sent within {data['send_spread_ms']:.1f} ms "
                f"on pre-opened connections; upstream delay {data['upstream_delay_seconds']}s; "
                f"statuses {data['statuses']}; X-Cache {data['x_cache']}; "
                f"p50/max latency columns are the burst's (ms)"
            )
    mem = results.get("memory", {})
    if "rss_after_mib" in mem:
        out.append(
            f"memory ({mem['method']}): {mem['distinct_orders']:,} distinct orders in "
            f"{mem['fill_seconds']:.0f}s; RSS {mem['rss_before_mib']:.1f} -> "
            f"{mem['rss_after_mib']:.1f} MiB (peak {mem['rss_peak_mib']:.1f}); cache gauge "
            f"{mem['cache_bytes_gauge_mib']:.1f} MiB in {mem['cache_entries_gauge']:.0f} entries; "
            f"newest X-Cache {mem['newest_order_x_cache']}, oldest {mem['oldest_order_x_cache']}"
        )
    dec = results.get("decode", {})
    if "json_loads" in dec:
        out.append(
            "decode (p50 column = msgspec status view, p99 column = json.loads, per op): "
            f"full msgspec Order {dec['msgspec_full_order']['median_ns'] / 1000:.2f} us"
        )
    for key, data in results.items():
        if isinstance(data, dict) and "error" in data:
            out.append(f"ERROR in {key}: {data['error']}")
    return out


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _command_version(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (done.stdout + done.stderr).decode("utf-8", "replace").strip()
    return text.splitlines()[0] if text else None


def machine_info(pinning: Pinning) -> dict[str, Any]:
    model = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    commit = _command_version(["git", "-C", str(BENCH.parent), "rev-parse", "HEAD"])
    parser = "C (llhttp)" if importlib.util.find_spec("aiohttp._http_parser") else "pure Python"
    return {
        "date_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "loadavg_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "versions": {
            d: _version(d) for d in ("aiohttp", "redis", "msgspec", "uvloop", "order-proxy")
        },
        "aiohttp_http_parser": parser,
        "wrk": _command_version(["wrk", "-v"]),
        "nginx": _command_version([find_binary("nginx") or "nginx", "-v"]),
        "redis_server": _command_version([find_binary("redis-server") or "redis-server", "-v"]),
        "git_commit": commit,
        "pinning": pinning.note,
    }


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
    return f"bench/results/{stamp}.json"


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
    print(f"\nraw results: {path} (and bench/results/latest.json)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
