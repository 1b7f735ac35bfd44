"""The fast access line and the stdout writer: same line as before, never blocking the loop,
drops counted; uvloop by default; `serve --workers 2` with one /metrics for the pod.

In-process tests compare the msgspec line with the structlog line it replaced; the rest run
`order-proxy serve` (and `simulate`) as real processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import io
import json
import logging
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import pytest
import structlog

from proxy.observe import accesslog
from proxy.observe.logs import configure_logging
from tests.conftest import MERCHANT, ProxyFactory
from tests.monitoring.exposition import BAD_ORDER_ID, SAMPLE_ORDERS, UNKNOWN_ORDER, expect
from tests.support.processes import RedisProcess, ServiceProcess, free_port

ORDER = SAMPLE_ORDERS[0]
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    access = logging.getLogger("aiohttp.access")
    saved = (list(root.handlers), root.level, access.level)
    buffer = io.StringIO()
    configure_logging("debug", "json", stream=buffer)
    yield buffer
    structlog.reset_defaults()
    accesslog.install_sink(None)
    accesslog.configure(json_lines=False, level=logging.INFO)
    root.handlers, level, access_level = saved
    root.setLevel(level)
    access.setLevel(access_level)


async def _traffic(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy()
    await expect(proxy.get(f"/orders/{ORDER}"), 200, "MISS")
    await expect(proxy.get(f"/orders/{ORDER}"), 200, "HIT")
    await expect(proxy.get("/order/status", params={"order_id": ORDER}), 200, "HIT")
    await expect(proxy.get(f"/orders/{BAD_ORDER_ID}"), 400)
    await expect(proxy.get(f"/orders/{UNKNOWN_ORDER}"), 400, "MISS")
    await expect(proxy.get("/nowhere/" + "x" * 300), 404)
    await expect(proxy.get("/healthz"), 200)  # an operator endpoint: a debug line


def _requests(buffer: io.StringIO) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    return [line for line in lines if line["event"] == "request"]


async def test_the_fast_line_carries_exactly_what_the_structlog_line_did(
    captured: io.StringIO, make_proxy: ProxyFactory
) -> None:
    assert accesslog.fast_path()
    await _traffic(make_proxy)
    fast = _requests(captured)
    captured.seek(0)
    captured.truncate()
    accesslog.configure(json_lines=False, level=logging.DEBUG)  # the structlog line
    await _traffic(make_proxy)
    slow = _requests(captured)

    assert len(fast) == len(slow) == 7
    varying = {"request_id", "duration_ms", "upstream_ms", "timestamp"}
    for mine, theirs in zip(fast, slow, strict=True):
        assert set(mine) == set(theirs), (mine, theirs)
        assert {k: v for k, v in mine.items() if k not in varying} == {
            k: v for k, v in theirs.items() if k not in varying
        }
        assert isinstance(mine["duration_ms"], float)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", mine["timestamp"])
    miss = fast[0]
    assert miss["level"] == "info"
    assert miss["merchant_id"] == MERCHANT
    assert miss["order_status"] == "CHARGED"
    assert miss["upstream_status"] == 200
    assert fast[5]["path"] == ("/nowhere/" + "x" * 300)[:200]
    assert fast[6]["level"] == "debug"


def _get(port: int, path: str, conn: HTTPConnection | None = None) -> tuple[int, bytes]:
    own = conn is None
    conn = conn or HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        if own:
            conn.close()


def _proxy_env(sim: ServiceProcess, **extra: str) -> dict[str, str]:
    return {
        "JUSPAY_BASE_URL": sim.url,
        "JUSPAY_MERCHANT_ID": "demo_merchant",
        "JUSPAY_API_KEY": "demo_api_key",
        "PROXY_DRAIN_SECONDS": "1",
        **extra,
    }


def _serve(sim: ServiceProcess, port: int, *args: str, **env: str) -> subprocess.Popen[bytes]:
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("JUSPAY_", "PROXY_", "REDIS_"))
    }
    base.update(_proxy_env(sim, PROXY_PORT=str(port), PROXY_VERIFY_SAMPLE_RATE="0", **env))
    return subprocess.Popen(
        [sys.executable, "-m", "proxy", "serve", *args],
        env=base,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own group: workers are stopped with it, whatever happens
    )


def _stop(proc: subprocess.Popen[bytes]) -> bytes:
    """SIGTERM, wait for a clean exit and return the rest of its output; kill on failure."""
    try:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return out


def test_serve_runs_on_uvloop_and_writes_one_json_line_per_request(sim: ServiceProcess) -> None:
    port = free_port()
    proc = _serve(sim, port, LOG_LEVEL="info")
    try:
        out = _read_until(proc, b'"listening"')
        assert _get(port, f"/orders/{ORDER}")[0] == 200
        assert _get(port, f"/orders/{ORDER}")[0] == 200
    finally:
        out += _stop(proc)
    assert proc.returncode == 0
    lines = [json.loads(line) for line in out.splitlines() if line.startswith(b"{")]
    (starting,) = [line for line in lines if line["event"] == "starting"]
    assert starting["loop"] == "uvloop"
    requests = [line for line in lines if line["event"] == "request"]
    assert [line["cache"] for line in requests] == ["miss", "hit"]
    assert all(line["order_id"] == ORDER and line["level"] == "info" for line in requests)
    # Everything written before the exit made it out (the buffer is flushed at shutdown).
    assert lines[-1]["event"] == "stopped"


def _metric(text: str, name: str, labels: str = "") -> float:
    pattern = re.escape(name) + (r"\{" + labels + r"\}" if labels else r"(\{[^}]*\})?")
    found = re.findall(rf"^{pattern} ([0-9.e+]+)$", text, re.M)
    assert found, f"{name} {labels} not in /metrics"
    return float(found[0] if isinstance(found[0], str) else found[0][-1])


def _scrape(port: int) -> str:
    status, body = _get(port, "/metrics")
    assert status == 200
    return body.decode()


def test_a_blocked_stdout_never_blocks_the_loop_and_dropped_lines_are_counted(
    sim: ServiceProcess,
) -> None:
    port = free_port()
    proc = _serve(sim, port, LOG_LEVEL="info")
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    fcntl.fcntl(fd, F_SETPIPE_SZ, 4096)  # the smallest pipe: it fills after a few lines
    try:
        seen = _read_until(proc, b'"listening"')
        # From here on nobody reads the pipe: stdout blocks once it is full.
        conn = HTTPConnection("127.0.0.1", port, timeout=10)
        path = "/nowhere/" + "y" * 190  # a 404 logs its path: ~400-byte lines
        dropped = 0.0
        for sent in range(1, 40_001):
            status, _ = _get(port, path, conn)
            assert status == 404  # answered while stdout is stuck: the loop never blocks
            if sent % 1000 == 0:
                dropped = _metric(_scrape(port), "order_proxy_log_lines_dropped_total")
                if dropped:
                    break
        assert dropped > 0, "no line was dropped although nobody read stdout"
        conn.close()
        # Reading again: the writer catches up and says how many lines it dropped.
        seen += _read_until(proc, b'"log_lines_dropped"')
        report = next(
            json.loads(line) for line in seen.splitlines() if b'"log_lines_dropped"' in line
        )
        assert report["level"] == "warning"
        assert report["dropped"] >= 1
    finally:
        _stop(proc)
    assert proc.returncode == 0


def _read_until(proc: subprocess.Popen[bytes], marker: bytes) -> bytes:
    """Read the process's output until `marker` appears."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    seen = b""
    deadline = time.monotonic() + 60
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while marker not in seen:
            assert time.monotonic() < deadline, f"no {marker!r}: {seen[-2000:]!r}"
            if selector.select(1.0):
                chunk = os.read(fd, 1 << 20)
                assert chunk, f"exited before {marker!r}: {seen[-2000:]!r}"
                seen += chunk
    return seen


def test_workers_share_one_metrics_view(
    sim: ServiceProcess, own_redis: RedisProcess, tmp_path: Path
) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    stale = metrics_dir / "counter_999999.db"
    stale.write_bytes(b"left over from an earlier run")
    port = free_port()
    proc = _serve(
        sim,
        port,
        "--workers",
        "2",
        LOG_LEVEL="info",
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        REDIS_URL=own_redis.url,  # several workers need the shared Redis
    )
    try:
        seen = b""
        while seen.count(b'"listening"') < 2:
            seen += _read_until(proc, b'"listening"')
        assert not stale.exists()  # emptied before the workers started
        # A new connection each: SO_REUSEPORT spreads them. A worker keeps a copy in memory
        # once its bus to Redis is up (it starts in the background): read until both hold one.
        requests = 0
        deadline = time.monotonic() + 60
        while requests < 60 or _metric(_scrape(port), "order_proxy_memory_cache_entries") < 2:
            assert time.monotonic() < deadline, "a worker never kept the order in memory"
            assert _get(port, f"/orders/{ORDER}")[0] == 200
            requests += 1
        labels = 'cache="{}",code="200",route="order"'
        for _ in range(10):  # whichever worker answers, it answers for both
            text = _scrape(port)
            hits = _metric(text, "order_proxy_requests_total", labels.format("hit"))
            misses = _metric(text, "order_proxy_requests_total", labels.format("miss"))
            # One MISS for the pod (the other worker finds it in Redis), the rest HITs.
            assert (misses, hits) == (1, requests - 1)
            # Gauges combine as their mode says: no per-worker series, one value for the pod.
            assert _metric(text, "order_proxy_in_flight_requests") == 0
            assert _metric(text, "order_proxy_build_info", 'version="[^"]+"') == 1
            assert _metric(text, "order_proxy_memory_cache_entries") == 2  # one per worker
            assert "pid=" not in text
        # A worker dies: its live gauges leave the sums, its counters stay in the pod's totals.
        pids = sorted(
            json.loads(line)["pid"] for line in seen.splitlines() if b'"listening"' in line
        )
        assert len(pids) == 2
        os.kill(pids[0], signal.SIGKILL)
        _read_until(proc, b'"worker_exited"')
        assert not list(metrics_dir.glob(f"gauge_live*_{pids[0]}.db"))
        assert list(metrics_dir.glob(f"gauge_live*_{pids[1]}.db"))
        text = _scrape(port)  # only the survivor answers now
        hits = _metric(text, "order_proxy_requests_total", labels.format("hit"))
        misses = _metric(text, "order_proxy_requests_total", labels.format("miss"))
        assert (misses, hits) == (1, requests - 1)
        assert _metric(text, "order_proxy_memory_cache_entries") == 1
    finally:
        _stop(proc)
    # The killed worker was replaced (tests/server/test_supervisor.py); the pod drained cleanly.
    assert proc.returncode == 0


def test_serve_falls_back_to_the_default_loop_without_uvloop(sim: ServiceProcess) -> None:
    port = free_port()
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("JUSPAY_", "PROXY_", "REDIS_"))
    }
    base.update(_proxy_env(sim, PROXY_PORT=str(port), LOG_LEVEL="info"))
    # As on a platform without uvloop: importing it fails.
    code = "import sys; sys.modules['uvloop'] = None; from proxy.cli import main; main(['serve'])"
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        env=base,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out = _read_until(proc, b'"listening"')
        assert _get(port, f"/orders/{ORDER}")[0] == 200
    finally:
        out += _stop(proc)
    lines = [json.loads(line) for line in out.splitlines() if line.startswith(b"{")]
    assert [line["loop"] for line in lines if line["event"] == "starting"] == ["asyncio"]
    assert [line["cache"] for line in lines if line["event"] == "request"] == ["miss"]


async def test_a_socket_stdout_gets_a_writer_thread_and_drops_rather_than_block() -> None:
    """stdout as a socket (e.g. journald's): written by a thread; a peer that stops reading
    fills the bound, and the loop carries on, dropping and counting lines."""
    ours, peer = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stream = ours.makefile("w")
    sink = accesslog.LogSink(stream, max_bytes=64 * 1024, flush_bytes=4096)
    assert sink.mode == accesslog.THREAD
    before = accesslog.dropped_total()
    line = b'{"event":"request","path":"/' + b"z" * 150 + b'"}\n'
    for _ in range(5000):  # ~870 KB to a peer that reads nothing yet: never blocks here
        sink.write_line(line)
    assert sink.dropped > 0
    assert accesslog.dropped_total() - before == sink.dropped

    def read_until_report() -> bytes:
        seen = b""
        while b'"log_lines_dropped"' not in seen:
            chunk = peer.recv(1 << 16)
            assert chunk, seen[-500:]
            seen += chunk
        return seen

    seen = await asyncio.to_thread(read_until_report)
    report = json.loads(next(x for x in seen.splitlines() if b"log_lines_dropped" in x))
    assert report["dropped"] == sink.dropped
    assert seen.count(b'"event":"request"') + sink.dropped <= 5000
    sink.close()
    stream.close()
    ours.close()
    peer.close()
