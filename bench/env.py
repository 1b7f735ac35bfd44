"""The bench environment: its settings, the orders it plays, and the servers it starts."""

from __future__ import annotations

import functools
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from bench.harness import (
    API_KEY,
    AUTHORIZATION,
    BIN,
    CLIENT_CORE,
    MERCHANT,
    SERVER_CORE,
    BenchError,
    Pinning,
    Proc,
    Processes,
    clean_env,
    find_binary,
    free_port,
    listening_port,
    request,
    wait_ready,
)
from proxy.devtools.simulator import SimulatorState

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


PENDING_CYCLE = ("cycle", str(PENDING_COUNT), PENDING_PREFIX)


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
    argv = [str(BIN / "order-proxy"), "simulate", "--port", "0"]
    proc = procs.start("simulator", argv, core=CLIENT_CORE)
    port = listening_port(proc)
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
    # Port 0 (read back once it listens), except for workers: each would take its own port.
    port = free_port() if cores is not None else 0
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
    port = listening_port(proc)
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
    argv = [sys.executable, "-m", f"bench.{module}", "--port", "0", *args]
    proc = env.procs.start(module, argv, core=SERVER_CORE)
    port = listening_port(proc)
    wait_ready(port, "/healthz", proc)
    return proc, port
