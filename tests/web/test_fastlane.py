"""The fast lane answers exactly as the Application does: the same requests sent through both
(one proxy, one cache, two listeners) get the same status, headers and bytes."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy.app import create_app
from proxy.appkeys import METRICS, ORDER_SERVICE, SETTINGS
from proxy.config.settings import ClientSettings, RateLimit
from proxy.web.auth import hash_key
from proxy.web.bounds import BoundedRunner, BoundedServer
from proxy.web.fastlane import FAST_LANE
from tests.conftest import MERCHANT, make_settings

ORDER = "JP1636474794"
OTHER_ORDER = "JP1636474795"
KEY = "opk_parity_client_0123456789abcdef"
LIMITED_KEY = "opk_parity_limited_fedcba9876543210"
# Frozen service clock: Age and Cache-Status ttl are the same whenever a request is sent.
NOW = 1_800_000_000.0
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass
class Paths:
    """One proxy app listening twice: through the fast lane, and through the Application."""

    app: web.Application
    fast: str
    plain: str
    session: aiohttp.ClientSession

    async def one(self, base: str, method: str, path: str, headers: dict[str, str]) -> Answer:
        async with self.session.request(
            method, base + path, headers=headers, allow_redirects=False
        ) as resp:
            body = await resp.read()
            raw = [(k.decode(), v.decode()) for k, v in resp.raw_headers]
        # Values that differ by design: the date, and the id each request is given.
        names = {"date", "x-request-id"}
        return Answer(resp.status, [(k, "*" if k.lower() in names else v) for k, v in raw], body)

    async def both(
        self, method: str, path: str, headers: dict[str, str] | None = None
    ) -> tuple[Answer, Answer]:
        headers = headers or {}
        return (
            await self.one(self.fast, method, path, headers),
            await self.one(self.plain, method, path, headers),
        )


@pytest.fixture
async def paths(simulator: TestServer) -> AsyncIterator[Paths]:
    settings = make_settings(
        simulator.make_url(""),
        clients=(
            ClientSettings("svc", hash_key(KEY), (MERCHANT,), operator=True),
            # One request per 1000 s, burst 1: the first conforms, every later one is a 429.
            ClientSettings(
                "limited", hash_key(LIMITED_KEY), ("*",), rate_limit=RateLimit(0.001, 1)
            ),
        ),
    )
    app = create_app(settings, clock=lambda: NOW)
    runner = BoundedRunner(app, settings.server, app[METRICS], access_log=None)
    await runner.setup()
    fast_site = web.TCPSite(runner, "127.0.0.1", 0)
    await fast_site.start()
    assert runner.server is not None
    # The same app behind the same bounds, with the Application as its request handler.
    plain = BoundedServer(runner.server, settings.server, app[METRICS], handler=app._handle)
    loop = asyncio.get_running_loop()
    plain_listener = await loop.create_server(plain, "127.0.0.1", 0)
    fast_port = fast_site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    plain_port = plain_listener.sockets[0].getsockname()[1]
    async with aiohttp.ClientSession() as session:
        yield Paths(app, f"http://127.0.0.1:{fast_port}", f"http://127.0.0.1:{plain_port}", session)
    plain_listener.close()
    await plain.shutdown(1.0)
    await runner.cleanup()


def assert_same(pair: tuple[Answer, Answer]) -> Answer:
    fast, plain = pair
    assert fast == plain
    return fast


def header(answer: Answer, name: str) -> str | None:
    return next((v for k, v in answer.headers if k.lower() == name.lower()), None)


async def test_hits_and_304s_are_answered_by_the_fast_lane_as_by_the_application(
    paths: Paths,
) -> None:
    lane = paths.app[FAST_LANE]
    auth = basic(KEY)
    # The first read fills the cache; every later one on either path is a hit.
    await paths.one(paths.plain, "GET", f"/orders/{ORDER}", auth)
    served = lane.served
    hit = assert_same(await paths.both("GET", f"/orders/{ORDER}", auth))
    assert hit.status == 200
    assert header(hit, "X-Cache") == "HIT"
    assert header(hit, "Server") is None
    assert lane.served == served + 1  # the fast listener's request took the fast lane
    etag = header(hit, "ETag")
    assert etag is not None
    not_modified = assert_same(
        await paths.both("GET", f"/orders/{ORDER}", {**auth, "If-None-Match": etag})
    )
    assert not_modified.status == 304
    assert not_modified.body == b""
    status = assert_same(await paths.both("GET", f"/order/status?order_id={ORDER}", auth))
    assert status.status == 200
    assert status.body == hit.body
    head = assert_same(await paths.both("HEAD", f"/orders/{ORDER}", auth))
    assert head.status == 200
    assert head.body == b""
    traced = assert_same(
        await paths.both("GET", f"/orders/{ORDER}", {**auth, "traceparent": TRACEPARENT})
    )
    assert traced.body == hit.body
    assert lane.served == served + 5


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("GET", f"/orders/{ORDER}", {}, 401),
        ("GET", f"/orders/{ORDER}", basic("opk_not_a_client_key_00000000"), 401),
        ("GET", "/orders/bad$id", basic(KEY), 400),
        ("GET", f"/orders/{ORDER}?order_id=OTHER", basic(KEY), 400),
        ("GET", f"/orders/{ORDER}?order_id={ORDER}", basic(KEY), 200),
        ("GET", f"/order/status?order_id={ORDER}&order_id={ORDER}", basic(KEY), 400),
        ("GET", "/order/status", basic(KEY), 400),
        ("GET", f"/orders/{ORDER}?options.add_full_gateway_response=true", basic(KEY), 200),
        ("GET", f"/orders/{ORDER}?options.add_full_gateway_response=maybe", basic(KEY), 400),
        ("GET", f"/orders/{ORDER}?wait=0.1", basic(KEY), 200),
        ("GET", f"/orders/{ORDER}", {**basic(KEY), "x-merchantid": "merchant_b"}, 403),
        ("GET", f"/orders/{ORDER}", {**basic(KEY), "version": "not a version"}, 400),
        ("GET", f"/orders/{ORDER}", {**basic(KEY), "Cache-Control": "no-cache"}, 200),
        ("GET", f"/orders/{ORDER}", {**basic(KEY), "X-Request-Id": "caller-id-1"}, 200),
        ("PUT", f"/orders/{ORDER}", basic(KEY), 405),
        ("GET", "/no/such/route", basic(KEY), 404),
        ("GET", "/openapi.json", {}, 200),
        ("GET", "/healthz", {}, 200),
    ],
)
async def test_every_other_answer_is_the_same_both_ways(
    paths: Paths, method: str, path: str, headers: dict[str, str], status: int
) -> None:
    # Once before: a cacheable variant is then a hit both ways.
    await paths.one(paths.plain, method, path, headers)
    answer = assert_same(await paths.both(method, path, headers))
    assert answer.status == status
    assert header(answer, "Server") is None


async def test_a_caller_request_id_is_echoed_both_ways(paths: Paths) -> None:
    headers = {**basic(KEY), "X-Request-Id": "caller-id-1"}
    for base in (paths.fast, paths.plain):
        async with paths.session.get(base + f"/orders/{ORDER}", headers=headers) as resp:
            assert resp.headers["X-Request-Id"] == "caller-id-1"


async def test_a_miss_is_answered_the_same_both_ways(paths: Paths) -> None:
    service = paths.app[ORDER_SERVICE]
    auth = basic(KEY)
    fast = await paths.one(paths.fast, "GET", f"/orders/{OTHER_ORDER}", auth)
    await service.invalidate(MERCHANT, OTHER_ORDER, "purge")
    plain = await paths.one(paths.plain, "GET", f"/orders/{OTHER_ORDER}", auth)
    assert fast == plain
    assert header(fast, "X-Cache") == "MISS"


async def test_a_rate_limited_caller_is_refused_the_same_both_ways(paths: Paths) -> None:
    auth = basic(LIMITED_KEY)
    first = await paths.one(paths.fast, "GET", f"/orders/{ORDER}", auth)
    assert first.status == 200
    fast, plain = await paths.both("GET", f"/orders/{ORDER}", auth)
    # The message gives the wait to the millisecond, which moves on between the two requests.
    wait = re.compile(rb"retry after [0-9.]+ s")
    refused = assert_same(
        (
            replace(fast, body=wait.sub(b"", fast.body)),
            replace(plain, body=wait.sub(b"", plain.body)),
        )
    )
    assert refused.status == 429
    assert header(refused, "Retry-After") is not None


async def test_request_metrics_count_a_fast_lane_hit_as_an_application_one(
    paths: Paths,
) -> None:
    requests = paths.app[METRICS].requests
    auth = basic(KEY)
    await paths.one(paths.plain, "GET", f"/orders/{ORDER}", auth)
    child = requests.labels(route="order", code="200", cache="hit")
    before = child._value.get()
    await paths.one(paths.fast, "GET", f"/orders/{ORDER}", auth)
    after_fast = child._value.get()
    await paths.one(paths.plain, "GET", f"/orders/{ORDER}", auth)
    assert after_fast - before == 1
    assert child._value.get() - after_fast == 1


async def test_with_the_fast_lane_off_the_application_serves_every_request(
    simulator: TestServer,
) -> None:
    settings = make_settings(simulator.make_url(""))
    settings = replace(settings, server=replace(settings.server, fast_lane=False))
    app = create_app(settings)
    runner = BoundedRunner(app, settings.server, app[METRICS], access_log=None)
    await runner.setup()
    try:
        assert runner.server is not None
        assert runner.server.request_handler == app._handle
        assert app[SETTINGS].server.fast_lane is False
    finally:
        await runner.cleanup()
