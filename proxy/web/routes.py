"""The route table: each route's method, path, handler, name, access class, and if it counts."""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from proxy.web import handlers, internal, openapi, webhooks
from proxy.web.auth import Access


@dataclass(frozen=True, slots=True)
class Route:
    """One row. `name` labels the route in metrics and log lines; a `counted` route is a
    caller-facing one: request metrics, the in-flight gauge, the full log line."""

    method: str
    path: str
    handler: Handler
    name: str
    access: Access
    counted: bool


# Per request the middlewares find a route's row by the aiohttp route matched, not by its name.
RouteRows = MutableMapping[web.AbstractRoute, Route]

API: tuple[Route, ...] = (
    Route("GET", r"/orders/{order_id:[\s\S]*}", handlers.get_order, "order", Access.CALLER, True),
    Route("GET", "/order/status", handlers.get_order_status, "order_status", Access.CALLER, True),
    Route("POST", "/orders:batchGet", handlers.batch_get, "batch", Access.CALLER, True),
    Route(
        "DELETE", "/cache/orders/{order_id}", handlers.purge_order, "purge", Access.OPERATOR, True
    ),
    Route("POST", "/webhooks/juspay", webhooks.juspay_webhook, "webhook", Access.WEBHOOK, True),
    # The caller API's description stays with the API (it holds no operational data).
    Route("GET", "/openapi.json", openapi.openapi_json, "openapi", Access.OPEN, False),
)

# Served by an app of their own on PROXY_INTERNAL_PORT when it is set, else by the proxy app.
INTERNAL: tuple[Route, ...] = (
    Route("GET", "/healthz", internal.healthz, "healthz", Access.INTERNAL, False),
    Route("GET", "/readyz", internal.readyz, "readyz", Access.INTERNAL, False),
    Route("GET", "/metrics", internal.metrics, "metrics", Access.INTERNAL, False),
)


async def _no_route(request: web.Request) -> web.StreamResponse:
    raise web.HTTPNotFound


# The row of a request that matched no route (aiohttp answers it 404 or 405); never registered.
UNMATCHED = Route("*", "", _no_route, "other", Access.OPEN, False)


def register(app: web.Application, table: Iterable[Route], rows: RouteRows) -> None:
    """Add `table` to `app`'s router and note each aiohttp route's row in `rows`."""
    for row in table:
        resource = app.router.add_resource(row.path, name=row.name)
        # A GET route answers HEAD too, as `add_get` makes it.
        methods = (hdrs.METH_HEAD, hdrs.METH_GET) if row.method == hdrs.METH_GET else (row.method,)
        for method in methods:
            rows[resource.add_route(method, row.handler)] = row
