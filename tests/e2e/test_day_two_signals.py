"""Issue 14, items 1 and 2: signals an operator acts on tell the truth.

- the circuit-state gauge stops saying "open" once the open time is over, with no request;
- Juspay refusing our key is an error line, not an info line;
- a logged Redis outage is followed by `cache_recovered` as soon as Redis is seen up again;
- answers given before the cache was consulted count as cache="none", and `?wait=` answers
  produced by the proxy's own polls say MISS, never BYPASS (BYPASS is the caller's no-cache).
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import replace

from aiohttp.test_utils import TestServer

from proxy.appkeys import BUS, METRICS
from proxy.config.secrets import Secret
from proxy.config.settings import ClientSettings, MerchantSettings, WebhookSettings
from proxy.devtools.simulator import Fault, SimulatorState
from proxy.upstream.circuit import CircuitBreaker, CircuitSettings, CircuitState
from proxy.web.auth import hash_key
from tests.conftest import MERCHANT, ProxyFactory, make_settings
from tests.support.bus import until_bus
from tests.support.logcapture import Captured
from tests.support.processes import RedisProcess

ORDER = "JP1636474794"


def sample(app: object, name: str, **labels: str) -> float:
    value = app[METRICS].registry.get_sample_value(name, labels)  # type: ignore[index]
    return float(value or 0.0)


# --- 1. alerts that lie ------------------------------------------------------------------------


def test_an_open_circuit_reads_half_open_once_its_time_is_up_without_any_call() -> None:
    now = [0.0]
    breaker = CircuitBreaker(
        CircuitSettings(failure_threshold=1, open_seconds=5), clock=lambda: now[0]
    )
    breaker.record(failed=True)
    assert breaker.observed_state is CircuitState.OPEN
    now[0] = 4.9
    assert breaker.observed_state is CircuitState.OPEN
    now[0] = 5.0
    # No call was made: the next one would be a probe, so it is half-open, not open.
    assert breaker.observed_state is CircuitState.HALF_OPEN


async def test_the_circuit_gauge_leaves_open_on_an_idle_proxy(
    make_proxy: ProxyFactory, simulator_state: SimulatorState, simulator: TestServer
) -> None:
    simulator_state.add_fault(Fault(kind="status", status=503))
    settings = make_settings(simulator.make_url(""))
    settings = replace(
        settings,
        upstream=replace(
            settings.upstream,
            max_attempts=1,
            circuit=CircuitSettings(failure_threshold=2, open_seconds=0.3),
        ),
    )
    proxy = await make_proxy(settings=settings)
    for _ in range(2):
        assert (await proxy.get(f"/orders/{ORDER}")).status == 502
    assert "order_proxy_circuit_state 2.0" in await (await proxy.get("/metrics")).text()
    # Idle: no request moves the breaker. Waiting is the point here (the open time passing).
    await asyncio.sleep(0.35)
    assert "order_proxy_circuit_state 1.0" in await (await proxy.get("/metrics")).text()
    assert simulator_state.calls[ORDER] == 2


async def test_juspay_refusing_our_key_is_logged_as_an_error(
    logs: Captured, make_proxy: ProxyFactory, simulator: TestServer
) -> None:
    settings = make_settings(simulator.make_url(""))
    settings = replace(
        settings, merchants=(MerchantSettings(MERCHANT, Secret("not-the-key", "test")),)
    )
    proxy = await make_proxy(settings=settings)
    for _ in range(2):
        resp = await proxy.get(f"/orders/{ORDER}")
        assert resp.status == 502
        assert (await resp.json())["error_code"] == "upstream_auth_failed"
    refused = logs.events("upstream_auth_failed")
    assert len(refused) == 1  # once per merchant every few seconds, not once per request
    assert refused[0]["level"] == "error"
    assert refused[0]["merchant_id"] == MERCHANT
    assert refused[0]["upstream_status"] == 401
    assert "not-the-key" not in logs.buffer.getvalue()


async def test_a_logged_redis_outage_is_followed_by_cache_recovered_when_readyz_sees_it_up(
    logs: Captured,
    make_proxy: ProxyFactory,
    simulator: TestServer,
    own_redis: RedisProcess,
) -> None:
    proxy = await make_proxy(
        settings=make_settings(simulator.make_url(""), redis_url=own_redis.url)
    )
    assert (await proxy.get(f"/orders/{ORDER}")).status == 200
    own_redis.stop()
    await until_bus(proxy.app[BUS], healthy=False)  # the memory layer is emptied: ask Redis
    assert (await proxy.get(f"/orders/{ORDER}")).status == 200
    assert len(logs.events("cache_unavailable")) == 1
    own_redis.start()
    ready = await proxy.get("/readyz")
    assert (await ready.json())["cache"]["redis"] == "up"
    # Within seconds of the outage line: the recovery line is never rate-limited away.
    recovered = logs.events("cache_recovered")
    assert len(recovered) == 1
    assert recovered[0]["level"] == "info"
    lines = [line["event"] for line in logs.lines()]
    assert lines.index("cache_recovered") > lines.index("cache_unavailable")


# --- 2. labels that mislead --------------------------------------------------------------------

OPS_KEY = "ops-key-0123456789abcdef"
READER_KEY = "reader-key-0123456789abcdef"
HOOK_USER, HOOK_PASSWORD = "juspay", "hook-secret-123"


def _basic(user: str, password: str = "") -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def test_answers_given_before_the_cache_was_consulted_count_as_cache_none(
    make_proxy: ProxyFactory, simulator: TestServer
) -> None:
    settings = replace(
        make_settings(simulator.make_url("")),
        clients=(
            ClientSettings("ops", hash_key(OPS_KEY), ("*",), operator=True),
            ClientSettings("reader", hash_key(READER_KEY), (MERCHANT,)),
        ),
        webhook=WebhookSettings(HOOK_USER, Secret(HOOK_PASSWORD, "test")),
    )
    proxy = await make_proxy(settings=settings)
    ops, reader = _basic(OPS_KEY), _basic(READER_KEY)
    assert (await proxy.get("/orders/..%2Fadmin", headers=reader)).status == 400
    assert (await proxy.get(f"/orders/{ORDER}")).status == 401
    other = {**reader, "x-merchantid": "merchant_b"}
    assert (await proxy.get(f"/orders/{ORDER}", headers=other)).status == 403
    assert (await proxy.delete(f"/cache/orders/{ORDER}", headers=ops)).status == 200
    event = {
        "id": "evt_1",
        "event_name": "ORDER_SUCCEEDED",
        "date_created": "2026-01-01T00:00:00Z",
        "content": {"order": {"order_id": ORDER, "merchant_id": MERCHANT, "status": "CHARGED"}},
    }
    hook = await proxy.post(
        "/webhooks/juspay", json=event, headers=_basic(HOOK_USER, HOOK_PASSWORD)
    )
    assert hook.status == 200
    requests = "order_proxy_requests_total"
    assert sample(proxy.app, requests, route="order", code="400", cache="none") == 1
    assert sample(proxy.app, requests, route="order", code="401", cache="none") == 1
    assert sample(proxy.app, requests, route="order", code="403", cache="none") == 1
    assert sample(proxy.app, requests, route="purge", code="200", cache="none") == 1
    assert sample(proxy.app, requests, route="webhook", code="200", cache="none") == 1
    scrape = await (await proxy.get("/metrics")).text()
    assert 'cache="bypass"' not in scrape


async def test_a_wait_answer_from_the_proxys_own_poll_says_miss_not_bypass(
    make_proxy: ProxyFactory, simulator_state: SimulatorState
) -> None:
    simulator_state.lifecycle(MERCHANT, "WAIT-1", ["PENDING_VBV", "CHARGED"], after_reads=1)
    proxy = await make_proxy(memory=True)
    # The caller's read sees PENDING_VBV; the proxy's first poll (after 1 s) sees CHARGED.
    resp = await proxy.get("/orders/WAIT-1?wait=10")
    assert resp.status == 200
    assert resp.headers["X-Wait"] == "final"
    assert (await resp.json())["status"] == "CHARGED"
    assert resp.headers["X-Cache"] == "MISS"
    requests = "order_proxy_requests_total"
    assert sample(proxy.app, requests, route="order", code="200", cache="bypass") == 0
    assert sample(proxy.app, requests, route="order", code="200", cache="miss") == 1
