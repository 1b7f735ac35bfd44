"""Building the Redis client from REDIS_URL: standalone, Cluster or Sentinel.

    redis://[:password@]host:port/db            rediss:// for TLS, unix:///path.sock?db=0
    redis+cluster://[:password@]host:port[,host:port...]     any seed nodes of a Redis Cluster
    redis+sentinel://[:password@]host:port[,host:port...]/service_name[/db]

Clients have no socket read timeout of their own: every command goes through the
auto-pipeline, which puts one deadline on each batch (redis-py's per-command timeout wrapper
costs more CPU than the command). Connect timeouts stay, and retries are off: a slow cache
is worse than none, and the caller's request goes to Juspay instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.retry import Retry

from proxy.config.settings import RedisSettings

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
SENTINEL_SCHEMES = ("redis+sentinel",)


@dataclass(frozen=True, slots=True)
class NodeList:
    """The parts of a multi-host Redis URL."""

    scheme: str
    nodes: tuple[tuple[str, int], ...]
    username: str | None
    password: str | None
    path: tuple[str, ...]


def parse_nodes(url: str) -> NodeList:
    """Split `scheme://[user:pass@]h1:p1,h2:p2[/a/b]`; ValueError names what is wrong."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("not a URL")
    authority, _, path = rest.partition("/")
    userinfo, at, hosts = authority.rpartition("@")
    if not at:
        hosts, userinfo = authority, ""
    username = password = None
    if userinfo:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    nodes: list[tuple[str, int]] = []
    for item in hosts.split(","):
        host, colon, port = item.strip().rpartition(":")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"each node must be host:port, got {item.strip()!r}")
        nodes.append((host.strip("[]"), int(port)))
    return NodeList(
        scheme, tuple(nodes), username, password, tuple(p for p in path.split("/") if p)
    )


def build_redis(settings: RedisSettings) -> Redis | RedisCluster:
    assert settings.url is not None
    url = settings.url.reveal()
    connect_timeout = settings.connect_timeout_seconds
    if settings.mode == "cluster":
        parts = parse_nodes(url)
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in parts.nodes],
            username=parts.username,
            password=parts.password,
            ssl=parts.scheme.startswith("rediss"),
            socket_connect_timeout=connect_timeout,
            max_connections=settings.max_connections,
            require_full_coverage=False,
            retry=AsyncRetry(NoBackoff(), 0),
            client_name="order-proxy",
        )
    if settings.mode == "sentinel":
        parts = parse_nodes(url)
        if not parts.path:
            raise ValueError("redis+sentinel:// needs the service name as the path")
        db = int(parts.path[1]) if len(parts.path) > 1 else 0
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            list(parts.nodes),
            socket_connect_timeout=connect_timeout,
            sentinel_kwargs={"password": parts.password, "socket_timeout": connect_timeout},
            password=parts.password,
            db=db,
            max_connections=settings.max_connections,
        )
        master: Redis = sentinel.master_for(
            parts.path[0], redis_class=Redis, client_name="order-proxy"
        )
        return master
    return Redis.from_url(
        url,
        socket_timeout=None,
        socket_connect_timeout=connect_timeout,
        max_connections=settings.max_connections,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=30,
        client_name="order-proxy",
    )
