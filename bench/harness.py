"""Process, pinning and measurement helpers shared by bench.run and bench.profile_hits.

Every process started here is tracked by a `Processes` group and stopped by its own pid when
the group closes (normal end, exception or Ctrl-C). Servers under test go on core 0 and the
load generator on core 1 (`taskset -c`), when taskset exists and there are two cores.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from http.client import HTTPConnection
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
BIN = Path(sys.executable).parent
WRK_REPORT = BENCH / "wrk_report.lua"
CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVER_CORE = 0
CLIENT_CORE = 1

MERCHANT = "demo_merchant"
API_KEY = "demo_api_key"
AUTHORIZATION = "Basic " + base64.b64encode(f"{API_KEY}:".encode()).decode()
# Inherited settings must not leak into the servers under test.
_SCRUBBED_PREFIXES = ("JUSPAY_", "PROXY_", "REDIS_", "LOG_", "SIMULATOR_")


class BenchError(RuntimeError):
    """A scenario could not be measured (a server did not start, answered wrongly...)."""


def free_port() -> int:
    """A port that was free a moment ago: only for servers that cannot bind port 0 and say
    which port they took (redis-server, nginx, `serve --workers N` sharing one port). Every
    other server starts on port 0 and `listening_port` reads back the one it bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening_ports(pid: int) -> set[int]:
    """TCP ports in LISTEN state among the sockets process `pid` holds open (Linux /proc)."""
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir() if fd_dir.exists() else ():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table, encoding="ascii") as lines:
            next(lines)  # the header
            for line in lines:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def listening_port(proc: Proc, timeout: float = 20.0) -> int:
    """The port a server started on port 0 bound, read back from the kernel once it listens.
    (A probed free port can be taken by another process between the probe and the bind.)"""
    deadline = time.monotonic() + timeout
    while True:
        ports = _listening_ports(proc.pid)
        if len(ports) == 1:
            return ports.pop()
        if len(ports) > 1:
            raise BenchError(f"{proc.name} listens on several ports {sorted(ports)}")
        if not proc.alive() or time.monotonic() > deadline:
            raise BenchError(f"{proc.name} is not listening after {timeout}s: {proc.log_tail()}")
        time.sleep(0.02)


def find_binary(name: str) -> str | None:
    """A binary on PATH, or in the sbin directories a non-root PATH may lack."""
    return shutil.which(name) or next(
        (str(p) for d in ("/usr/sbin", "/sbin") if (p := Path(d) / name).exists()), None
    )


@dataclass(frozen=True)
class Pinning:
    """How processes are placed on cores: `taskset -c N` when possible, else left alone."""

    enabled: bool
    note: str

    @classmethod
    def detect(cls) -> Pinning:
        taskset = find_binary("taskset")
        cores = len(os.sched_getaffinity(0))
        if taskset is None:
            return cls(False, "taskset not found: processes are NOT pinned to cores")
        if cores < 2:
            return cls(False, f"only {cores} core available: processes are NOT pinned")
        return cls(
            True,
            f"server under test on core {SERVER_CORE}; wrk, simulator, redis-server and "
            f"this harness on core {CLIENT_CORE}",
        )

    def wrap(self, core: int | None, argv: list[str]) -> list[str]:
        if not self.enabled or core is None:
            return argv
        return ["taskset", "-c", str(core), *argv]

    def pin_self(self) -> None:
        """Keep the harness (and the burst client it runs) off the server's core."""
        if self.enabled:
            os.sched_setaffinity(0, {CLIENT_CORE})


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, limit: int = 1500) -> str:
        try:
            return self.log_path.read_bytes()[-limit:].decode("utf-8", "replace")
        except OSError:
            return ""


@dataclass
class Processes:
    """Every child process of one bench run; `close()` stops them all, newest first."""

    log_dir: Path
    pinning: Pinning
    procs: list[Proc] = field(default_factory=list)

    def start(
        self, name: str, argv: list[str], *, core: int | None, env: dict[str, str] | None = None
    ) -> Proc:
        log_path = self.log_dir / f"{name}.log"
        log_file = log_path.open("ab")
        popen = subprocess.Popen(
            self.pinning.wrap(core, argv),
            cwd=REPO,
            env=env if env is not None else clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            # Its own session: a Ctrl-C reaches only the harness, which then stops it.
            start_new_session=True,
        )
        proc = Proc(name, popen, log_path, log_file)
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc, timeout: float = 5.0) -> None:
        if proc.alive():
            proc.popen.send_signal(signal.SIGTERM)
            try:
                proc.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait(timeout)
        proc.log_file.close()
        if proc in self.procs:
            self.procs.remove(proc)

    def close(self) -> None:
        for proc in reversed(list(self.procs)):
            self.stop(proc)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_PREFIXES)}
    env.update(extra)
    return env


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, in seconds (from /proc/<pid>/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    # After the command name: state is field 3; utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_kib(pid: int, name: str) -> int:
    """A `kB` line of /proc/<pid>/status, e.g. VmRSS or VmHWM."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise BenchError(f"{name} missing from /proc/{pid}/status")


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def request(
    port: int,
    path: str,
    *,
    method: str = "GET",
    json_body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> Answer:
    conn = HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        payload = None if json_body is None else json.dumps(json_body).encode()
        sent = dict(headers or {})
        if payload is not None:
            sent["Content-Type"] = "application/json"
        conn.request(method, path, body=payload, headers=sent)
        resp = conn.getresponse()
        return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def wait_ready(port: int, path: str, proc: Proc, timeout: float = 20.0) -> None:
    """Poll until `path` answers 200; fail early if the process exits."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if not proc.alive():
            raise BenchError(f"{proc.name} exited ({proc.popen.returncode}): {proc.log_tail()}")
        try:
            answer = request(port, path, timeout=1.0)
        except OSError as exc:
            last = type(exc).__name__
        else:
            if answer.status == 200:
                return
            last = f"HTTP {answer.status}"
        time.sleep(0.05)
    raise BenchError(f"{proc.name} not ready on :{port}{path} after {timeout}s ({last})")


LIMIT_MARKER = "WRK_LIMIT_REACHED"


def _wrk_output(argv: list[str], limit_seconds: float) -> tuple[int, str, str]:
    """Run wrk; if its script prints the limit marker, end it with SIGINT (it then reports)."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stderr is not None
    deadline = time.monotonic() + limit_seconds
    out = b""
    interrupted = False
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise BenchError(f"wrk did not finish within {limit_seconds:.0f}s")
                if not selector.select(min(remaining, 1.0)):
                    continue
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                out += chunk
                if not interrupted and LIMIT_MARKER.encode() in out:
                    proc.send_signal(signal.SIGINT)
                    interrupted = True
        proc.wait(max(1.0, deadline - time.monotonic()))
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    return proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def run_wrk(
    pinning: Pinning,
    port: int,
    path: str,
    duration: float,
    *,
    connections: int = 32,
    script_args: tuple[str, ...] = (),
    core: int | None = CLIENT_CORE,
    headers: tuple[str, ...] = (),
) -> dict[str, Any]:
    """One wrk run (-t1, pinned to the client core); its totals and latency in a dict.
    `headers`: more request headers ("Name: value"), on every request.

    `script_args` go to bench/wrk_report.lua: () for a fixed path, ("cycle", N, PREFIX) or
    ("distinct", N, PREFIX) for /orders/PREFIX<n> (see the script).
    """
    argv = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--latency",
        "--timeout",
        "5s",
        "-H",
        "Accept: application/json",
        *(arg for header in headers for arg in ("-H", header)),
        "-s",
        str(WRK_REPORT),
        f"http://127.0.0.1:{port}{path}",
    ]
    if script_args:
        argv += ["--", *script_args]
    code, out, err = _wrk_output(pinning.wrap(core, argv), duration + 20)
    line = next((x for x in out.splitlines() if x.startswith("WRK_JSON ")), None)
    if code != 0 or line is None:
        raise BenchError(f"wrk failed ({code}): {out[-800:]} {err[-400:]}")
    data: dict[str, Any] = json.loads(line.removeprefix("WRK_JSON "))
    seconds = data["duration_us"] / 1e6
    lat = data["latency_us"]
    errors = data["errors"]
    return {
        "requests": data["requests"],
        "seconds": round(seconds, 3),
        "rps": data["requests"] / seconds if seconds else 0.0,
        "p50_ms": lat["p50"] / 1000,
        "p99_ms": lat["p99"] / 1000,
        "p999_ms": lat["p999"] / 1000,
        "mean_ms": lat["mean"] / 1000,
        "max_ms": lat["max"] / 1000,
        "non_2xx": errors["status"],
        "socket_errors": errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
        "bytes": data["bytes"],
    }
