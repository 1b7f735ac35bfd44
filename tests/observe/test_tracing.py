"""Trace context and OpenTelemetry spans, exported to a real OTLP/HTTP receiver on loopback."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from proxy.appkeys import BUS, TRACING
from proxy.config import SettingsError, load_settings
from proxy.config.settings import TracingSettings
from proxy.devtools.simulator import Fault, SimulatorState
from proxy.observe.tracing import parse_traceparent
from tests.conftest import API_KEY, MERCHANT, OTHER_API_KEY, ProxyFactory, make_settings
from tests.support.logcapture import Captured
from tests.support.otlp import CLIENT, SERVER, STATUS_ERROR, Receiver
from tests.support.processes import RedisProcess

CHARGED = "JP1636474794"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
SAMPLED = f"00-{TRACE}-{PARENT}-01"
NOT_SAMPLED = f"00-{TRACE}-{PARENT}-00"


@pytest.fixture
async def receiver(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> tuple[Receiver, str]:
    found = Receiver()
    server = await aiohttp_server(found.app())
    return found, str(server.make_url("/v1/traces"))


Traced = Callable[..., Awaitable[TestClient]]  # type: ignore[type-arg]


@pytest.fixture
def traced(
    make_proxy: ProxyFactory,
    simulator: TestServer,
    redis_server: RedisProcess,
    receiver: tuple[Receiver, str],
) -> Traced:
    """Proxies on the session's Redis whose spans go to the receiver."""

    async def factory(upstream: dict[str, Any] | None = None, **tracing: Any) -> TestClient:  # type: ignore[type-arg]
        settings = make_settings(simulator.make_url(""), redis_url=redis_server.url)
        return await make_proxy(
            settings=replace(
                settings,
                upstream=replace(settings.upstream, **(upstream or {})),
                tracing=TracingSettings(exporter="otlp", endpoint=receiver[1], **tracing),
            )
        )

    return factory


async def exported(proxy: TestClient, receiver: Receiver) -> Receiver:  # type: ignore[type-arg]
    await proxy.app[TRACING].flush()
    return receiver


# --- trace context, tracing off ------------------------------------------------------------


async def test_the_callers_trace_reaches_juspay_with_the_proxys_own_span_id(
    make_proxy: ProxyFactory, simulator_state: SimulatorState, logs: Captured
) -> None:
    proxy = await make_proxy()
    resp = await proxy.get(
        f"/orders/{CHARGED}", headers={"traceparent": SAMPLED, "tracestate": "vendor=abc"}
    )
    assert resp.status == 200
    sent = simulator_state.requests[-1].headers
    parsed = parse_traceparent(sent["traceparent"])
    assert parsed is not None
    trace_id, span_id, sampled = parsed
    assert (trace_id, sampled) == (TRACE, True)
    assert span_id != PARENT  # the proxy's own span, not the caller's
    assert sent["tracestate"] == "vendor=abc"
    [line] = [r for r in logs.requests() if r["route"] == "order"]
    assert line["trace_id"] == TRACE


async def test_an_unsampled_trace_is_continued_unsampled(
    make_proxy: ProxyFactory, simulator_state: SimulatorState
) -> None:
    proxy = await make_proxy(memory=True)
    await proxy.get(f"/orders/{CHARGED}", headers={"traceparent": NOT_SAMPLED})
    sent = simulator_state.requests[-1].headers["traceparent"]
    assert sent.startswith(f"00-{TRACE}-")
    assert sent.endswith("-00")


async def test_no_or_an_invalid_traceparent_sends_none_and_logs_none(
    make_proxy: ProxyFactory, simulator_state: SimulatorState, logs: Captured
) -> None:
    proxy = await make_proxy(memory=True)
    await proxy.get(f"/orders/{CHARGED}", headers={"traceparent": "00-zz-bad-01"})
    await proxy.get(
        f"/orders/{CHARGED}",
        headers={"Cache-Control": "no-cache", "traceparent": f"00-{'0' * 32}-{PARENT}-01"},
    )
    assert all("traceparent" not in r.headers for r in simulator_state.requests)
    assert all("trace_id" not in line for line in logs.requests())


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (SAMPLED, (TRACE, PARENT, True)),
        (NOT_SAMPLED, (TRACE, PARENT, False)),
        (SAMPLED.upper(), (TRACE, PARENT, True)),
        (f"01-{TRACE}-{PARENT}-01-later", (TRACE, PARENT, True)),  # a later version's extra
        (f"00-{TRACE}-{PARENT}-01-later", None),  # version 00 has exactly four fields
        (f"ff-{TRACE}-{PARENT}-01", None),
        (f"00-{'0' * 32}-{PARENT}-01", None),
        (f"00-{TRACE}-{'0' * 16}-01", None),
        (f"00-{TRACE}-{PARENT}-0g", None),
        (f"00_{TRACE}-{PARENT}-01", None),
        ("", None),
    ],
)
def test_traceparent_is_parsed_as_w3c_says(
    value: str, expected: tuple[str, str, bool] | None
) -> None:
    assert parse_traceparent(value) == expected


# --- spans, tracing on ---------------------------------------------------------------------


async def test_a_miss_exports_server_upstream_and_redis_spans_under_the_callers_trace(
    traced: Traced,
    simulator_state: SimulatorState,
    receiver: tuple[Receiver, str],
    logs: Captured,
) -> None:
    found = receiver[0]
    proxy = await traced()
    resp = await proxy.get(f"/orders/{CHARGED}", headers={"traceparent": SAMPLED})
    assert resp.status == 200
    spans = (await exported(proxy, found)).spans
    [server] = [s for s in spans if s.kind == SERVER]
    assert server.name == "GET /orders/{order_id}"
    assert (server.trace_id, server.parent_id) == (TRACE, PARENT)
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["order_proxy.cache"] == "miss"
    assert server.attributes["order_proxy.merchant_id"] == MERCHANT
    assert server.resource["service.name"] == "order-proxy"
    [upstream] = found.named("GET juspay /orders/{order_id}")
    assert upstream.kind == CLIENT
    assert (upstream.trace_id, upstream.parent_id) == (TRACE, server.span_id)
    assert upstream.attributes["http.response.status_code"] == 200
    # Juspay was told the upstream span is its parent.
    sent = simulator_state.requests[-1].headers["traceparent"]
    assert sent == f"00-{TRACE}-{upstream.span_id}-01"
    [lookup] = found.named("redis GET")
    [store] = found.named("redis SET")
    assert lookup.parent_id == store.parent_id == server.span_id
    assert lookup.attributes == {"db.system.name": "redis", "order_proxy.found": False}
    # Never a secret, in any attribute of any span.
    values = [str(v) for s in spans for v in [*s.attributes.values(), *s.resource.values()]]
    assert not any(API_KEY in v or OTHER_API_KEY in v for v in values)
    [line] = [r for r in logs.requests() if r["route"] == "order"]
    assert line["trace_id"] == TRACE


async def test_retries_are_events_on_the_upstream_span(
    traced: Traced, simulator_state: SimulatorState, receiver: tuple[Receiver, str]
) -> None:
    found = receiver[0]
    simulator_state.add_fault(Fault(kind="status", status=503, remaining=1))
    proxy = await traced(upstream={"backoff_base_seconds": 0.01})
    assert (await proxy.get(f"/orders/{CHARGED}")).status == 200
    [upstream] = (await exported(proxy, found)).named("GET juspay /orders/{order_id}")
    [(name, attributes)] = upstream.events
    assert name == "retry"
    assert attributes["attempt"] == 1
    assert attributes["error_code"] == "upstream_server_error"


async def test_a_request_that_joins_a_read_in_flight_has_a_coalescing_wait_span(
    traced: Traced, simulator_state: SimulatorState, receiver: tuple[Receiver, str]
) -> None:
    found = receiver[0]
    simulator_state.put_order(MERCHANT, "SLOW1", "PENDING_VBV")
    simulator_state.add_fault(Fault(kind="latency", delay=0.3, order_id="SLOW1"))
    proxy = await traced()
    await asyncio.gather(proxy.get("/orders/SLOW1"), proxy.get("/orders/SLOW1"))
    spans = (await exported(proxy, found)).spans
    [wait] = found.named("coalesce.wait")
    servers = {s.span_id: s for s in spans if s.kind == SERVER}
    assert wait.parent_id in servers
    assert servers[wait.parent_id].attributes["order_proxy.coalesced"] is True
    assert len(found.named("GET juspay /orders/{order_id}")) == 1


async def test_a_hit_is_one_server_span_and_its_trace_id_is_the_latency_exemplar(
    traced: Traced, receiver: tuple[Receiver, str]
) -> None:
    found = receiver[0]
    proxy = await traced()
    await proxy.get(f"/orders/{CHARGED}")
    hit = await proxy.get(f"/orders/{CHARGED}", headers={"traceparent": SAMPLED})
    assert hit.headers["X-Cache"] == "HIT"
    spans = (await exported(proxy, found)).spans
    hits = [s for s in spans if s.trace_id == TRACE]
    assert [(s.name, s.attributes["order_proxy.cache"]) for s in hits] == [
        ("GET /orders/{order_id}", "hit")
    ]
    scrape = await proxy.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert scrape.headers["Content-Type"].startswith("application/openmetrics-text")
    text = await scrape.text()
    exemplar = re.compile(
        r'^order_proxy_request_duration_seconds_bucket\{cache="hit",le="[^"]+",route="order"\} '
        rf'\d+(\.\d+)? # \{{trace_id="{TRACE}"\}}',
        re.MULTILINE,
    )
    assert exemplar.search(text), text[:3000]
    assert re.search(
        r'order_proxy_upstream_request_duration_seconds_bucket\{le="[^"]+"\} '
        r'\d+(\.\d+)? # \{trace_id="[0-9a-f]{32}"\}',
        text,
    )
    # The classic text format (what a scrape gets by default) carries none.
    assert "trace_id" not in await (await proxy.get("/metrics")).text()


async def test_sampling_off_exports_nothing_and_still_continues_the_trace(
    traced: Traced,
    simulator_state: SimulatorState,
    receiver: tuple[Receiver, str],
    logs: Captured,
) -> None:
    found = receiver[0]
    proxy = await traced(sampler="parentbased_traceidratio", sampler_arg=0.0)
    await proxy.get(f"/orders/{CHARGED}")  # no caller trace, ratio 0: no trace at all
    await proxy.get(
        f"/orders/{CHARGED}", headers={"traceparent": NOT_SAMPLED, "Cache-Control": "no-cache"}
    )
    assert (await exported(proxy, found)).spans == []
    assert "traceparent" not in simulator_state.requests[0].headers
    assert simulator_state.requests[1].headers["traceparent"].startswith(f"00-{TRACE}-")
    lines = [r for r in logs.requests() if r["route"] == "order"]
    assert ["trace_id" in line for line in lines] == [False, True]


async def test_a_replica_that_waits_for_another_replicas_read_has_a_coalescing_wait_span(
    make_proxy: ProxyFactory,
    simulator: TestServer,
    simulator_state: SimulatorState,
    redis_server: RedisProcess,
    receiver: tuple[Receiver, str],
) -> None:
    found, endpoint = receiver
    simulator_state.put_order(MERCHANT, "SLOW2", "PENDING_VBV")
    simulator_state.add_fault(Fault(kind="latency", delay=0.5, order_id="SLOW2"))
    settings = make_settings(simulator.make_url(""), redis_url=redis_server.url)
    settings = replace(settings, tracing=TracingSettings(exporter="otlp", endpoint=endpoint))
    a, b = await make_proxy(settings=settings), await make_proxy(settings=settings)
    for replica in (a, b):
        await asyncio.wait_for(replica.app[BUS].subscribed.wait(), timeout=5)
    first = asyncio.ensure_future(a.get("/orders/SLOW2"))
    assert await simulator_state.until_in_flight(1, within=5)  # a's read has reached Juspay
    second = await b.get("/orders/SLOW2", headers={"traceparent": SAMPLED})
    assert (await first).status == second.status == 200
    assert simulator_state.calls["SLOW2"] == 1  # b waited for a's answer
    await a.app[TRACING].flush()
    await exported(b, found)
    [wait] = [s for s in found.named("coalesce.wait") if s.trace_id == TRACE]
    [server] = [s for s in found.spans if s.trace_id == TRACE and s.kind == SERVER]
    assert wait.parent_id == server.span_id
    assert wait.attributes == {"order_proxy.read_by": "another replica"}
    assert not [s for s in found.named("GET juspay /orders/{order_id}") if s.trace_id == TRACE]


def test_tracing_is_on_only_with_an_exporter_and_speaks_only_http_protobuf() -> None:
    base = {"JUSPAY_MERCHANT_ID": "m1", "JUSPAY_API_KEY": "sk_trace_key_1"}
    assert not load_settings(base).tracing.enabled
    on = load_settings({**base, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"})
    assert on.tracing.enabled
    assert on.tracing.traces_url == "http://collector:4318/v1/traces"
    assert load_settings({**base, "OTEL_TRACES_EXPORTER": "otlp"}).tracing.enabled
    off = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}
    assert not load_settings({**base, **off, "OTEL_SDK_DISABLED": "true"}).tracing.enabled
    assert not load_settings({**base, **off, "OTEL_TRACES_EXPORTER": "none"}).tracing.enabled
    with pytest.raises(SettingsError) as grpc:
        load_settings({**base, **off, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    assert str(grpc.value).startswith("OTEL_EXPORTER_OTLP_PROTOCOL")
    with pytest.raises(SettingsError) as ratio:
        load_settings({**base, **off, "OTEL_TRACES_SAMPLER_ARG": "1.5"})
    assert str(ratio.value).startswith("OTEL_TRACES_SAMPLER_ARG")


async def test_a_failed_upstream_read_is_an_error_span(
    traced: Traced, simulator_state: SimulatorState, receiver: tuple[Receiver, str]
) -> None:
    found = receiver[0]
    simulator_state.add_fault(Fault(kind="status", status=500))
    proxy = await traced(upstream={"max_attempts": 1})
    assert (await proxy.get(f"/orders/{CHARGED}", headers={"traceparent": SAMPLED})).status == 502
    [upstream] = (await exported(proxy, found)).named("GET juspay /orders/{order_id}")
    assert upstream.status_code == STATUS_ERROR
    assert upstream.attributes["error.type"] == "upstream_server_error"
    [server] = [s for s in found.spans if s.kind == SERVER]
    assert server.attributes["http.response.status_code"] == 502
    assert server.status_code == STATUS_ERROR
