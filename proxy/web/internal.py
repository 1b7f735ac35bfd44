"""Operator endpoints: liveness, readiness and the Prometheus scrape.

They are served by the proxy app itself, or, with PROXY_INTERNAL_PORT, by a small app of their
own on another listener (`create_internal_app`), which reports the proxy app's state.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from proxy.appkeys import BUS, LIFECYCLE, METRICS, OPENAPI, ORDER_SERVICE, SERVED
from proxy.observe.metrics import EXPOSITION_CONTENT_TYPE

_json = msgspec.json.Encoder()


def _served(request: web.Request) -> web.Application:
    """The proxy app: this one, or the one an internal listener's app reports on."""
    served = request.app.get(SERVED)
    return served if served is not None else request.app


async def healthz(request: web.Request) -> web.Response:
    """The process is alive and its event loop answers."""
    return web.Response(body=_json.encode({"status": "ok"}), content_type="application/json")


async def readyz(request: web.Request) -> web.Response:
    """Ready to serve. A Redis outage does not make us unready: the cache fails open."""
    app = _served(request)
    lifecycle = app[LIFECYCLE]
    body: dict[str, object] = {}
    service = app.get(ORDER_SERVICE)
    if lifecycle.draining:
        body["status"] = "draining"
    elif not lifecycle.ready or service is None:
        body["status"] = "starting"
    else:
        body["status"] = "ready"
    if service is not None:
        cache = service.cache
        bus = app.get(BUS)
        if cache.layer == "redis" and bus is not None:
            body["cache"] = {
                "layer": "redis",
                "redis": "up" if await cache.check() else "down",
                # Down: invalidations from other replicas may be missed, so this replica's
                # memory layer is bypassed until the subscription is back.
                "bus": "up" if bus.healthy else "down",
            }
        else:
            body["cache"] = {"layer": "memory"}
    status = 200 if body["status"] == "ready" else 503
    return web.Response(status=status, body=_json.encode(body), content_type="application/json")


async def metrics(request: web.Request) -> web.Response:
    body = _served(request)[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": EXPOSITION_CONTENT_TYPE})


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=_served(request)[OPENAPI], content_type="application/json")
