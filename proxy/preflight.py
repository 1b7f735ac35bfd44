"""Pre-flight: reach Redis and Juspay as `serve` would, and say what was found.

`order-proxy check-config --probe` runs both and prints one JSON report with a verdict for
Redis and for each merchant (exit 1 when one is not "ok"); `serve` runs the Redis half at
start-up and logs an unreachable Redis at once rather than at the first request.
Nothing here writes to Redis or reads a real order: the Juspay probe asks for an order id
that cannot exist, and reads Juspay's verdict on the key from the status of its answer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import time
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from proxy.cache.connect import build_redis
from proxy.config.settings import RedisSettings, Settings
from proxy.core.errors import ProxyError, UpstreamAuthFailed
from proxy.core.models import Decoders
from proxy.observe.metrics import Metrics
from proxy.upstream.client import (
    Credentials,
    JuspayClient,
    UpstreamCall,
    build_session,
    close_session,
)

log = structlog.get_logger("proxy.preflight")

_REDIS_PROBE_SECONDS = 3.0


async def probe_redis(
    settings: RedisSettings, seconds: float = _REDIS_PROBE_SECONDS
) -> dict[str, Any]:
    """PING, then what INFO (and the topology) says; `verdict` "ok", "warning" or
    "unreachable". Never raises for a Redis that does not answer."""
    report: dict[str, Any] = {"mode": settings.mode}
    if settings.url is None:
        return {"verdict": "ok", "mode": "in-process", "detail": "REDIS_URL is unset"}
    client = build_redis(settings)
    try:
        async with asyncio.timeout(seconds):
            started = time.perf_counter()
            await client.ping()
            report["latency_ms"] = round((time.perf_counter() - started) * 1000, 2)
            report.update(await _describe(client, settings))
    except Exception as exc:  # any failure to reach it is the finding itself
        report["verdict"] = "unreachable"
        report["error"] = type(exc).__name__
        return report
    finally:
        await client.aclose()
    warnings = _redis_warnings(report)
    report["verdict"] = "warning" if warnings else "ok"
    if warnings:
        report["warnings"] = warnings
    return report


async def _describe(client: Redis | RedisCluster, settings: RedisSettings) -> dict[str, Any]:
    found: dict[str, Any] = {}
    info: dict[str, Any] = await client.info()
    if isinstance(client, RedisCluster):
        # One node's INFO (all run the same build); the topology from the client's slot map.
        info = (
            next(iter(info.values()))
            if info and isinstance(next(iter(info.values())), dict)
            else info
        )
        nodes = client.get_nodes()
        primaries = client.get_primaries()
        found["cluster"] = {"nodes": len(nodes), "primaries": len(primaries)}
    found["version"] = info.get("redis_version")
    found["role"] = info.get("role")
    found["replicas"] = int(info.get("connected_slaves", 0) or 0)
    found["persistence"] = {
        "aof": bool(int(info.get("aof_enabled", 0) or 0)),
        # No save points and no AOF: a restart empties Redis.
        "rdb_saves": await _save_points(client),
    }
    if settings.mode == "sentinel":
        pool: Any = getattr(client, "connection_pool", None)  # a SentinelConnectionPool
        host, port = await pool.get_master_address()
        found["sentinel"] = {
            "service": settings.target.service if settings.target else None,
            "master": f"{host}:{port}",
        }
    return found


async def _save_points(client: Redis | RedisCluster) -> str | None:
    """CONFIG GET save, or None where managed Redis forbids CONFIG."""
    try:
        config: Any = await client.config_get("save")
    except Exception:  # a renamed or refused CONFIG: unknown, not a failure
        return None
    if isinstance(config, dict) and "save" not in config:
        config = next(iter(config.values()), {})  # a cluster answers per node
    value = config.get("save") if isinstance(config, dict) else None
    return str(value) if value is not None else None


def _redis_warnings(report: dict[str, Any]) -> list[str]:
    warnings = []
    if report.get("role") not in (None, "master"):
        warnings.append(f"role is {report['role']}: the proxy needs a primary it can write to")
    persistence = report.get("persistence", {})
    if not persistence.get("aof") and persistence.get("rdb_saves") == "":
        warnings.append("no AOF and no RDB save points: a restart empties the cache")
    return warnings


async def probe_juspay(settings: Settings) -> list[dict[str, Any]]:
    """One read per merchant of an order id that cannot exist: Juspay's 4xx NOT_FOUND means
    the key was accepted, 401/403 that it was refused. One attempt each, no retries."""
    upstream = dataclasses.replace(settings.upstream, max_attempts=1)
    session = build_session(upstream)
    client = JuspayClient(
        session,
        upstream,
        Credentials(settings.merchants, settings.secret_refresh_seconds),
        Metrics(),
        Decoders(),
    )
    tls = "verified" if upstream.base_url.scheme == "https" else "none (http)"
    results = []
    try:
        for merchant in settings.merchants:
            probe_id = f"order-proxy-probe-{secrets.token_hex(6)}"
            call = UpstreamCall(merchant.merchant_id, probe_id, upstream.api_version, False)
            started = time.perf_counter()
            result: dict[str, Any] = {"merchant_id": merchant.merchant_id}
            try:
                answer = await client.fetch(call)
            except UpstreamAuthFailed:
                result.update(verdict="key_refused", tls=tls)
            except ProxyError as exc:
                result.update(verdict="unreachable", error=exc.error_code, detail=str(exc))
            else:
                known = answer.status == 200 or 400 <= answer.status < 500
                result.update(
                    verdict="ok" if known else "unexpected",
                    upstream_status=answer.status,
                    tls=tls,
                )
            result["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
            results.append(result)
    finally:
        await close_session(session)
    return results


async def probe(settings: Settings) -> dict[str, Any]:
    """The whole report: Redis, then every merchant against Juspay, and one overall verdict."""
    redis_report, merchants = await asyncio.gather(
        probe_redis(settings.redis), probe_juspay(settings)
    )
    ok = redis_report["verdict"] != "unreachable" and all(m["verdict"] == "ok" for m in merchants)
    return {
        "verdict": "ok" if ok else "failed",
        "redis": redis_report,
        "juspay": {"base_url": str(settings.upstream.base_url), "merchants": merchants},
    }


async def log_redis_at_start(settings: RedisSettings) -> None:
    """`serve`: one line saying whether Redis answered, before traffic arrives."""
    if settings.url is None:
        return
    report = await probe_redis(settings, seconds=max(1.0, settings.connect_timeout_seconds * 4))
    if report["verdict"] == "unreachable":
        log.warning(
            "redis_unreachable",
            mode=report["mode"],
            error=report.get("error"),
            detail="serving without the shared cache (every read goes to Juspay) until Redis "
            "answers; check REDIS_URL and the network",
        )
    else:
        log.info(
            "redis_connected",
            mode=report["mode"],
            version=report.get("version"),
            role=report.get("role"),
            replicas=report.get("replicas"),
            latency_ms=report.get("latency_ms"),
            warnings=report.get("warnings", []),
        )
