"""What /metrics exports after real traffic: label sets stay bounded, counts match what was sent,
the buckets span 100 µs to 30 s, and promtool accepts the exposition.

Every value is read from a GET /metrics of a proxy in front of the simulator (and a real Redis),
parsed the way Prometheus parses it, never from the registry object.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import replace

import pytest
from aiohttp.test_utils import TestServer
from prometheus_client.utils import floatToGoString

from proxy import __version__
from proxy.core.policy import StatusClass
from proxy.devtools.simulator import Fault, SimulatorState
from proxy.observe.metrics import (
    BATCH_BUCKETS,
    CACHE_RESULTS,
    CONNECTION_REFUSALS,
    LATENCY_BUCKETS,
    REDIS_OPERATIONS,
    ROUTES,
    UPSTREAM_OUTCOMES,
)
from proxy.web import routes
from proxy.web.webhook_jwt import REASONS as JWT_REASONS
from proxy.web.webhooks import FAMILIES
from tests.conftest import MERCHANT, ProxyFactory, make_settings
from tests.monitoring.exposition import (
    BAD_ORDER_ID,
    SAMPLE_ORDERS,
    UNKNOWN_ORDER,
    Series,
    drive_every_label_set,
    expect,
    labelled,
    parse,
    scrape,
    value,
)
from tests.support.processes import RedisProcess

FORBIDDEN_LABELS = frozenset({"order_id", "merchant_id", "request_id"})
# Every label the proxy may put on a series, and the values it may take.
ALLOWED_LABEL_VALUES: Mapping[str, Callable[[str], bool]] = {
    "route": frozenset(ROUTES).__contains__,
    "code": re.compile(r"[1-5][0-9][0-9]").fullmatch,
    "cache": frozenset(CACHE_RESULTS).__contains__,
    "outcome": frozenset(UPSTREAM_OUTCOMES).__contains__,
    "reason": frozenset(
        {
            "circuit_open",
            "shed",
            "bad_credentials",
            "not_operator",
            "merchant_not_allowed",
            "webhook_credentials",
            "webhook_wrong_merchant",
            "webhook_jwt_required",
        }
        | {f"jwt_{reason}" for reason in JWT_REASONS}  # JWT webhooks refused, by why
        | {"undecodable", "foreign_key", "checksum", "epoch"}  # entries read back and not served
        | set(CONNECTION_REFUSALS)  # bounds that hold without a key
    ).__contains__,
    "layer": frozenset({"memory", "redis"}).__contains__,
    # cache lookups; webhook outcomes; wait outcomes; verification samples
    "result": frozenset(
        {"hit", "miss", "error"}
        | {"invalidated", "ignored", "duplicate", "unknown_merchant", "rejected", "unavailable"}
        | {"final", "timeout", "shed", "preempted"}
        | {"match", "diverged", "skipped"}
    ).__contains__,
    "event": re.compile(r"[a-z_]{1,40}").fullmatch,  # webhook event names, lower-cased, or other
    "family": frozenset(FAMILIES).__contains__,  # webhook events by name class
    "cause": frozenset({"poll", "webhook", "peer"}).__contains__,
    "source": frozenset({"purge", "webhook", "refresh"}).__contains__,
    "status_class": frozenset(s.value for s in StatusClass).__contains__,
    "decision": frozenset({"store", "skip"}).__contains__,
    "operation": frozenset(REDIS_OPERATIONS).__contains__,
    "version": frozenset({__version__}).__contains__,
    "le": frozenset(
        [*(floatToGoString(b) for b in (*LATENCY_BUCKETS, *BATCH_BUCKETS)), "+Inf"]
    ).__contains__,
}
DISTINCT_ORDERS = 200
FIRST_BATCH = 10


def series_of(series: Series, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (sample, labels), v in series.items() if sample == name}


def by_labels(**labels: str) -> frozenset[tuple[str, str]]:
    return frozenset(labels.items())


# ------------------------------------------------------------------ cardinality


def test_the_route_label_takes_the_names_of_the_counted_routes_of_the_table() -> None:
    counted = [row.name for row in (*routes.API, *routes.INTERNAL) if row.counted]
    assert sorted(counted) == sorted(ROUTES)


async def test_no_per_order_label_and_series_do_not_grow_with_distinct_order_ids(
    make_proxy: ProxyFactory, simulator_state: SimulatorState
) -> None:
    order_ids = [f"CARD{i:04d}" for i in range(DISTINCT_ORDERS)]
    unknown_ids = [f"GONE{i:04d}" for i in range(DISTINCT_ORDERS)]
    for order_id in order_ids:
        simulator_state.put_order(MERCHANT, order_id, "CHARGED")
    proxy = await make_proxy()

    async def read(order_id: str, unknown_id: str) -> None:
        await expect(proxy.get(f"/orders/{order_id}"), 200, "MISS")
        await expect(proxy.get(f"/orders/{order_id}"), 200, "HIT")
        await expect(proxy.get(f"/orders/{unknown_id}"), 400, "MISS")

    for order_id, unknown_id in zip(
        order_ids[:FIRST_BATCH], unknown_ids[:FIRST_BATCH], strict=True
    ):
        await read(order_id, unknown_id)
    after_few = parse(await scrape(proxy))
    for order_id, unknown_id in zip(
        order_ids[FIRST_BATCH:], unknown_ids[FIRST_BATCH:], strict=True
    ):
        await read(order_id, unknown_id)
    after_many = parse(await scrape(proxy))

    requests = sum(series_of(after_many, "order_proxy_requests_total").values())
    assert requests == 3 * DISTINCT_ORDERS
    # Same series, only the values moved: 10 ids or 200 ids make no difference.
    assert set(after_many) == set(after_few)

    label_names = {name for _, labels in after_many for name, _ in labels}
    assert not label_names & FORBIDDEN_LABELS
    undocumented = sorted(label_names - set(ALLOWED_LABEL_VALUES))
    assert not undocumented, f"labels without a documented value set: {undocumented}"
    bad_values = sorted(
        f"{sample}{{{name}={val!r}}}"
        for sample, labels in after_many
        for name, val in labels
        if not ALLOWED_LABEL_VALUES[name](val)
    )
    assert not bad_values
    every_value = {val for _, labels in after_many for _, val in labels}
    assert not every_value & {*order_ids, *unknown_ids, MERCHANT}


# ------------------------------------------------------------------ request counts


async def test_requests_total_counts_by_route_code_and_cache(
    make_proxy: ProxyFactory,
    simulator: TestServer,
    simulator_state: SimulatorState,
    own_redis: RedisProcess,
) -> None:
    proxy = await make_proxy(
        settings=make_settings(simulator.make_url(""), redis_url=own_redis.url)
    )
    first, second, _, fourth, _ = SAMPLE_ORDERS
    await expect(proxy.get(f"/orders/{first}"), 200, "MISS")
    await expect(proxy.get(f"/orders/{first}"), 200, "HIT")
    await expect(proxy.get(f"/orders/{first}"), 200, "HIT")
    await expect(proxy.get("/order/status", params={"order_id": second}), 200, "MISS")
    await expect(proxy.get("/order/status", params={"order_id": second}), 200, "HIT")
    await expect(
        proxy.get(f"/orders/{first}", headers={"Cache-Control": "no-cache"}), 200, "BYPASS"
    )
    await expect(proxy.get(f"/orders/{BAD_ORDER_ID}"), 400)  # rejected before any lookup
    await expect(proxy.get(f"/orders/{UNKNOWN_ORDER}"), 400, "MISS")  # Juspay's NOT_FOUND
    own_redis.stop()
    await expect(proxy.get(f"/orders/{fourth}"), 200, "MISS")  # lookup failed: cache="error"
    # Not counted: operator endpoints.
    await expect(proxy.get("/healthz"), 200)
    await expect(proxy.get("/readyz"), 200)

    series = parse(await scrape(proxy))
    assert series_of(series, "order_proxy_requests_total") == {
        by_labels(route="order", code="200", cache="miss"): 1.0,
        by_labels(route="order", code="200", cache="hit"): 2.0,
        by_labels(route="order_status", code="200", cache="miss"): 1.0,
        by_labels(route="order_status", code="200", cache="hit"): 1.0,
        by_labels(route="order", code="200", cache="bypass"): 1.0,
        by_labels(route="order", code="400", cache="none"): 1.0,
        by_labels(route="order", code="400", cache="miss"): 1.0,
        by_labels(route="order", code="200", cache="error"): 1.0,
    }
    # The latency histogram saw the same requests, by route and cache result.
    assert series_of(series, "order_proxy_request_duration_seconds_count") == {
        by_labels(route="order", cache="miss"): 2.0,
        by_labels(route="order", cache="hit"): 2.0,
        by_labels(route="order_status", cache="miss"): 1.0,
        by_labels(route="order_status", cache="hit"): 1.0,
        by_labels(route="order", cache="bypass"): 1.0,
        by_labels(route="order", cache="none"): 1.0,
        by_labels(route="order", cache="error"): 1.0,
    }
    assert value(series, "order_proxy_redis_errors_total", operation="get") == 1.0
    assert value(series, "order_proxy_redis_up") == 0.0
    assert value(series, "order_proxy_in_flight_requests") == 0.0


async def test_a_miss_whose_upstream_call_fails_is_still_counted_as_a_miss(
    make_proxy: ProxyFactory, simulator_state: SimulatorState
) -> None:
    order = SAMPLE_ORDERS[2]
    simulator_state.add_fault(Fault(kind="status", status=500, order_id=order, remaining=1))
    proxy = await make_proxy()
    await expect(proxy.get(f"/orders/{order}"), 502)
    series = parse(await scrape(proxy))
    counted = {k: v for k, v in series_of(series, "order_proxy_requests_total").items() if v}
    assert counted == {by_labels(route="order", code="502", cache="miss"): 1.0}


# ------------------------------------------------------------------ upstream outcomes


async def test_upstream_requests_total_by_outcome(
    make_proxy: ProxyFactory, simulator: TestServer, simulator_state: SimulatorState
) -> None:
    ok, server_error, bad_body, timeout, _ = SAMPLE_ORDERS
    simulator_state.add_fault(Fault(kind="status", status=500, order_id=server_error))
    simulator_state.add_fault(Fault(kind="malformed", order_id=bad_body))
    simulator_state.add_fault(Fault(kind="timeout", delay=30, order_id=timeout))
    settings = make_settings(simulator.make_url(""))
    # One attempt per call, cut at 0.3 s: each failure is one counted upstream request.
    upstream = replace(
        settings.upstream, timeout_seconds=2.0, attempt_timeout_seconds=0.3, max_attempts=1
    )
    proxy = await make_proxy(settings=replace(settings, upstream=upstream))

    await expect(proxy.get(f"/orders/{ok}"), 200, "MISS")
    await expect(proxy.get(f"/orders/{UNKNOWN_ORDER}"), 400, "MISS")
    await expect(proxy.get(f"/orders/{server_error}"), 502)
    await expect(proxy.get(f"/orders/{bad_body}"), 502)
    await expect(proxy.get(f"/orders/{timeout}"), 504)

    series = parse(await scrape(proxy))
    outcomes = {
        dict(labels)["outcome"]: v
        for labels, v in series_of(series, "order_proxy_upstream_requests_total").items()
    }
    expected = dict.fromkeys(UPSTREAM_OUTCOMES, 0.0)
    expected.update(ok=1.0, not_found=1.0, server_error=1.0, bad_body=1.0, timeout=1.0)
    assert outcomes == expected
    assert value(series, "order_proxy_upstream_request_duration_seconds_count") == 5.0
    assert value(series, "order_proxy_upstream_in_flight") == 0.0
    assert sum(simulator_state.calls.values()) == 5


# ------------------------------------------------------------------ coalescing


async def test_a_concurrent_burst_is_coalesced_and_saves_upstream_calls(
    make_proxy: ProxyFactory, simulator_state: SimulatorState
) -> None:
    simulator_state.put_order(MERCHANT, "BURST1", "CHARGED")
    # Hold the one upstream answer long enough for every request to arrive while it is in flight.
    simulator_state.add_fault(Fault(kind="latency", delay=0.5, order_id="BURST1", remaining=1))
    proxy = await make_proxy()
    responses = await asyncio.gather(*(proxy.get("/orders/BURST1") for _ in range(50)))
    assert {r.status for r in responses} == {200}
    assert {r.headers["X-Cache"] for r in responses} == {"MISS"}
    assert simulator_state.calls["BURST1"] == 1

    series = parse(await scrape(proxy))
    assert value(series, "order_proxy_coalesced_requests_total") == 49.0
    assert value(series, "order_proxy_upstream_calls_saved_total") == 49.0
    assert value(series, "order_proxy_upstream_requests_total", outcome="ok") == 1.0

    # Hits save calls too, but are not coalesced.
    for _ in range(10):
        await expect(proxy.get("/orders/BURST1"), 200, "HIT")
    series = parse(await scrape(proxy))
    assert value(series, "order_proxy_coalesced_requests_total") == 49.0
    assert value(series, "order_proxy_upstream_calls_saved_total") == 59.0
    assert simulator_state.calls["BURST1"] == 1


# ------------------------------------------------------------------ histograms


async def test_latency_buckets_span_100_microseconds_to_30_seconds(
    make_proxy: ProxyFactory,
) -> None:
    proxy = await make_proxy()
    await expect(proxy.get(f"/orders/{SAMPLE_ORDERS[0]}"), 200, "MISS")
    series = parse(await scrape(proxy))
    for histogram in (
        "order_proxy_request_duration_seconds_bucket",
        "order_proxy_upstream_request_duration_seconds_bucket",
    ):
        label_sets = labelled(series, histogram)
        assert label_sets, histogram
        bounds = sorted({labels["le"] for labels in label_sets}, key=float)
        assert "0.0001" in bounds, histogram
        assert "30.0" in bounds, histogram
        assert bounds[0] == "0.0001"
        assert bounds[-2:] == ["30.0", "+Inf"]


# ------------------------------------------------------------------ promtool


@pytest.fixture
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool not found on PATH: install the Debian `prometheus` package "
            "(apt-get install prometheus); `make test` runs scripts/ensure-tools.sh, "
            "which installs it."
        )
    return path


async def test_promtool_check_metrics_accepts_a_live_scrape(
    promtool: str,
    make_proxy: ProxyFactory,
    simulator: TestServer,
    simulator_state: SimulatorState,
    own_redis: RedisProcess,
) -> None:
    proxy = await make_proxy(
        settings=make_settings(simulator.make_url(""), redis_url=own_redis.url)
    )
    await drive_every_label_set(proxy, simulator_state, own_redis)
    exposition = await scrape(proxy)
    assert "order_proxy_redis_errors_total" in exposition  # every kind of series is in it

    proc = await asyncio.create_subprocess_exec(
        promtool,
        "check",
        "metrics",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(exposition.encode()), timeout=60)
    report = (stdout + stderr).decode()
    assert proc.returncode == 0, report
    assert report == ""
