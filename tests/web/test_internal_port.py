"""PROXY_INTERNAL_PORT: /healthz, /readyz and /metrics on a listener of their own, so a gateway
can expose the API without them (and a sidecar's metrics can be scraped without the API).

Also issue 14, item 4: these routes never need a client key, even with `[[clients]]` set, while
order reads on loopback do.
"""

from __future__ import annotations

import base64
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from proxy.app import create_app
from proxy.appkeys import INTERNAL_APP, LIFECYCLE
from proxy.config import SettingsError, load_settings
from proxy.config.settings import ClientSettings
from proxy.web import routes
from proxy.web.auth import Access, hash_key
from tests.conftest import MERCHANT, make_settings
from tests.support.processes import RedisProcess, serve_on_any_ports, simulator_process

ORDER = "JP1636474794"
CLIENT_KEY = "client-key-0123456789abcdef"
INTERNAL = ("/healthz", "/readyz", "/metrics")

Client = TestClient[web.Request, web.Application]


def test_the_internal_port_is_read_from_the_environment() -> None:
    base = {"JUSPAY_MERCHANT_ID": "m1", "JUSPAY_API_KEY": "k"}
    assert load_settings(base).server.internal_port is None
    settings = load_settings({**base, "PROXY_INTERNAL_PORT": "9090"})
    assert settings.server.internal_port == 9090
    assert settings.server.internal_host is None
    assert settings.describe()["server"]["internal_port"] == 9090
    pod_ip = "10.1.2.3"
    other = load_settings({**base, "PROXY_INTERNAL_PORT": "9090", "PROXY_INTERNAL_HOST": pod_ip})
    assert other.server.internal_host == pod_ip


async def test_with_an_internal_port_the_public_app_does_not_serve_internal_routes(
    aiohttp_client: Callable[..., Awaitable[Client]],
    simulator: TestServer,
    redis_server: RedisProcess,
) -> None:
    settings = make_settings(simulator.make_url(""), redis_url=redis_server.url)
    settings = replace(settings, server=replace(settings.server, internal_port=0))
    app = create_app(settings)
    public = await aiohttp_client(app)
    internal = await aiohttp_client(app[INTERNAL_APP])

    for path in INTERNAL:
        resp = await public.get(path)
        assert resp.status == 404, path
        assert (await resp.json())["error_code"] == "route_not_found"
        assert (await internal.get(path)).status == 200, path
    # The API stays on the public port (its description too), and not on the internal one.
    assert (await public.get(f"/orders/{ORDER}")).status == 200
    assert (await public.get("/openapi.json")).status == 200
    assert (await internal.get(f"/orders/{ORDER}")).status == 404

    # The internal listener reports the proxy app's own state: its metrics and readiness.
    scrape = await (await internal.get("/metrics")).text()
    assert 'order_proxy_requests_total{cache="miss",code="200",route="order"} 1.0' in scrape
    ready = await (await internal.get("/readyz")).json()
    assert ready["status"] == "ready"
    assert ready["cache"]["redis"] == "up"
    app[LIFECYCLE].draining = True
    draining = await internal.get("/readyz")
    assert draining.status == 503
    assert (await draining.json())["status"] == "draining"


async def test_operator_endpoints_need_no_client_key_while_order_reads_on_loopback_do(
    aiohttp_client: Callable[..., Awaitable[Client]], simulator: TestServer
) -> None:
    settings = replace(
        make_settings(simulator.make_url("")),
        clients=(ClientSettings("billing", hash_key(CLIENT_KEY), (MERCHANT,)),),
    )
    assert settings.server.host == "127.0.0.1"
    proxy = await aiohttp_client(create_app(settings))
    for path in (*INTERNAL, "/openapi.json"):
        assert (await proxy.get(path)).status == 200, path
    # Loopback is no exemption: with clients configured, every order read needs a key.
    assert (await proxy.get(f"/orders/{ORDER}")).status == 401
    token = base64.b64encode(f"{CLIENT_KEY}:".encode()).decode()
    keyed = await proxy.get(f"/orders/{ORDER}", headers={"Authorization": f"Basic {token}"})
    assert keyed.status == 200


async def test_the_route_table_says_which_routes_take_a_client_key(
    aiohttp_client: Callable[..., Awaitable[Client]], simulator: TestServer
) -> None:
    settings = replace(
        make_settings(simulator.make_url("")),
        clients=(ClientSettings("billing", hash_key(CLIENT_KEY), (MERCHANT,)),),
    )
    proxy = await aiohttp_client(create_app(settings))
    for row in (*routes.API, *routes.INTERNAL):
        path = row.path.replace("{order_id:[\\s\\S]*}", ORDER).replace("{order_id}", ORDER)
        resp = await proxy.request(row.method, path)
        challenged = resp.headers.get("WWW-Authenticate") == 'Basic realm="order-proxy"'
        assert challenged is (row.access in (Access.CALLER, Access.OPERATOR)), row.name


def test_the_docs_say_which_routes_need_a_key_and_that_loopback_is_no_exemption() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    security = " ".join(readme[readme.index("## Security") :].split("\n## ")[0].split())
    assert "unless the proxy listens on loopback" not in security
    assert "on loopback as anywhere else" in security
    assert "`/healthz`, `/readyz`, `/metrics` and `/openapi.json` never need a key" in security
    api = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    operator = " ".join(api[api.index("## Operator endpoints") :].split("\n## ")[0].split())
    assert "never need a client key, even with `[[clients]]` configured" in operator
    assert "`PROXY_INTERNAL_PORT`" in operator


def test_the_internal_port_must_differ_from_the_api_port() -> None:
    base = {"JUSPAY_MERCHANT_ID": "m1", "JUSPAY_API_KEY": "k", "PROXY_PORT": "9090"}
    with pytest.raises(SettingsError, match="PROXY_INTERNAL_PORT: must differ from PROXY_PORT"):
        load_settings({**base, "PROXY_INTERNAL_PORT": "9090"})
    with pytest.raises(SettingsError, match="PROXY_INTERNAL_PORT: must be a whole number"):
        load_settings({**base, "PROXY_INTERNAL_PORT": "metrics"})


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - loopback
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_serve_with_an_internal_port_splits_the_routes_between_two_listeners() -> None:
    sim = simulator_process().start()
    try:
        with serve_on_any_ports(sim) as listening:
            public = f"http://127.0.0.1:{listening['port']}"
            internal = f"http://127.0.0.1:{listening['internal_port']}"
            assert _get(f"{public}/orders/{ORDER}")[0] == 200
            for path in INTERNAL:
                assert _get(f"{public}{path}")[0] == 404, path
                assert _get(f"{internal}{path}")[0] == 200, path
            _, body = _get(f"{internal}/metrics")
            needle = b'order_proxy_requests_total{cache="miss",code="200",route="order"} 1.0'
            assert needle in body
    finally:
        sim.stop()
