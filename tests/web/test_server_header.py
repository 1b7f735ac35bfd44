"""No answer carries a `Server` header, under the proxy's own server and under any runner; the
proxy's server drops it without the response hook, and still runs the app's other hooks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from proxy.app import create_app
from proxy.appkeys import METRICS
from proxy.web.bounds import BoundedRunner
from proxy.web.serverheader import ServerlessRequest
from tests.conftest import make_settings

PATHS = ("/healthz", "/orders/JP1636474794", "/no/such/route", "/openapi.json")


async def _hooked(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["X-Hooked"] = type(request).__name__


async def test_the_proxys_server_drops_server_and_runs_every_other_hook(
    simulator: TestServer,
) -> None:
    settings = make_settings(simulator.make_url(""))
    app = create_app(settings)
    app.on_response_prepare.append(_hooked)
    runner = BoundedRunner(app, settings.server, app[METRICS], access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with aiohttp.ClientSession() as session:
            for path in PATHS:
                async with session.get(f"http://127.0.0.1:{port}{path}") as resp:
                    assert "Server" not in resp.headers, path
                    # The other hook ran, on a request of the proxy's own class.
                    assert resp.headers["X-Hooked"] == ServerlessRequest.__name__, path
    finally:
        await runner.cleanup()


async def test_under_another_runner_the_response_hook_drops_server(
    simulator: TestServer,
    aiohttp_client: Callable[
        [web.Application], Awaitable[TestClient[web.Request, web.Application]]
    ],
) -> None:
    app = create_app(make_settings(simulator.make_url("")))
    client = await aiohttp_client(app)
    for path in PATHS:
        resp = await client.get(path)
        assert "Server" not in resp.headers, path
