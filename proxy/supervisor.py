"""`serve --workers N`: the parent that keeps N worker processes running on one port.

A worker that dies is replaced after a backoff (doubled for each death in a row, reset once a
worker has lived a minute); too many deaths within a minute end the parent with exit 1, so the
orchestrator restarts the pod rather than watching a crash loop. A worker that fails to start
(exit 2: a setting is wrong, the port is taken) ends the parent with exit 2 at once: its
siblings would fail the same way. SIGTERM or SIGINT is passed to every worker, nothing is
replaced any more, and the parent exits once all have drained.

The parent writes how many workers it expects and which run to a small JSON file (its path in
the workers' environment); each worker marks itself once it listens, and each worker's /readyz
counts the running workers that do: while one is missing (dead, or its replacement not yet
listening) the pod says so and is not ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog

log = structlog.get_logger("proxy.supervisor")

# Where a worker finds the parent's census (set by the parent in the workers' environment).
CENSUS_ENV = "ORDER_PROXY_WORKERS_FILE"
START_FAILED = 2
_CRASH_WINDOW_SECONDS = 60.0
_BACKOFF_MAX_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """How dead workers are replaced (ServerSettings.worker_restart_seconds, _crash_limit)."""

    first_delay: float = 0.5
    crash_limit: int = 5
    window: float = _CRASH_WINDOW_SECONDS


@dataclass(frozen=True, slots=True)
class Census:
    """What /readyz reports of the pod: workers expected, and running and listening now."""

    expected: int
    running: int

    @property
    def complete(self) -> bool:
        return self.running >= self.expected


def listening_marker(census_file: Path, pid: int) -> Path:
    """The file a worker creates once it listens (removed by the parent when it exits)."""
    return census_file.with_name(f"{census_file.stem}.{pid}.listening")


def mark_listening(census_file: Path, pid: int) -> None:
    listening_marker(census_file, pid).touch()


def read_census(path: Path) -> Census | None:
    """The pod as the parent last wrote it, counting only workers that listen; None when
    there is nothing to read (not supervised)."""
    try:
        data = json.loads(path.read_bytes())
        expected, pids = int(data["expected"]), [int(pid) for pid in data["pids"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return Census(expected, sum(listening_marker(path, pid).exists() for pid in pids))


class Supervisor:
    """Runs `count` copies of `command`, replacing those that die, until told to stop."""

    def __init__(
        self,
        count: int,
        command: list[str],
        env: Mapping[str, str],
        census_file: Path,
        policy: RestartPolicy,
        *,
        on_exit: Callable[[int], None] | None = None,
    ) -> None:
        self._count = count
        self._command = command
        self._env = {**env, CENSUS_ENV: str(census_file)}
        self._census_file = census_file
        self._policy = policy
        self._on_exit = on_exit
        self._running: dict[int, asyncio.subprocess.Process] = {}
        self._deaths: list[float] = []
        self._stop = asyncio.Event()
        self._exit_code: int | None = None
        self._codes: list[int] = []

    async def run(self) -> int:
        """Supervise until SIGTERM/SIGINT (exit code of the drained workers), a worker that
        could not start (2) or a crash loop (1)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop, sig)
        self._write_census()
        slots = [asyncio.create_task(self._slot(index)) for index in range(self._count)]
        try:
            await self._stop.wait()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            await asyncio.gather(*slots, return_exceptions=True)
            with contextlib.suppress(OSError):
                self._census_file.unlink()
        if self._exit_code is not None:
            return self._exit_code
        return max(self._codes, key=abs, default=0)

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Pass `signum` to every worker and replace none from now on."""
        if self._stop.is_set():
            return
        self._stop.set()
        for proc in self._running.values():
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signum)

    def _fail(self, code: int) -> None:
        if self._exit_code is None:
            self._exit_code = code
        self.stop()

    async def _slot(self, index: int) -> None:
        """One worker's place: start it, and start another whenever it dies."""
        loop = asyncio.get_running_loop()
        delay = self._policy.first_delay
        while not self._stop.is_set():
            try:
                proc = await asyncio.create_subprocess_exec(*self._command, env=self._env)
            except OSError:
                # Out of processes or memory: a pod that cannot start its workers ends.
                log.exception("worker_spawn_failed", slot=index)
                self._fail(1)
                return
            started = loop.time()
            self._running[proc.pid] = proc
            self._write_census()
            log.info("worker_started", slot=index, pid=proc.pid)
            code = await proc.wait()
            del self._running[proc.pid]
            self._write_census()
            listening_marker(self._census_file, proc.pid).unlink(missing_ok=True)
            if self._on_exit is not None:
                self._on_exit(proc.pid)
            if self._stop.is_set():
                # Killed by our own signal before it could install its handler: it held
                # nothing in flight, so that is a clean stop too.
                self._codes.append(0 if code == -signal.SIGTERM else code)
                return
            if code == START_FAILED:
                log.error("worker_start_failed", slot=index, pid=proc.pid, code=code)
                self._fail(START_FAILED)
                return
            now = loop.time()
            if now - started >= self._policy.window:
                delay = self._policy.first_delay  # it ran a good while: not a loop
            self._deaths = [t for t in self._deaths if now - t < self._policy.window] + [now]
            if len(self._deaths) >= self._policy.crash_limit:
                log.error(
                    "workers_crash_loop",
                    deaths=len(self._deaths),
                    window_seconds=self._policy.window,
                    last_pid=proc.pid,
                    last_code=code,
                )
                self._fail(1)
                return
            log.warning(
                "worker_exited", slot=index, pid=proc.pid, code=code, restart_in_seconds=delay
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=delay)
            delay = min(max(delay * 2, 0.1), _BACKOFF_MAX_SECONDS)

    def _write_census(self) -> None:
        # Written whole and renamed into place: a reader never sees half a file.
        tmp = self._census_file.with_suffix(".tmp")
        census = {"expected": self._count, "pids": sorted(self._running)}
        tmp.write_text(json.dumps(census))
        tmp.replace(self._census_file)


def run_supervised(
    count: int,
    env: Mapping[str, str],
    census_file: Path,
    policy: RestartPolicy,
    on_exit: Callable[[int], None],
) -> int:
    """Run the supervisor on its own (plain asyncio) loop; the parent serves no traffic."""
    command = [sys.executable, "-m", "proxy", "serve"]
    supervisor = Supervisor(count, command, env, census_file, policy, on_exit=on_exit)
    started = time.monotonic()
    code = asyncio.run(supervisor.run())
    log.info(
        "workers_stopped",
        code=code,
        pid=os.getpid(),
        ran_seconds=round(time.monotonic() - started, 1),
    )
    return code
