"""Scrape a running proxy's /metrics and read it the way Prometheus does.

Shared by the monitoring tests (dashboard and rules checked against a live scrape, a real
Prometheus scraping the proxy) and by tests/test_metrics.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Any

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from proxy.devtools.simulator import Fault, SimulatorState
from tests.support.processes import RedisProcess

# One series: its sample name and its label set.
SeriesKey = tuple[str, frozenset[tuple[str, str]]]
Series = dict[SeriesKey, float]

# Published samples the simulator serves: all CHARGED with settled refunds, so cacheable.
SAMPLE_ORDERS = ("JP1636474794", "JPAYNEW032", "145678234", "XXXX1234", "234823498237423894273498")
# Fails validation (must start with a letter or digit): answered 400 by the proxy itself.
BAD_ORDER_ID = "-not-an-id"
# Not known to the simulator: Juspay's 400 NOT_FOUND answer.
UNKNOWN_ORDER = "NOSUCHORDER1"


async def scrape(client: TestClient[Any, Any]) -> str:
    """GET /metrics; the body in Prometheus' text format."""
    resp = await client.get("/metrics")
    assert resp.status == 200, await resp.text()
    # Prometheus reads any text/plain body with its text-format parser.
    assert resp.content_type == "text/plain", resp.headers["Content-Type"]
    return await resp.text()


def parse(text: str) -> Series:
    """Every sample of a scrape, keyed by name and label set (each key seen once)."""
    series: Series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in series, f"series exported twice: {key}"
            series[key] = sample.value
    return series


def sample_names(text: str) -> set[str]:
    """The sample names of a scrape (with their _total, _bucket, ... suffixes)."""
    return {name for name, _ in parse(text)}


def value(series: Series, name: str, **labels: str) -> float | None:
    """The value of the one series with exactly these labels; None if it is not exported."""
    return series.get((name, frozenset(labels.items())))


def labelled(series: Series, name: str) -> list[Mapping[str, str]]:
    """The label sets of every series with this sample name."""
    return [dict(labels) for sample, labels in series if sample == name]


async def expect(
    request: Awaitable[ClientResponse], status: int, x_cache: str | None = None
) -> None:
    """Send a request; assert its status and, when given, its X-Cache header."""
    resp = await request
    body = await resp.read()
    assert resp.status == status, body
    if x_cache is not None:
        assert resp.headers.get("X-Cache") == x_cache, (resp.headers.get("X-Cache"), body)


async def drive_every_label_set(
    proxy: TestClient[Any, Any], state: SimulatorState, redis: RedisProcess
) -> None:
    """Traffic that makes the proxy create every series the dashboard and rules select.

    `redis` must be the proxy's own Redis: it is stopped at the end, for cache="error" and
    order_proxy_redis_errors_total (a labelled counter that only exists after a failure).
    """
    first, second, third, fourth = SAMPLE_ORDERS[:4]
    # route="order": miss (fetched and stored), then hit
    await expect(proxy.get(f"/orders/{first}"), 200, "MISS")
    await expect(proxy.get(f"/orders/{first}"), 200, "HIT")
    # route="order_status" (the legacy path): miss, then hit
    await expect(proxy.get("/order/status", params={"order_id": second}), 200, "MISS")
    await expect(proxy.get("/order/status", params={"order_id": second}), 200, "HIT")
    # cache="bypass": the caller asked for a fresh read
    await expect(
        proxy.get(f"/orders/{first}", headers={"Cache-Control": "no-cache"}), 200, "BYPASS"
    )
    # code="400" from the proxy's own validation
    await expect(proxy.get(f"/orders/{BAD_ORDER_ID}"), 400)
    # outcome="not_found": Juspay's NOT_FOUND is passed on as it is
    await expect(proxy.get(f"/orders/{UNKNOWN_ORDER}"), 400, "MISS")
    # outcome="server_error", code="502"
    state.add_fault(Fault(kind="status", status=500, order_id=third, remaining=1))
    await expect(proxy.get(f"/orders/{third}"), 502)
    # Redis down: the lookup fails (cache="error", operation="get"), the answer is fetched
    # upstream and cannot be stored (operation="set"); the caller still gets a 200.
    redis.stop()
    await expect(proxy.get(f"/orders/{fourth}"), 200, "MISS")
