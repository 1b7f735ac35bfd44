"""The epoch of the Redis primary that holds the cache: what fences entries across restarts and
promotions.

A Redis that restarts from its RDB or AOF file, or a replica that is promoted, can bring back
entries and generations from before an invalidation it never saw: the old entry and its old
generation return together, so the generation check alone would pass. So every entry carries
the epoch of the primary it was fenced on, and an entry of any other epoch is never served.

A server's epoch is its `run_id` (new on every start) and its replication id (new on every
promotion). The scripts that note a generation read it inside Redis, atomically with the note;
the client learns it on every new connection, before that connection carries any command (a
connect callback), so a lookup can compare an entry's epoch with the server that answered it
without asking again. A restart or failover always means new connections: a restarted server
has dropped every socket, and Sentinel kills the clients of a primary it demotes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

log = structlog.get_logger("proxy.cache")

# Lua: this server's epoch, built exactly as epoch_of() builds it from the same INFO sections.
EPOCH_LUA = """
local function epoch()
  local s = redis.call('INFO', 'server')
  local r = redis.call('INFO', 'replication')
  return string.sub(string.match(s, 'run_id:(%x+)'), 1, 16) .. '.' ..
    string.sub(string.match(r, 'master_replid:(%x+)'), 1, 16)
end
"""

_RUN_ID = re.compile(rb"run_id:([0-9a-f]+)")
_REPLID = re.compile(rb"master_replid:([0-9a-f]+)")
_REPLICAS = re.compile(rb"connected_slaves:(\d+)")


def epoch_of(server_info: bytes, replication_info: bytes) -> str:
    """The epoch from the text of `INFO server` and `INFO replication`."""
    run_id = _RUN_ID.search(server_info)
    replid = _REPLID.search(replication_info)
    if run_id is None or replid is None:
        raise ValueError("INFO lacks run_id or master_replid")
    return run_id.group(1)[:16].decode() + "." + replid.group(1)[:16].decode()


def _text(reply: object) -> bytes:
    if isinstance(reply, bytes):
        return reply
    if isinstance(reply, str):
        return reply.encode()
    raise ValueError(f"unexpected INFO reply {type(reply).__name__}")


class EpochTracker:
    """The epoch (and connected replica count) last seen on each server this process talks to.

    Servers are named "host:port" in a Cluster (each shard's primary has its own epoch) and ""
    otherwise (every connection goes to the one primary).
    """

    def __init__(self, *, per_node: bool = False) -> None:
        self._per_node = per_node
        self._epochs: dict[str, str] = {}
        self._replicas: dict[str, int] = {}
        self._listeners: list[Callable[[str], None]] = []

    def node_name(self, host: object, port: object) -> str:
        return f"{host}:{port}" if self._per_node else ""

    def current(self, node: str = "") -> str | None:
        return self._epochs.get(node)

    def replicas(self, node: str = "") -> int:
        """Replicas the server reported connected when this process last connected to it."""
        return self._replicas.get(node, 0)

    def on_change(self, listener: Callable[[str], None]) -> None:
        """Call `listener(node)` when a server's epoch changes (a restart or a promotion)."""
        self._listeners.append(listener)

    def record(self, node: str, server_info: bytes, replication_info: bytes) -> None:
        epoch = epoch_of(server_info, replication_info)
        replicas = _REPLICAS.search(replication_info)
        self._replicas[node] = int(replicas.group(1)) if replicas else 0
        previous = self._epochs.get(node)
        self._epochs[node] = epoch
        if previous is not None and previous != epoch:
            log.warning("redis_epoch_changed", node=node or "primary")
            for listener in self._listeners:
                listener(node)

    async def learn(self, connection: Any) -> None:
        """Connect callback: ask the new connection's server for its epoch before any command."""
        await connection.send_command("INFO", "server")
        server_info = _text(await connection.read_response())
        await connection.send_command("INFO", "replication")
        replication_info = _text(await connection.read_response())
        self.record(
            self.node_name(getattr(connection, "host", ""), getattr(connection, "port", "")),
            server_info,
            replication_info,
        )


def install(client: Redis | RedisCluster, tracker: EpochTracker) -> None:
    """Make every connection `client` opens from now on report its server's epoch first, and
    the connections it already holds too (they run the callback when they next reconnect)."""
    if isinstance(client, RedisCluster):
        manager = client.nodes_manager
        base = manager.connection_kwargs.get("connection_class")
        if base is not None:
            manager.connection_kwargs["connection_class"] = _reporting(base, tracker)
        nodes = list(manager.startup_nodes.values()) + list(manager.nodes_cache.values())
        for node in nodes:
            node.connection_class = _reporting(node.connection_class, tracker)
            for connection in list(getattr(node, "_connections", ())):
                connection.register_connect_callback(tracker.learn)
                connection._epoch_tracker = tracker
        return
    pool = client.connection_pool
    pool.connection_class = _reporting(pool.connection_class, tracker)
    for attr in ("_available_connections", "_in_use_connections"):
        for connection in list(getattr(pool, attr, ())):
            connection.register_connect_callback(tracker.learn)
            connection._epoch_tracker = tracker  # keeps the weakly held callback's owner alive


def _reporting(base: type[Any], tracker: EpochTracker) -> type[Any]:
    """`base` whose instances report their server's epoch to `tracker` on every connect."""
    if getattr(base, "_epoch_tracker", None) is tracker:
        return base

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        base.__init__(self, *args, **kwargs)
        # The callback is held weakly by redis-py: the class attribute keeps the tracker alive.
        self.register_connect_callback(tracker.learn)

    return type(base.__name__, (base,), {"__init__": init, "_epoch_tracker": tracker})
