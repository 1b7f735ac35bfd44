"""`serve --workers N` as real processes: dead workers are replaced, crash loops end the pod."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.processes import RedisProcess, ServiceProcess, free_port

pytestmark = pytest.mark.slow


class Pod:
    """`order-proxy serve --workers N` with every line of its output kept (also those before
    the first worker listens, which ServiceProcess reads past)."""

    def __init__(self, args: list[str], env: dict[str, str], port: int) -> None:
        base = {
            k: v for k, v in os.environ.items() if not k.startswith(("JUSPAY_", "PROXY_", "REDIS_"))
        }
        self.port = port
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "proxy", *args],
            env={**base, **env, "PROXY_PORT": str(port)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: workers are stopped with it, whatever happens
        )
        self._output = bytearray()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        while chunk := os.read(self.proc.stdout.fileno(), 65536):
            self._output += chunk

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> bytes:
        return bytes(self._output)

    def terminate(self) -> None:
        self.proc.terminate()

    def wait(self, timeout: float) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._reader.join(timeout=5)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


def _lines(proc: Pod, event: str) -> list[dict[str, object]]:
    found = []
    for raw in proc.output().splitlines():
        if raw.startswith(b"{") and f'"event":"{event}"'.encode() in raw.replace(b" ", b""):
            found.append(json.loads(raw))
    return found


def _until(condition: Callable[[], object], what: str, timeout: float = 30) -> object:
    """Poll an observable condition with a bounded deadline (a process' output or answer)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"no {what} within {timeout}s"
        time.sleep(0.05)


def _readyz(proc: Pod) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"{proc.url}/readyz", timeout=5) as resp:  # noqa: S310
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _pod(
    sim: ServiceProcess, redis_server: RedisProcess, tmp_path: Path, workers: int, toml: str
) -> Pod:
    config = tmp_path / "proxy.toml"
    config.write_text(toml)
    proc = Pod(
        ["serve", "--workers", str(workers)],
        {
            "JUSPAY_BASE_URL": sim.url,
            "JUSPAY_MERCHANT_ID": "demo_merchant",
            "JUSPAY_API_KEY": "demo_api_key",
            "REDIS_URL": redis_server.url,
            "PROXY_CONFIG_FILE": str(config),
            "PROXY_DRAIN_SECONDS": "1",
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
            "PROXY_VERIFY_SAMPLE_RATE": "0",
            "LOG_LEVEL": "info",
        },
        free_port(),
    )
    try:
        _until(lambda: len(_lines(proc, "listening")) >= workers, "listening workers")
    except BaseException:
        proc.stop()
        raise
    return proc


def test_a_killed_worker_is_replaced_and_readyz_says_so_meanwhile(
    sim: ServiceProcess, redis_server: RedisProcess, tmp_path: Path
) -> None:
    # A restart delay long enough to see the pod with one worker missing.
    proc = _pod(sim, redis_server, tmp_path, 2, "[server]\nworker_restart_seconds = 3\n")
    try:
        status, body = _readyz(proc)
        assert (status, body["status"], body["workers"]) == (
            200,
            "ready",
            {"expected": 2, "running": 2},
        )
        first = {int(line["pid"]) for line in _lines(proc, "worker_started")}  # type: ignore[call-overload]
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        exited = _until(lambda: _lines(proc, "worker_exited"), "worker_exited line")
        assert exited[0]["pid"] == victim  # type: ignore[index]
        # The survivor answers /readyz (SO_REUSEPORT) and says the pod is short of a worker.
        status, body = _readyz(proc)
        assert (status, body["status"], body["workers"]) == (
            503,
            "worker_missing",
            {"expected": 2, "running": 1},
        )
        started = _until(
            lambda: [s for s in _lines(proc, "worker_started") if s["pid"] not in first],
            "a replacement worker",
        )
        replacement = int(started[0]["pid"])  # type: ignore[index, call-overload]
        _until(
            lambda: [s for s in _lines(proc, "listening") if s["pid"] == replacement],
            "the replacement listening",
        )
        status, body = _readyz(proc)
        assert (status, body["workers"]) == (200, {"expected": 2, "running": 2})
        proc.terminate()
        assert proc.wait(timeout=30) == 0  # every worker drained, the killed one included
    finally:
        proc.stop()
    # Both live workers drained on SIGTERM.
    assert len(_lines(proc, "stopped")) == 2


def test_a_crash_loop_ends_the_parent_with_a_failure(
    sim: ServiceProcess, redis_server: RedisProcess, tmp_path: Path
) -> None:
    proc = _pod(
        sim,
        redis_server,
        tmp_path,
        2,
        "[server]\nworker_restart_seconds = 0.05\nworker_crash_limit = 3\n",
    )
    try:
        killed: set[int] = set()
        for _ in range(3):
            alive = _until(
                lambda: [s["pid"] for s in _lines(proc, "listening") if s["pid"] not in killed],
                "a new worker listening",
            )
            pid = int(alive[0])  # type: ignore[index, call-overload]
            os.kill(pid, signal.SIGKILL)
            killed.add(pid)
        assert proc.wait(timeout=30) == 1
    finally:
        proc.stop()
    loop = _lines(proc, "workers_crash_loop")
    assert len(loop) == 1
    assert loop[0]["deaths"] == 3
    assert len(_lines(proc, "worker_exited")) == 2  # the first two were to be replaced
