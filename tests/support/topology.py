"""Redis topologies people run, as real processes: a persistent Redis that can crash and come
back from its files, and a primary with a replica and a Sentinel that can fail over.

    redis = PersistentRedis(aof=False).start()   # RDB: SAVE writes the snapshot it restarts from
    redis.crash(); redis.start()                 # SIGKILL, then the same port and directory

    ha = await SentinelSet.start()   # primary, replica (linked through a Relay), one Sentinel
    ha.relay.cut()                   # the replica falls behind (its link is held, not broken)
    ha.crash_primary()
    await ha.until_switched()        # Sentinel promoted the replica
    await ha.close()
"""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
import threading
from pathlib import Path

import redis.asyncio as aioredis

from tests.support.processes import RedisProcess, find_redis_server, free_port, wait_for_line
from tests.support.relay import Relay

SERVICE = "mymaster"


class PersistentRedis(RedisProcess):
    """A redis-server that keeps its data in its directory: RDB snapshots taken by SAVE, or
    an append-only file written on every command (`aof`)."""

    def __init__(self, *, aof: bool) -> None:
        persistence = ("--appendonly", "yes", "--appendfsync", "always") if aof else ()
        super().__init__(extra_args=persistence)

    def crash(self) -> None:
        """SIGKILL: no shutdown save, no goodbye to clients."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            self.proc = None


class _Output:
    """Everything a process prints, read by a thread; waits for a line to appear."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self._proc = proc
        self._text = b""
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        assert self._proc.stdout is not None
        for line in iter(self._proc.stdout.readline, b""):
            with self._changed:
                self._text += line
                self._changed.notify_all()

    def count(self, marker: bytes) -> int:
        with self._changed:
            return self._text.count(marker)

    def _wait(self, marker: bytes, times: int, timeout: float) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: self._text.count(marker) >= times, timeout):
                raise TimeoutError(f"no {marker!r} within {timeout}s: {self._text[-3000:]!r}")

    async def until(self, marker: bytes, *, times: int = 1, within: float = 30.0) -> None:
        await asyncio.to_thread(self._wait, marker, times, within)


class SentinelSet:
    """A primary, one replica that replicates through a Relay (so a test can hold its link),
    and one Sentinel (quorum 1) that fails over 0.5 s after the primary stops answering."""

    def __init__(self, primary: RedisProcess, replica: RedisProcess, relay: Relay) -> None:
        self.primary = primary
        self.replica = replica
        self.relay = relay
        self.port = free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="order-proxy-sentinel-")
        self._proc: subprocess.Popen[bytes] | None = None
        self._output: _Output | None = None

    @property
    def url(self) -> str:
        """REDIS_URL for the proxy."""
        return f"redis+sentinel://127.0.0.1:{self.port}/{SERVICE}"

    @classmethod
    async def start(cls) -> SentinelSet:
        primary = RedisProcess().start()
        relay = await Relay(primary.port).start()
        replica = RedisProcess(extra_args=("--replicaof", "127.0.0.1", str(relay.port)))
        ha = cls(primary, replica, relay)
        try:
            replica.start()
            await ha.until_replicated(within=20)
            ha._start_sentinel()
            assert ha._output is not None
            await ha._output.until(b"+slave ")  # it knows the replica it may promote
        except BaseException:
            await ha.close()
            raise
        return ha

    async def until_replicated(self, within: float = 10.0) -> None:
        """The replica holds everything the primary has written so far: WAIT, on the connection
        of a write made now, counts the replicas that acknowledged the primary's offset."""
        client = aioredis.Redis(port=self.primary.port)
        try:
            pipe = client.pipeline(transaction=False)
            pipe.set("order-proxy-test:replicated", "1")
            pipe.execute_command("WAIT", 1, int(within * 1000))
            _, replicas = await pipe.execute()
            if replicas < 1:
                raise TimeoutError(f"the replica did not catch up within {within}s")
        finally:
            await client.aclose()

    def _start_sentinel(self) -> None:
        config = Path(self._dir.name) / "sentinel.conf"
        config.write_text(
            f"port {self.port}\n"
            "bind 127.0.0.1\n"
            f"dir {self._dir.name}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary.port} 1\n"
            f"sentinel down-after-milliseconds {SERVICE} 500\n"
            f"sentinel failover-timeout {SERVICE} 5000\n"
        )
        self._proc = subprocess.Popen(
            [find_redis_server(), str(config), "--sentinel"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        wait_for_line(self._proc, b"+monitor master", timeout=20)
        self._output = _Output(self._proc)

    def crash_primary(self) -> None:
        assert self.primary.proc is not None
        self.primary.proc.kill()
        self.primary.proc.wait()
        self.primary.stop()

    async def until_switched(self) -> None:
        """Sentinel has made the replica the primary."""
        assert self._output is not None
        await self._output.until(b"+switch-master", within=30)

    async def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc is not None and self._proc.stdout is not None:
            self._proc.stdout.close()
        self.replica.close()
        self.primary.close()
        await self.relay.close()
        self._dir.cleanup()
