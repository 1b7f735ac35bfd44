"""The order service against a real HTTP upstream, over memory and over a real Redis."""

from __future__ import annotations

import asyncio

import pytest

from proxy.config.settings import DEFAULT_API_VERSION
from proxy.core.errors import UpstreamServerError
from proxy.core.orders import CacheResult, OrderQuery, OrderService, fresh
from tests.core.conftest import MERCHANT
from tests.support.upstream_app import Upstream, not_found_body


def query(order_id: str) -> OrderQuery:
    return OrderQuery(MERCHANT, order_id, DEFAULT_API_VERSION)


async def test_a_miss_then_a_hit_calls_upstream_once(
    service: OrderService, upstream: Upstream
) -> None:
    body = upstream.order("ORD-HIT", "CHARGED")
    first = await service.get(query("ORD-HIT"))
    second = await service.get(query("ORD-HIT"))
    assert (first.cache, second.cache) == (CacheResult.MISS, CacheResult.HIT)
    assert first.entry.body == second.entry.body == body
    assert first.upstream_status == 200
    assert upstream.calls["ORD-HIT"] == 1


async def test_concurrent_misses_for_one_order_share_one_upstream_call(
    service: OrderService, upstream: Upstream
) -> None:
    body = upstream.order("ORD-BURST", "CHARGED")
    upstream.hold()
    reads = [asyncio.create_task(service.get(query("ORD-BURST"))) for _ in range(8)]
    assert await upstream.arrived() == "ORD-BURST"
    upstream.release()
    answers = await asyncio.wait_for(asyncio.gather(*reads), 5)
    assert upstream.calls["ORD-BURST"] == 1
    assert {answer.entry.body for answer in answers} == {body}
    assert {answer.cache for answer in answers} == {CacheResult.MISS}


@pytest.mark.parametrize(
    ("status", "cached"),
    [("CHARGED", True), ("AUTO_REFUNDED", True), ("PENDING_VBV", False), ("NEW", False)],
)
async def test_only_a_final_status_is_cached(
    service: OrderService, upstream: Upstream, status: str, cached: bool
) -> None:
    upstream.order("ORD-STATUS", status)
    first = await service.get(query("ORD-STATUS"))
    second = await service.get(query("ORD-STATUS"))
    assert first.cache is CacheResult.MISS
    assert first.entry.order_status == status
    assert second.cache is (CacheResult.HIT if cached else CacheResult.MISS)
    assert upstream.calls["ORD-STATUS"] == (1 if cached else 2)


async def test_an_invalidation_during_a_read_keeps_its_answer_out_of_the_cache(
    service: OrderService, upstream: Upstream
) -> None:
    upstream.order("ORD-RACE", "CHARGED")
    upstream.hold()
    racing = asyncio.create_task(service.get(query("ORD-RACE")))
    assert await upstream.arrived() == "ORD-RACE"  # Juspay has read CHARGED ...
    await service.invalidate(MERCHANT, "ORD-RACE", "webhook")  # ... a refund webhook lands ...
    refunded = upstream.order("ORD-RACE", "AUTO_REFUNDED")
    upstream.release()  # ... and the older answer comes back after it.
    old = await asyncio.wait_for(racing, 5)
    assert old.entry.order_status == "CHARGED"  # its own caller is answered ...
    after = await service.get(query("ORD-RACE"))
    assert after.cache is CacheResult.MISS  # ... but nobody else is
    assert after.entry.body == refunded
    assert upstream.calls["ORD-RACE"] == 2


async def test_an_invalidation_drops_a_cached_order(
    service: OrderService, upstream: Upstream
) -> None:
    upstream.order("ORD-DROP", "CHARGED")
    await service.get(query("ORD-DROP"))
    assert (await service.get(query("ORD-DROP"))).cache is CacheResult.HIT
    assert await service.invalidate(MERCHANT, "ORD-DROP", "purge") >= 1
    assert (await service.get(query("ORD-DROP"))).cache is CacheResult.MISS
    assert upstream.calls["ORD-DROP"] == 2


async def test_a_no_cache_read_goes_upstream_even_when_cached_and_refreshes_the_entry(
    service: OrderService, upstream: Upstream
) -> None:
    upstream.order("ORD-FRESH", "CHARGED")
    await service.get(query("ORD-FRESH"))
    refunded = upstream.order("ORD-FRESH", "AUTO_REFUNDED")
    bypass = await service.get(fresh(query("ORD-FRESH")))
    assert bypass.cache is CacheResult.BYPASS
    assert bypass.entry.body == refunded
    assert upstream.calls["ORD-FRESH"] == 2
    after = await service.get(query("ORD-FRESH"))
    assert after.cache is CacheResult.HIT
    assert after.entry.body == refunded


@pytest.mark.parametrize("status", [400, 404])
async def test_juspay_not_found_is_passed_on_and_not_cached(
    service: OrderService, upstream: Upstream, status: int
) -> None:
    upstream.respond("ORD-NONE", status, not_found_body("ORD-NONE"))
    answer = await service.get(query("ORD-NONE"))
    assert answer.cache is CacheResult.MISS
    assert (answer.entry.status_code, answer.entry.order_status) == (status, "NOT_FOUND")
    assert answer.entry.body == not_found_body("ORD-NONE")
    # NOT_FOUND is not cached by default: an order created a moment later must be seen.
    assert (await service.get(query("ORD-NONE"))).cache is CacheResult.MISS
    assert upstream.calls["ORD-NONE"] == 2


async def test_an_upstream_5xx_raises_upstream_server_error_and_caches_nothing(
    service: OrderService, upstream: Upstream
) -> None:
    upstream.respond("ORD-5XX", 500, b'{"status": "error"}')
    with pytest.raises(UpstreamServerError) as failed:
        await service.get(query("ORD-5XX"))
    assert (failed.value.status, failed.value.upstream_status) == (502, 500)
    assert upstream.calls["ORD-5XX"] == 1  # a 500 is not one of the statuses retried
    body = upstream.order("ORD-5XX", "CHARGED")
    answer = await service.get(query("ORD-5XX"))
    assert (answer.cache, answer.entry.body) == (CacheResult.MISS, body)
    assert upstream.calls["ORD-5XX"] == 2


async def test_every_caller_sharing_a_failed_read_gets_its_error(
    service: OrderService, upstream: Upstream
) -> None:
    upstream.respond("ORD-FAIL", 500, b'{"status": "error"}')
    upstream.hold()
    reads = [asyncio.create_task(service.get(query("ORD-FAIL"))) for _ in range(4)]
    assert await upstream.arrived() == "ORD-FAIL"
    upstream.release()
    outcomes = await asyncio.wait_for(asyncio.gather(*reads, return_exceptions=True), 5)
    assert all(isinstance(outcome, UpstreamServerError) for outcome in outcomes)
    assert upstream.calls["ORD-FAIL"] == 1
