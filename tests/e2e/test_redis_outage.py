"""Redis stopped and restarted under a running proxy: no request fails, caching comes back."""

from __future__ import annotations

from aiohttp.test_utils import TestServer

from proxy.appkeys import BUS, METRICS
from proxy.devtools.simulator import SimulatorState
from tests.conftest import ProxyFactory, make_settings
from tests.support.bus import until_bus
from tests.support.processes import RedisProcess

ORDER = "JP1636474794"


def sample(proxy_app: object, name: str, **labels: str) -> float:
    registry = proxy_app[METRICS].registry  # type: ignore[index]
    value = registry.get_sample_value(name, labels)
    return float(value or 0.0)


async def test_redis_outage_fails_open_and_caching_resumes_after_restart(
    make_proxy: ProxyFactory,
    simulator: TestServer,
    simulator_state: SimulatorState,
    own_redis: RedisProcess,
) -> None:
    proxy = await make_proxy(
        settings=make_settings(simulator.make_url(""), redis_url=own_redis.url)
    )
    assert (await proxy.get(f"/orders/{ORDER}")).headers["X-Cache"] == "MISS"
    assert (await proxy.get(f"/orders/{ORDER}")).headers["X-Cache"] == "HIT"

    own_redis.stop()
    await until_bus(proxy.app[BUS], healthy=False)
    seen = []
    for _ in range(3):
        resp = await proxy.get(f"/orders/{ORDER}")
        assert resp.status == 200
        assert (await resp.json())["order_id"] == ORDER
        seen.append(resp.headers["X-Cache"])
    # The first read goes to Juspay; its answer is kept in memory for the outage grace.
    assert seen == ["MISS", "HIT", "HIT"]
    assert simulator_state.calls[ORDER] == 2
    errors = sample(
        proxy.app, "order_proxy_requests_total", route="order", code="200", cache="error"
    )
    assert errors == 1
    assert sample(proxy.app, "order_proxy_redis_errors_total", operation="get") >= 1
    assert sample(proxy.app, "order_proxy_redis_up") == 0
    ready = await proxy.get("/readyz")
    assert ready.status == 200  # the cache fails open, so readiness holds
    assert (await ready.json())["cache"]["redis"] == "down"

    own_redis.start()  # same port, empty (no persistence)
    await until_bus(proxy.app[BUS], healthy=True)  # what memory kept is dropped now
    results = []
    for _ in range(4):
        resp = await proxy.get(f"/orders/{ORDER}")
        assert resp.status == 200
        results.append(resp.headers["X-Cache"])
    assert results[-1] == "HIT"
    assert results.count("HIT") >= 2
    assert sample(proxy.app, "order_proxy_redis_up") == 1
