"""The fast lane: order reads answered on aiohttp's low-level server, by the app's own parts.

For each request `web.Application` resolves the route, adds itself to the match info, checks
`Expect`, looks its middleware chain up in a cache keyed by handler and apps, and runs it. The
fast lane is the request handler of the low-level server instead (`BoundedServer`, so every
bound of proxy.web.bounds holds as before). For `GET` and `HEAD` of the two order reads it
resolves the route with the app's own router and runs the app's own middlewares around the
route's own handler, composed once at start-up; every other request (other routes and methods,
an `Expect` header) is handed to the Application unchanged.

Nothing is implemented twice: authentication, rate limits, validation, the cache read, ETag and
304, the response headers, metrics, the access line and the trace context are the callables the
Application runs, and a response passes the app's `on_response_prepare` hooks (which drop the
`Server` header) exactly as there. The parity tests (tests/web/test_fastlane.py) send the same
requests both ways and compare status, headers and bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

from proxy.web.routes import Route

# The routes the fast lane serves (by name in the route table), for GET and HEAD.
HOT_ROUTES = frozenset({"order", "order_status"})
_METHODS = frozenset({hdrs.METH_GET, hdrs.METH_HEAD})


def _compose(handler: Handler, middlewares: Iterable[Middleware]) -> Handler:
    """`handler` inside `middlewares` (the first outermost), as the Application nests them."""
    for middleware in reversed(tuple(middlewares)):

        async def step(
            request: web.Request, _m: Middleware = middleware, _h: Handler = handler
        ) -> web.StreamResponse:
            return await _m(request, _h)

        handler = step
    return handler


class FastLane:
    """The low-level server's request handler (see the module docstring)."""

    def __init__(
        self,
        app: web.Application,
        middlewares: Iterable[Middleware],
        rows: Mapping[web.AbstractRoute, Route],
    ) -> None:
        self._app = app
        self._router = app.router
        self.served = 0  # requests this lane answered itself (the rest went to the app)
        stack = tuple(middlewares)
        # Each hot aiohttp route (GET and HEAD of a hot row) with its handler, composed once.
        self._chains: dict[web.AbstractRoute, Handler] = {
            route: _compose(row.handler, stack)
            for route, row in rows.items()
            if row.name in HOT_ROUTES and route.method in _METHODS
        }

    @property
    def routes(self) -> frozenset[web.AbstractRoute]:
        return frozenset(self._chains)

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        # The server's request factory is the app's: every request is a web.Request.
        assert isinstance(request, web.Request)
        app = self._app
        if request.method in _METHODS and hdrs.EXPECT not in request.headers:
            match_info = await self._router.resolve(request)
            chain = self._chains.get(match_info.route)
            if chain is not None:
                # What the Application does before its middlewares (aiohttp's web_app.py).
                match_info.add_app(app)
                match_info.freeze()
                request._match_info = match_info
                self.served += 1
                return await chain(request)
        return await app._handle(request)


# Set by create_app on the proxy app; the runner serves through it when `server.fast_lane`.
FAST_LANE = web.AppKey("fast_lane", FastLane)
