"""Redis back after an outage: each outage line gets its recovery line, /readyz says so at once."""

from __future__ import annotations

import time

from aiohttp.test_utils import TestServer

from tests.conftest import ProxyFactory, make_settings
from tests.support.logcapture import Captured
from tests.support.processes import RedisProcess

ORDER = "JP1636474794"


async def test_readyz_sees_redis_back_on_the_first_call_and_every_outage_line_is_paired(
    make_proxy: ProxyFactory, simulator: TestServer, own_redis: RedisProcess, logs: Captured
) -> None:
    proxy = await make_proxy(
        settings=make_settings(simulator.make_url(""), redis_url=own_redis.url)
    )
    assert (await proxy.get(f"/orders/{ORDER}")).status == 200
    ready = await (await proxy.get("/readyz")).json()
    assert ready["cache"] == {"layer": "redis", "redis": "up", "bus": "up"}

    own_redis.stop()
    assert (await proxy.get(f"/orders/{ORDER}")).status == 200  # fails open
    down = await (await proxy.get("/readyz")).json()
    assert down["cache"]["redis"] == "down"
    deadline = time.monotonic() + 10
    while not logs.events("bus_disconnected"):  # the subscription notices on its own
        assert time.monotonic() < deadline, "no bus_disconnected line"
        await proxy.get("/healthz")

    own_redis.start()  # same port
    # The very first readiness check after the restart sees Redis and the bus up: it has the
    # bus re-subscribe at once instead of at the end of its reconnect backoff.
    first = await (await proxy.get("/readyz")).json()
    assert first["cache"] == {"layer": "redis", "redis": "up", "bus": "up"}
    assert len(logs.events("cache_unavailable")) == len(logs.events("cache_recovered")) == 1
    assert len(logs.events("bus_disconnected")) == len(logs.events("bus_reconnected")) == 1


async def test_readyz_after_a_restart_nobody_noticed_says_up_at_once(
    make_proxy: ProxyFactory, simulator: TestServer, own_redis: RedisProcess
) -> None:
    proxy = await make_proxy(
        settings=make_settings(simulator.make_url(""), redis_url=own_redis.url)
    )
    assert (await (await proxy.get("/readyz")).json())["cache"]["redis"] == "up"
    # Redis restarts between two readiness checks: the connection the first one left in the
    # pool is dead, but Redis is up.
    own_redis.stop()
    own_redis.start()
    ready = await (await proxy.get("/readyz")).json()
    assert ready["cache"]["redis"] == "up"
