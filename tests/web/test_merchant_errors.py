"""A merchant the proxy does not serve: an accurate 403 for callers who may read every merchant,
and nothing about which merchants exist for callers limited to some."""

from __future__ import annotations

import base64

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from proxy.config.settings import ClientSettings
from proxy.devtools.simulator import SimulatorState
from proxy.web.auth import hash_key
from tests.conftest import MERCHANT, OTHER_MERCHANT, ProxyFactory, make_settings
from tests.support.processes import RedisProcess

ORDER = "JP1636474794"
READER_KEY = "opk_reader_of_one_merchant_0123456789abcdef"
EVERYONE_KEY = "opk_reader_of_every_merchant_fedcba987654"
NOT_SERVED = "m_not_served_here"
Client = TestClient[web.Request, web.Application]


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


async def _proxy(make_proxy: ProxyFactory, simulator: TestServer, redis: RedisProcess) -> Client:
    settings = make_settings(
        simulator.make_url(""),
        redis_url=redis.url,
        clients=(
            ClientSettings("reader", hash_key(READER_KEY), (MERCHANT,)),
            ClientSettings("everyone", hash_key(EVERYONE_KEY), ("*",)),
        ),
    )
    return await make_proxy(settings=settings)


async def test_a_caller_of_every_merchant_is_told_the_merchant_is_not_served(
    make_proxy: ProxyFactory,
    simulator: TestServer,
    redis_server: RedisProcess,
    simulator_state: SimulatorState,
) -> None:
    proxy = await _proxy(make_proxy, simulator, redis_server)
    headers = {**basic(EVERYONE_KEY), "x-merchantid": NOT_SERVED}
    resp = await proxy.get(f"/orders/{ORDER}", headers=headers)
    assert resp.status == 403
    body = await resp.json()
    assert body["error_code"] == "merchant_not_allowed"
    assert body["error_message"] == "x-merchantid names a merchant this proxy does not serve"
    assert "may not read" not in body["error_info"]["developer_message"]
    assert simulator_state.total_calls == 0


async def test_an_anonymous_caller_is_told_the_merchant_is_not_served(
    make_proxy: ProxyFactory, simulator_state: SimulatorState
) -> None:
    proxy = await make_proxy()
    resp = await proxy.get(f"/orders/{ORDER}", headers={"x-merchantid": NOT_SERVED})
    assert resp.status == 403
    assert (await resp.json())["error_message"] == (
        "x-merchantid names a merchant this proxy does not serve"
    )


async def test_a_limited_caller_cannot_tell_an_unknown_merchant_from_a_forbidden_one(
    make_proxy: ProxyFactory, simulator: TestServer, redis_server: RedisProcess
) -> None:
    proxy = await _proxy(make_proxy, simulator, redis_server)
    answers = []
    for merchant in (NOT_SERVED, OTHER_MERCHANT):
        headers = {**basic(READER_KEY), "x-merchantid": merchant}
        resp = await proxy.get(f"/orders/{ORDER}", headers=headers)
        answers.append((resp.status, await resp.json()))
    assert answers[0] == answers[1]
    assert answers[0][0] == 403
    assert answers[0][1]["error_message"] == "this caller may not read orders of that merchant"
