"""Every way Juspay can fail maps to the contract's Juspay-shaped errors, never a bare 500."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy.appkeys import METRICS, UPSTREAM
from proxy.config.secrets import Secret
from proxy.config.settings import MerchantSettings, UpstreamSettings
from proxy.devtools.simulator import Fault, SimulatorState
from tests.conftest import MERCHANT, ProxyFactory, make_settings
from tests.support.processes import free_port

ORDER = "JP1636474794"


async def error_of(resp: object) -> dict[str, object]:
    body = await resp.json()  # type: ignore[attr-defined]
    assert body["status"] == "error"
    assert set(body["error_info"]) >= {"code", "category", "user_message", "developer_message"}
    return body  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        (Fault(kind="malformed"), 502, "upstream_bad_body"),
        (Fault(kind="oversized"), 502, "upstream_bad_body"),
        (Fault(kind="wrong_order"), 502, "upstream_bad_body"),
        (Fault(kind="not_json_object"), 502, "upstream_bad_body"),
        (Fault(kind="reset"), 502, "upstream_unavailable"),
        (Fault(kind="partial_body"), 502, "upstream_unavailable"),
        (Fault(kind="status", status=500), 502, "upstream_server_error"),
        (Fault(kind="status", status=503), 502, "upstream_server_error"),
        (Fault(kind="status", status=429), 503, "upstream_rate_limited"),
    ],
    ids=lambda v: v.kind if isinstance(v, Fault) else str(v),
)
async def test_upstream_fault_becomes_a_juspay_shaped_error(
    make_proxy: ProxyFactory,
    simulator_state: SimulatorState,
    fault: Fault,
    status: int,
    code: str,
) -> None:
    simulator_state.add_fault(replace(fault))
    proxy = await make_proxy()
    resp = await proxy.get(f"/orders/{ORDER}")
    assert resp.status == status
    body = await error_of(resp)
    assert body["error_code"] == code
    if status == 503:
        assert int(resp.headers["Retry-After"]) >= 1
    # A failure is never cached: once Juspay recovers, the next read goes through.
    simulator_state.clear_faults()
    ok = await proxy.get(f"/orders/{ORDER}")
    assert ok.status == 200
    assert ok.headers["X-Cache"] == "MISS"


async def test_upstream_timeout_answers_504_within_the_deadline(
    make_proxy: ProxyFactory, simulator: TestServer, simulator_state: SimulatorState
) -> None:
    simulator_state.add_fault(Fault(kind="timeout", delay=30))
    settings = make_settings(simulator.make_url(""))
    settings = replace(settings, upstream=replace(settings.upstream, timeout_seconds=0.3))
    proxy = await make_proxy(settings=settings)
    resp = await proxy.get(f"/orders/{ORDER}")
    assert resp.status == 504
    assert (await error_of(resp))["error_code"] == "upstream_timeout"


async def test_slow_body_within_the_deadline_is_fine(
    make_proxy: ProxyFactory, simulator_state: SimulatorState
) -> None:
    simulator_state.add_fault(Fault(kind="slow_body", delay=0.2))
    proxy = await make_proxy()
    resp = await proxy.get(f"/orders/{ORDER}")
    assert resp.status == 200
    assert (await resp.json())["order_id"] == ORDER


async def test_oversized_body_is_refused_even_without_content_length(
    aiohttp_server: Callable[..., Awaitable[TestServer]], make_proxy: ProxyFactory
) -> None:
    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(b'{"order_id": "' + ORDER.encode() + b'", "pad": "')
        for _ in range(40):
            await resp.write(b"x" * 65536)
        await resp.write(b'"}')
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/orders/{order_id}", chunked)
    server = await aiohttp_server(app)
    proxy = await make_proxy(settings=make_settings(server.make_url("")))
    resp = await proxy.get(f"/orders/{ORDER}")
    assert resp.status == 502
    assert (await error_of(resp))["error_code"] == "upstream_bad_body"


async def test_our_key_refused_becomes_502_never_401(
    make_proxy: ProxyFactory, simulator: TestServer
) -> None:
    settings = make_settings(
        simulator.make_url(""),
        merchants=(MerchantSettings(MERCHANT, Secret("revoked-key", "test")),),
    )
    proxy = await make_proxy(settings=settings)
    resp = await proxy.get(f"/orders/{ORDER}")
    assert resp.status == 502
    body = await error_of(resp)
    assert body["error_code"] == "upstream_auth_failed"
    assert "revoked-key" not in (await resp.text())


async def test_connection_refused_is_502(make_proxy: ProxyFactory) -> None:
    settings = make_settings(
        UpstreamSettings()
        .base_url.with_scheme("http")
        .with_host("127.0.0.1")
        .with_port(free_port())
    )
    proxy = await make_proxy(settings=settings)
    resp = await proxy.get(f"/orders/{ORDER}")
    assert resp.status == 502
    assert (await error_of(resp))["error_code"] == "upstream_unavailable"


async def test_redirects_are_never_followed_so_credentials_never_leave(
    aiohttp_server: Callable[..., Awaitable[TestServer]], make_proxy: ProxyFactory
) -> None:
    evil_calls: list[dict[str, str]] = []

    async def evil(request: web.Request) -> web.Response:
        evil_calls.append(dict(request.headers))
        return web.json_response({"order_id": ORDER, "status": "CHARGED"})

    evil_app = web.Application()
    evil_app.router.add_get("/{tail:.*}", evil)
    evil_server = await aiohttp_server(evil_app)

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(str(evil_server.make_url(f"/orders/{ORDER}")))

    upstream_app = web.Application()
    upstream_app.router.add_get("/orders/{order_id}", redirect)
    upstream = await aiohttp_server(upstream_app)

    proxy = await make_proxy(settings=make_settings(upstream.make_url("")))
    resp = await proxy.get(f"/orders/{ORDER}")
    assert resp.status == 502
    assert evil_calls == []  # the evil host got zero calls


async def test_upstream_url_stays_on_the_configured_origin(
    make_proxy: ProxyFactory, simulator: TestServer
) -> None:
    proxy = await make_proxy()
    client = proxy.app[UPSTREAM]  # checking the URL it builds
    url = client.url_for("JP1636474794", full_gateway_response=True)
    assert url.origin() == simulator.make_url("").origin()
    assert url.raw_path == "/orders/JP1636474794"
    assert url.query_string == "options.add_full_gateway_response=true"


@pytest.mark.parametrize("kind", ["wrong_order", "malformed"])
async def test_a_200_that_is_not_the_order_is_judged_once_a_bad_body_never_retried_or_cached(
    make_proxy: ProxyFactory, simulator_state: SimulatorState, kind: str
) -> None:
    simulator_state.add_fault(Fault(kind=kind))
    proxy = await make_proxy()
    assert (await proxy.get(f"/orders/{ORDER}")).status == 502
    registry = proxy.app[METRICS].registry
    assert simulator_state.calls[ORDER] == 1  # not retried
    assert (
        registry.get_sample_value("order_proxy_upstream_requests_total", {"outcome": "bad_body"})
        == 1.0
    )
    assert registry.get_sample_value("order_proxy_upstream_requests_total", {"outcome": "ok"}) == 0
    # Refused before any caching decision, and not an outage: the circuit stays closed.
    assert registry.get_sample_value("order_proxy_circuit_state") == 0
    decisions = [
        sample.value
        for family in registry.collect()
        if family.name == "order_proxy_policy_decisions"
        for sample in family.samples
        if sample.name.endswith("_total")
    ]
    assert sum(decisions) == 0
