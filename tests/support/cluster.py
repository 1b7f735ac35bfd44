"""A real three-master Redis Cluster on loopback, for tests; no replicas, persistence off.

The nodes start with `cluster-require-full-coverage no`: with no replicas, killing a master
leaves its slots unserved, and this setting keeps the surviving masters serving theirs
(otherwise the whole cluster turns `cluster_state:fail`).

Each node's cluster bus gets its own free port (`--cluster-port`): the default, port + 10000,
may be taken or past 65535.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.cluster import key_slot

from tests.support.processes import find_redis_server, free_port

SLOTS = 16384


def find_redis_cli(server: str) -> str:
    """redis-cli next to the redis-server in use, else from $REDIS_CLI or the PATH."""
    explicit = os.environ.get("REDIS_CLI")
    if explicit:
        return explicit
    sibling = Path(server).with_name("redis-cli")
    if sibling.exists():
        return str(sibling)
    found = shutil.which("redis-cli")
    if found:
        return found
    raise RuntimeError("redis-cli not found next to redis-server or on the PATH; set REDIS_CLI")


@dataclass(frozen=True, slots=True)
class SlotRange:
    start: int
    end: int
    port: int


def _unused_port(taken: set[int]) -> int:
    port = free_port()
    while port in taken:
        port = free_port()
    taken.add(port)
    return port


class _Node:
    def __init__(self, binary: str, taken: set[int]) -> None:
        self.port = _unused_port(taken)
        self.bus_port = _unused_port(taken)
        self.dir = tempfile.TemporaryDirectory(prefix=f"order-proxy-cluster-{self.port}-")
        self.log = Path(self.dir.name) / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.binary = binary

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    "--port", str(self.port),
                    "--cluster-port", str(self.bus_port),
                    "--bind", "127.0.0.1",
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", f"{self.dir.name}/nodes-{self.port}.conf",
                    "--cluster-node-timeout", "1000",
                    "--cluster-require-full-coverage", "no",
                    "--save", "",
                    "--appendonly", "no",
                    "--dir", self.dir.name,
                    "--daemonize", "no",
                    "--loglevel", "notice",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip

    def client(self) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1", port=self.port, socket_timeout=2, socket_connect_timeout=2
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class RedisCluster3:
    """Three redis-server masters in cluster mode, joined by `redis-cli --cluster create`."""

    def __init__(self, timeout: float = 30) -> None:
        self.binary = find_redis_server()
        self.cli = find_redis_cli(self.binary)
        self.timeout = timeout
        taken: set[int] = set()
        self.nodes = [_Node(self.binary, taken) for _ in range(3)]

    # --- addresses -----------------------------------------------------------------------

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def alive(self, index: int) -> bool:
        return self.nodes[index].alive()

    # --- life cycle ----------------------------------------------------------------------

    def start(self) -> RedisCluster3:
        try:
            for node in self.nodes:
                node.start()
            deadline = time.monotonic() + self.timeout
            for node in self.nodes:
                self._wait_ping(node, deadline)
            self._create()
            self._wait_cluster_ok(deadline)
        except BaseException:
            self.close()
            raise
        return self

    def _create(self) -> None:
        """Join the three nodes and spread the 16384 slots over them (no replicas)."""
        create = subprocess.run(
            [
                self.cli,
                "--cluster", "create",
                *(f"127.0.0.1:{port}" for port in self.ports),
                "--cluster-replicas", "0",
                "--cluster-yes",
            ],
            capture_output=True,
            timeout=self.timeout,
            check=False,
        )  # fmt: skip
        if create.returncode != 0:
            raise RuntimeError(
                f"redis-cli --cluster create failed ({create.returncode}): "
                f"{create.stdout[-2000:]!r} {create.stderr[-2000:]!r}"
            )

    def _wait_ping(self, node: _Node, deadline: float) -> None:
        while True:
            if not node.alive():
                raise RuntimeError(f"redis-server :{node.port} exited: {node.tail()}")
            try:
                with node.client() as client:
                    if client.ping():
                        return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"redis-server :{node.port} never answered PING")
            time.sleep(0.02)

    def _wait_cluster_ok(self, deadline: float) -> None:
        """Every node: state ok, all slots assigned, all three masters known."""
        last: dict[int, dict[str, str]] = {}
        while True:
            ready = True
            for node in self.nodes:
                try:
                    with node.client() as client:
                        info = cluster_info(client)
                except redis.RedisError:
                    ready = False
                    continue
                last[node.port] = info
                if (
                    info.get("cluster_state") != "ok"
                    or info.get("cluster_slots_assigned") != str(SLOTS)
                    or info.get("cluster_known_nodes") != "3"
                ):
                    ready = False
            if ready:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"cluster not ok within {self.timeout}s: {last}")
            time.sleep(0.05)

    def kill(self, index: int) -> None:
        """SIGKILL one master; its slots stay unserved (there are no replicas)."""
        self.nodes[index].kill()

    def wait_marked_failed(self, index: int, timeout: float = 15) -> None:
        """Poll until every surviving master flags the dead one `fail` and still says ok."""
        dead = f"127.0.0.1:{self.nodes[index].port}"
        deadline = time.monotonic() + timeout
        while True:
            done = True
            for node in self.nodes:
                if not node.alive():
                    continue
                try:
                    with node.client() as client:
                        nodes = client.execute_command("CLUSTER NODES")
                        info = cluster_info(client)
                except redis.RedisError:
                    done = False
                    continue
                if "fail" not in node_flags(nodes, dead) or info.get("cluster_state") != "ok":
                    done = False
            if done:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"master {index} not marked failed within {timeout}s")
            time.sleep(0.05)

    def subscribers(self, channel: str) -> int:
        """Classic SUBSCRIBE clients of `channel`, summed over the live masters (each node
        counts only its own connections; messages reach all of them)."""
        total = 0
        for node in self.nodes:
            if not node.alive():
                continue
            with node.client() as client:
                counts = dict(client.pubsub_numsub(channel))
            total += int(counts.get(channel.encode(), counts.get(channel, 0)))
        return total

    def wait_subscribers(self, channel: str, count: int, timeout: float = 10) -> None:
        """Poll until exactly `count` clients are subscribed to `channel` on live masters."""
        deadline = time.monotonic() + timeout
        seen = -1
        while True:
            try:
                seen = self.subscribers(channel)
            except redis.RedisError:
                seen = -1
            if seen == count:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{seen} subscriber(s) of {channel!r} on live masters, not {count}, "
                    f"after {timeout}s"
                )
            time.sleep(0.02)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def close(self) -> None:
        self.stop()
        for node in self.nodes:
            node.dir.cleanup()

    def __enter__(self) -> RedisCluster3:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- slots ---------------------------------------------------------------------------

    def slot_ranges(self) -> list[SlotRange]:
        """Who serves which slots, from CLUSTER SLOTS on the first live node."""
        for node in self.nodes:
            if not node.alive():
                continue
            with node.client() as client:
                raw = client.execute_command("CLUSTER SLOTS")
            return parse_cluster_slots(raw)
        raise RuntimeError("no live node to ask for CLUSTER SLOTS")

    def index_of_port(self, port: int) -> int:
        return self.ports.index(port)

    def slot_table(self) -> list[int]:
        """For each of the 16384 slots, the index of the master serving it (-1: none)."""
        table = [-1] * SLOTS
        for item in self.slot_ranges():
            index = self.index_of_port(item.port)
            table[item.start : item.end + 1] = [index] * (item.end - item.start + 1)
        return table

    def owner(self, key: str) -> int:
        """The index of the master that owns `key`'s slot."""
        slot = key_slot(key.encode())
        for item in self.slot_ranges():
            if item.start <= slot <= item.end:
                return self.index_of_port(item.port)
        raise LookupError(f"slot {slot} of {key!r} is not assigned")


def cluster_info(client: redis.Redis) -> dict[str, str]:
    """CLUSTER INFO as text pairs, whether or not the client already parsed it."""
    raw = client.execute_command("CLUSTER INFO")
    if isinstance(raw, dict):
        return {str(k): str(v) for k, v in raw.items()}
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {k.strip(): v.strip() for k, v in pairs}


def node_flags(raw: object, address: str) -> list[str]:
    """The flags CLUSTER NODES shows for `address` (host:port), parsed or raw."""
    if isinstance(raw, dict):
        entry = raw.get(address)
        return str(entry["flags"]).split(",") if entry else []
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    for line in text.splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[1].split("@")[0] == address:
            return fields[2].split(",")
    return []


def parse_cluster_slots(raw: object) -> list[SlotRange]:
    """CLUSTER SLOTS as the plain client returns it (parsed to a dict, or raw lists)."""
    ranges: list[SlotRange] = []
    if isinstance(raw, dict):
        for (start, end), info in raw.items():
            _host, port = info["primary"][:2]
            ranges.append(SlotRange(int(start), int(end), int(port)))
    else:
        assert isinstance(raw, list)
        for item in raw:
            start, end, primary = item[0], item[1], item[2]
            ranges.append(SlotRange(int(start), int(end), int(primary[1])))
    return sorted(ranges, key=lambda r: r.start)
