"""Egress to Juspay: a real CONNECT proxy (HTTPS_PROXY, NO_PROXY) and a TLS upstream signed by
a private CA (JUSPAY_CA_FILE), both started here; Redis never goes through the proxy."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from yarl import URL

from proxy.config import SettingsError, load_settings
from proxy.config.secrets import Secret
from proxy.devtools.simulator import SimulatorState, create_simulator_app
from proxy.upstream.egress import bypasses
from tests.conftest import ProxyFactory, make_settings
from tests.support.connect_proxy import ConnectProxy
from tests.support.logcapture import Captured
from tests.support.processes import RedisProcess
from tests.support.tlsca import PrivateCA, make_private_ca

ORDER = "JP1636474794"


@pytest.fixture
def private_ca(tmp_path: Path) -> PrivateCA:
    return make_private_ca(tmp_path)


@pytest.fixture
async def tls_upstream(
    simulator_state: SimulatorState,
    private_ca: PrivateCA,
    aiohttp_server: Callable[..., Awaitable[TestServer]],
) -> TestServer:
    """The simulator over TLS, its certificate signed by the private CA."""
    return await aiohttp_server(
        create_simulator_app(simulator_state), ssl=private_ca.server_context()
    )


@pytest.fixture
async def forward_proxy() -> AsyncIterator[ConnectProxy]:
    proxy = await ConnectProxy().start()
    yield proxy
    await proxy.close()


@pytest.fixture
async def auth_proxy() -> AsyncIterator[ConnectProxy]:
    proxy = await ConnectProxy(credentials="egress:pr0xy-s3cret").start()
    yield proxy
    await proxy.close()


def _https(server: TestServer) -> URL:
    return URL(f"https://localhost:{server.port}")


async def test_a_private_ca_bundle_verifies_the_tls_upstream(
    make_proxy: ProxyFactory, tls_upstream: TestServer, private_ca: PrivateCA
) -> None:
    settings = make_settings(_https(tls_upstream))
    trusted = replace(settings, upstream=replace(settings.upstream, ca_file=private_ca.ca_file))
    resp = await (await make_proxy(settings=trusted)).get(f"/orders/{ORDER}")
    assert resp.status == 200
    assert (await resp.json())["order_id"] == ORDER


async def test_without_the_bundle_the_private_ca_is_not_trusted(
    make_proxy: ProxyFactory, tls_upstream: TestServer, simulator_state: SimulatorState
) -> None:
    settings = make_settings(_https(tls_upstream))
    settings = replace(settings, upstream=replace(settings.upstream, max_attempts=1))
    resp = await (await make_proxy(settings=settings)).get(f"/orders/{ORDER}")
    assert resp.status == 502
    assert simulator_state.calls[ORDER] == 0  # the handshake failed: no request was sent


async def test_https_proxy_tunnels_juspay_calls_and_redis_goes_direct(
    make_proxy: ProxyFactory,
    tls_upstream: TestServer,
    private_ca: PrivateCA,
    auth_proxy: ConnectProxy,
    redis_server: RedisProcess,
) -> None:
    settings = make_settings(_https(tls_upstream), redis_url=redis_server.url)
    upstream = replace(
        settings.upstream,
        ca_file=private_ca.ca_file,
        https_proxy=Secret(auth_proxy.url, "test"),
    )
    proxy = await make_proxy(settings=replace(settings, upstream=upstream))
    first = await proxy.get(f"/orders/{ORDER}")
    second = await proxy.get(f"/orders/{ORDER}")
    assert (first.status, first.headers["X-Cache"]) == (200, "MISS")
    assert second.headers["X-Cache"] == "HIT"  # Redis answered, and not through the proxy
    # One tunnel, to Juspay's host only, with the proxy's credentials.
    assert auth_proxy.targets == [f"localhost:{tls_upstream.port}"]
    assert auth_proxy.refused == 0


async def test_no_proxy_naming_juspays_host_goes_direct(
    make_proxy: ProxyFactory,
    tls_upstream: TestServer,
    private_ca: PrivateCA,
    forward_proxy: ConnectProxy,
) -> None:
    settings = make_settings(_https(tls_upstream))
    upstream = replace(
        settings.upstream,
        ca_file=private_ca.ca_file,
        https_proxy=Secret(forward_proxy.url, "test"),
        no_proxy="internal.example, .localhost",
    )
    proxy = await make_proxy(settings=replace(settings, upstream=upstream))
    assert (await proxy.get(f"/orders/{ORDER}")).status == 200
    assert forward_proxy.targets == []


def test_egress_settings_come_from_the_standard_variables(private_ca: PrivateCA) -> None:
    env = {
        "JUSPAY_MERCHANT_ID": "m1",
        "JUSPAY_API_KEY": "sk_egress_key_1",
        "https_proxy": "http://egress:pr0xy-s3cret@proxy.internal:3128",
        "NO_PROXY": "localhost,10.0.0.0/8",
        "JUSPAY_CA_FILE": str(private_ca.ca_file),
    }
    settings = load_settings(env)
    assert settings.upstream.https_proxy is not None
    assert settings.upstream.no_proxy == "localhost,10.0.0.0/8"
    assert settings.upstream.ca_file == private_ca.ca_file
    shown = json.dumps(settings.describe())
    assert "pr0xy-s3cret" not in shown + repr(settings)
    assert "proxy.internal:3128" in shown


def test_an_unusable_ca_file_or_proxy_url_is_one_error_naming_it(tmp_path: Path) -> None:
    base = {"JUSPAY_MERCHANT_ID": "m1", "JUSPAY_API_KEY": "sk_egress_key_1"}
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("not a certificate")
    for path in (not_pem, tmp_path / "missing.pem"):
        with pytest.raises(SettingsError) as caught:
            load_settings({**base, "JUSPAY_CA_FILE": str(path)})
        assert str(caught.value).startswith("JUSPAY_CA_FILE")
    with pytest.raises(SettingsError) as bad:
        load_settings({**base, "HTTPS_PROXY": "socks5://user:hunter2@proxy:1080"})
    assert str(bad.value).startswith("HTTPS_PROXY")
    assert "hunter2" not in str(bad.value)


@pytest.mark.parametrize(
    ("host", "port", "no_proxy", "expected"),
    [
        ("api.juspay.in", 443, "", False),
        ("api.juspay.in", 443, "*", True),
        ("api.juspay.in", 443, "juspay.in", True),
        ("api.juspay.in", 443, ".juspay.in", True),
        ("api.juspay.in", 443, "notjuspay.in", False),
        ("api.juspay.in", 443, "api.juspay.in:8443", False),
        ("api.juspay.in", 443, " other.com , API.JUSPAY.IN:443 ", True),
        ("10.1.2.3", 443, "10.0.0.0/8", True),
        ("10.1.2.3", 443, "192.168.0.0/16", False),
        ("::1", 443, "[::1]:443", True),
        ("::1", 443, "::1", True),
    ],
)
def test_no_proxy_is_read_as_curl_reads_it(
    host: str, port: int, no_proxy: str, expected: bool
) -> None:
    assert bypasses(host, port, no_proxy) is expected


async def test_a_proxy_that_refuses_our_credentials_is_a_502_that_never_shows_them(
    make_proxy: ProxyFactory,
    tls_upstream: TestServer,
    private_ca: PrivateCA,
    auth_proxy: ConnectProxy,
    logs: Captured,
) -> None:
    settings = make_settings(_https(tls_upstream))
    wrong = auth_proxy.url.replace("pr0xy-s3cret", "not-the-password")
    upstream = replace(
        settings.upstream,
        ca_file=private_ca.ca_file,
        https_proxy=Secret(wrong, "test"),
        max_attempts=1,
    )
    proxy = await make_proxy(settings=replace(settings, upstream=upstream))
    resp = await proxy.get(f"/orders/{ORDER}")
    assert resp.status == 502
    assert (auth_proxy.refused, auth_proxy.targets) == (1, [])  # no tunnel: Juspay saw nothing
    assert "not-the-password" not in logs.text + await resp.text()
