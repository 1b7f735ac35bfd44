"""Building the Redis client from the parsed REDIS_URL: standalone, Cluster or Sentinel.

Clients have no socket read timeout of their own: every command goes through the
auto-pipeline, which puts one deadline on each batch (redis-py's per-command timeout wrapper
costs more CPU than the command). Connect timeouts stay, and retries are off: a slow cache
is worse than none, and the caller's request goes to Juspay instead.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from proxy.config.settings import RedisSettings


def build_redis(settings: RedisSettings) -> Redis | RedisCluster:
    """The client for `settings.url` (which must be set), as parsed into `settings.target`."""
    assert settings.url is not None
    assert settings.target is not None
    target = settings.target
    password = target.password.reveal() if target.password is not None else None
    connect_timeout = settings.connect_timeout_seconds
    if target.mode == "cluster":
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
            username=target.username,
            password=password,
            ssl=target.tls,
            socket_connect_timeout=connect_timeout,
            max_connections=settings.max_connections,
            require_full_coverage=False,
            retry=AsyncRetry(NoBackoff(), 0),
            client_name="order-proxy",
        )
    if target.mode == "sentinel":
        assert target.service is not None
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            list(target.nodes),
            socket_connect_timeout=connect_timeout,
            sentinel_kwargs={"password": password, "socket_timeout": connect_timeout},
            password=password,
            db=target.db,
            max_connections=settings.max_connections,
        )
        master: Redis = sentinel.master_for(
            target.service, redis_class=Redis, client_name="order-proxy"
        )
        return master
    return Redis.from_url(
        settings.url.reveal(),
        socket_timeout=None,
        socket_connect_timeout=connect_timeout,
        max_connections=settings.max_connections,
        # The asyncio client's own Retry (a sync one makes redis-py 8.2 warn), catching
        # nothing: with no retries, catching would only reconnect before raising, and a lost
        # link must reach the bus at once (it drops the in-process layer).
        retry=AsyncRetry(NoBackoff(), 0, supported_errors=()),
        health_check_interval=30,
        client_name="order-proxy",
    )
