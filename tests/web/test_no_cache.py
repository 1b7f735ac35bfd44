"""`no-cache` from the caller, however it is written: every Cache-Control line and member, any
case, with arguments and spaces, and HTTP/1.0's `Pragma: no-cache`.

The parser is tested on its own; then real requests (written byte for byte, so a header
really travels as two lines) go through a proxy to the simulator, with an order changed
upstream since it was cached: a fresh read answers BYPASS with the new body.
"""

from __future__ import annotations

import json

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from multidict import CIMultiDict, CIMultiDictProxy

from proxy.devtools.simulator import SimulatorState
from proxy.web.cachecontrol import wants_fresh
from tests.conftest import MERCHANT, ProxyFactory
from tests.support.rawhttp import RawResponse, raw_get

Client = TestClient[web.Request, web.Application]
REFUND = {"id": "rf1", "unique_request_id": "rf1", "status": "SUCCESS", "amount": 1}


def _headers(*pairs: tuple[str, str]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


@pytest.mark.parametrize(
    "pairs",
    [
        [("Cache-Control", "no-cache")],
        [("Cache-Control", "No-Cache")],
        [("cache-control", "NO-CACHE")],
        [("Cache-Control", "max-age=0, no-cache")],
        [("Cache-Control", "max-age=0,no-cache ,no-store")],
        [("Cache-Control", "  no-cache  ")],
        [("Cache-Control", "max-age=0"), ("Cache-Control", "no-cache")],
        [("Cache-Control", "no-transform"), ("Cache-Control", "max-age=0, No-Cache")],
        [("Cache-Control", 'no-cache="x"')],  # an argument (a response form): still no-cache
        [("Cache-Control", 'private="a, b", no-cache')],  # after a quoted comma
        [("Pragma", "no-cache")],
        [("Pragma", "No-Cache")],
        # Pragma counts even beside a Cache-Control without no-cache (the safe reading).
        [("Cache-Control", "max-age=60"), ("Pragma", "no-cache")],
    ],
)
def test_no_cache_is_found_in_any_line_member_or_case(pairs: list[tuple[str, str]]) -> None:
    assert wants_fresh(_headers(*pairs))


@pytest.mark.parametrize(
    "pairs",
    [
        [],
        [("Cache-Control", "max-age=0")],
        [("Cache-Control", "no-store"), ("Cache-Control", "max-stale=5")],
        [("Cache-Control", "no-cache-please")],  # another directive that merely starts alike
        [("Cache-Control", 'private="no-cache"')],  # inside a quoted argument
        [("Cache-Control", 'private="a, no-cache, b"')],
        [("Pragma", "x-no-cache")],
        [("X-Cache-Control", "no-cache")],
    ],
)
def test_anything_else_is_not_no_cache(pairs: list[tuple[str, str]]) -> None:
    assert not wants_fresh(_headers(*pairs))


async def _cached_then_refunded(proxy: Client, state: SimulatorState, order_id: str) -> None:
    """The order is cached (MISS, then HIT), then refunded at Juspay."""
    state.put_order(MERCHANT, order_id, "CHARGED")
    assert (await proxy.get(f"/orders/{order_id}")).headers["X-Cache"] == "MISS"
    assert (await proxy.get(f"/orders/{order_id}")).headers["X-Cache"] == "HIT"
    state.put_order(MERCHANT, order_id, "CHARGED", [REFUND])


async def _raw(
    proxy: Client, order_id: str, headers: list[tuple[str, str]], version: str = "1.1"
) -> RawResponse:
    assert proxy.server.host is not None
    assert proxy.server.port is not None
    return await raw_get(
        proxy.server.host, proxy.server.port, f"/orders/{order_id}", headers, version=version
    )


def _refunds(resp: RawResponse) -> list[str]:
    return [refund["status"] for refund in resp.json()["refunds"]]


@pytest.mark.parametrize("memory", [False, True], ids=["redis", "memory"])
@pytest.mark.parametrize(
    ("headers", "version"),
    [
        ([("Cache-Control", "max-age=0"), ("Cache-Control", "no-cache")], "1.1"),
        ([("Cache-Control", "NO-CACHE")], "1.1"),
        ([("Cache-Control", "max-age=0 , No-Cache")], "1.1"),
        ([("Pragma", "no-cache")], "1.0"),
    ],
    ids=["two-lines", "upper-case", "list-member", "pragma-http10"],
)
async def test_a_no_cache_request_reads_juspay_and_gets_the_new_body(
    make_proxy: ProxyFactory,
    simulator_state: SimulatorState,
    headers: list[tuple[str, str]],
    version: str,
    memory: bool,
) -> None:
    proxy = await make_proxy(memory=memory)
    await _cached_then_refunded(proxy, simulator_state, "NOCACHE_A")
    calls = simulator_state.calls["NOCACHE_A"]
    resp = await _raw(proxy, "NOCACHE_A", headers, version)
    assert resp.status == 200
    assert resp.headers["x-cache"] == "BYPASS"
    assert _refunds(resp) == ["SUCCESS"]
    assert simulator_state.calls["NOCACHE_A"] == calls + 1


async def test_without_no_cache_the_cached_body_is_still_served(
    make_proxy: ProxyFactory, simulator_state: SimulatorState
) -> None:
    # The counterpart: the same request with only max-age=0 is a HIT with the old body.
    proxy = await make_proxy()
    await _cached_then_refunded(proxy, simulator_state, "NOCACHE_B")
    resp = await _raw(proxy, "NOCACHE_B", [("Cache-Control", "max-age=0")])
    assert resp.headers["x-cache"] == "HIT"
    assert _refunds(resp) == []


async def test_a_batch_with_no_cache_on_a_second_line_reads_every_order_afresh(
    make_proxy: ProxyFactory, simulator_state: SimulatorState
) -> None:
    proxy = await make_proxy()
    await _cached_then_refunded(proxy, simulator_state, "NOCACHE_C")
    headers = CIMultiDict([("Cache-Control", "max-age=0"), ("Cache-Control", "no-cache")])
    resp = await proxy.post(
        "/orders:batchGet", data=json.dumps({"order_ids": ["NOCACHE_C"]}), headers=headers
    )
    assert resp.status == 200
    (item,) = (await resp.json())["orders"]
    assert item["cache"] == "BYPASS"
    assert [refund["status"] for refund in item["body"]["refunds"]] == ["SUCCESS"]
