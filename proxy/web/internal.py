"""Operator endpoints: liveness, readiness and the Prometheus scrape.

They read the app serving them: the proxy app, or with PROXY_INTERNAL_PORT the internal
listener's app, which holds the proxy app's metrics, lifecycle and cache health.
"""

from __future__ import annotations

import asyncio
import contextlib

import msgspec
from aiohttp import web

from proxy.appkeys import CACHE_HEALTH, LIFECYCLE
from proxy.observe.metrics import EXPOSITION_CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE
from proxy.supervisor import read_census
from proxy.web.operator_views import OPERATOR_VIEWS

_json = msgspec.json.Encoder()
# How long /readyz waits for the bus to re-subscribe once Redis answers again.
_BUS_BACK_SECONDS = 0.5


async def healthz(request: web.Request) -> web.Response:
    """The process is alive and its event loop answers."""
    return web.Response(body=_json.encode({"status": "ok"}), content_type="application/json")


async def readyz(request: web.Request) -> web.Response:
    """Ready to serve. A Redis outage does not make us unready: the cache fails open."""
    lifecycle = request.app[LIFECYCLE]
    health = request.app.get(CACHE_HEALTH)  # set once the proxy app has started
    body: dict[str, object] = {}
    if lifecycle.draining:
        body["status"] = "draining"
    elif not lifecycle.ready or health is None:
        body["status"] = "starting"
    else:
        body["status"] = "ready"
    if lifecycle.census_file is not None:
        census = read_census(lifecycle.census_file)
        if census is not None:
            body["workers"] = {"expected": census.expected, "running": census.running}
            if not census.complete and body["status"] == "ready":
                # A worker died and is being replaced: the pod serves with less than it should.
                body["status"] = "worker_missing"
    if health is not None:
        cache, bus = health.cache, health.bus
        if cache.layer == "redis" and bus is not None:
            # At most one Redis check per second, however often this is asked.
            redis_up = await request.app[OPERATOR_VIEWS].redis_up(
                cache.check, lambda: cache.redis_healthy
            )
            if redis_up and not bus.healthy:
                # Redis is back: have the bus re-subscribe now rather than at the end of its
                # backoff, so this answer already says whether it could.
                bus.reconnect_now()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(bus.subscribed.wait(), timeout=_BUS_BACK_SECONDS)
            body["cache"] = {
                "layer": "redis",
                "redis": "up" if redis_up else "down",
                # Down: invalidations from other replicas may be missed, so this replica's
                # memory layer is bypassed until the subscription is back.
                "bus": "up" if bus.healthy else "down",
            }
        else:
            body["cache"] = {"layer": "memory"}
    status = 200 if body["status"] == "ready" else 503
    return web.Response(status=status, body=_json.encode(body), content_type="application/json")


async def metrics(request: web.Request) -> web.Response:
    # Prometheus asks for OpenMetrics (the format with exemplars) when exemplar storage is on.
    open_metrics = "application/openmetrics-text" in request.headers.get("Accept", "")
    body = await request.app[OPERATOR_VIEWS].render(open_metrics=open_metrics)  # <= 1/s
    content_type = OPENMETRICS_CONTENT_TYPE if open_metrics else EXPOSITION_CONTENT_TYPE
    return web.Response(body=body, headers={"Content-Type": content_type})
