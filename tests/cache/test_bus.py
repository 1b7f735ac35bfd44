"""The event bus between replicas over a real Redis: delivery, waiters, and link health."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis

from proxy.cache.bus import ANSWER_FAILED, ANSWER_READY, INVALIDATED, EventBus
from proxy.cache.keys import KeySchema
from proxy.observe.metrics import Metrics
from tests.support.processes import RedisProcess

# Short, so a silent link is noticed in a fraction of a second.
PING_INTERVAL = 0.1
DEAD_AFTER = 0.4

BusFactory = Callable[[str], EventBus]


@pytest.fixture
async def make_bus(schema: KeySchema) -> AsyncIterator[BusFactory]:
    """Buses on the test's channel, each over a client of its own (one per replica)."""
    made: list[tuple[aioredis.Redis, EventBus]] = []

    def factory(url: str) -> EventBus:
        client = aioredis.Redis.from_url(url)
        bus = EventBus(
            client,
            schema.channel,
            Metrics(),
            timeout=0.5,
            ping_interval=PING_INTERVAL,
            dead_after=DEAD_AFTER,
        )
        made.append((client, bus))
        bus.start()
        return bus

    yield factory
    for client, bus in made:
        await bus.close()
        await client.aclose()


async def subscribed(*buses: EventBus) -> None:
    await asyncio.wait_for(asyncio.gather(*(bus.subscribed.wait() for bus in buses)), 5)


def states_of(bus: EventBus) -> asyncio.Queue[bool]:
    """Every change of the bus' health, in order."""
    states: asyncio.Queue[bool] = asyncio.Queue()
    bus.on_state(states.put_nowait)
    return states


# How long a change of health may take to be reported. Not a measure of how fast the bus
# notices (DEAD_AFTER says that): a bound so that a bus that never notices fails the test,
# generous because a loaded machine may not run this process for seconds.
HEALTH_WITHIN = 30.0


async def until_health(bus: EventBus, states: asyncio.Queue[bool], healthy: bool) -> None:
    """Await the bus reporting `healthy`, and being so. Reports before it are passed over: a
    stalled test process can make the bus flap (dead, then live) before the change the test
    causes, and only the change the test waits for ends the wait."""
    wanted = "live" if healthy else "dead"
    try:
        async with asyncio.timeout(HEALTH_WITHIN):
            while await states.get() is not healthy or bus.healthy is not healthy:
                pass
    except TimeoutError:
        raise AssertionError(f"the bus did not go {wanted} within {HEALTH_WITHIN}s") from None


async def test_an_invalidation_published_by_one_replica_reaches_the_other(
    make_bus: BusFactory, redis_server: RedisProcess, schema: KeySchema
) -> None:
    a, b = make_bus(redis_server.url), make_bus(redis_server.url)
    await subscribed(a, b)
    heard: asyncio.Queue[str] = asyncio.Queue()
    b.listen(INVALIDATED, heard.put_nowait)
    b.listen(ANSWER_READY, lambda key: heard.put_nowait(f"wrong kind: {key}"))
    base = schema.base("m1", "BUS-1")
    assert await a.publish(INVALIDATED, base)
    assert await asyncio.wait_for(heard.get(), 2) == base


async def test_a_waiter_wakes_with_the_kind_of_the_next_event_for_its_key(
    make_bus: BusFactory, redis_server: RedisProcess, schema: KeySchema
) -> None:
    a, b = make_bus(redis_server.url), make_bus(redis_server.url)
    await subscribed(a, b)
    key = schema.entry("m1", "BUS-2", "2023-06-30", False)
    other = b.waiter(schema.entry("m1", "BUS-3", "2023-06-30", False))
    ready, failed = b.waiter(key), b.waiter(key)
    assert await a.publish(ANSWER_READY, key)
    assert await asyncio.wait_for(ready, 2) == ANSWER_READY
    assert failed.result() == ANSWER_READY  # every waiter on the key, from one message
    assert not other.done()
    later = b.waiter(key)
    assert await a.publish(ANSWER_FAILED, key)
    assert await asyncio.wait_for(later, 2) == ANSWER_FAILED


async def test_the_bus_goes_dead_while_redis_stops_answering_and_live_again_after(
    make_bus: BusFactory, own_redis: RedisProcess
) -> None:
    bus = make_bus(own_redis.url)
    await subscribed(bus)
    states = states_of(bus)
    assert own_redis.proc is not None
    # A frozen server keeps its connections open but answers nothing, not even PING: only
    # the bus' own silence check can notice (TCP would not for minutes).
    own_redis.proc.send_signal(signal.SIGSTOP)
    try:
        # Awaited while Redis is still frozen: only the bus' silence check can end this.
        await until_health(bus, states, healthy=False)
    finally:
        own_redis.proc.send_signal(signal.SIGCONT)
    await until_health(bus, states, healthy=True)


async def test_the_bus_goes_dead_when_redis_exits_and_live_again_after_a_restart(
    make_bus: BusFactory, own_redis: RedisProcess
) -> None:
    a, b = make_bus(own_redis.url), make_bus(own_redis.url)
    await subscribed(a, b)
    states = states_of(b)
    await asyncio.to_thread(own_redis.stop)
    await until_health(b, states, healthy=False)
    assert not await a.publish(INVALIDATED, "lost")  # told, not raised
    await asyncio.to_thread(own_redis.start)
    await until_health(b, states, healthy=True)
    await subscribed(a)
    heard: asyncio.Queue[str] = asyncio.Queue()
    b.listen(INVALIDATED, heard.put_nowait)
    assert await a.publish(INVALIDATED, "after")
    assert await asyncio.wait_for(heard.get(), 2) == "after"


async def test_a_listener_that_raises_neither_drops_the_link_nor_starves_the_others(
    make_bus: BusFactory, redis_server: RedisProcess, schema: KeySchema
) -> None:
    a, b = make_bus(redis_server.url), make_bus(redis_server.url)
    await subscribed(a, b)
    states = states_of(b)

    def broken(key: str) -> None:
        raise RuntimeError(f"a bug while handling {key}")

    heard: asyncio.Queue[str] = asyncio.Queue()
    b.listen(INVALIDATED, broken)
    b.listen(INVALIDATED, heard.put_nowait)
    first, second = schema.base("m1", "BUS-RAISE-1"), schema.base("m1", "BUS-RAISE-2")
    assert await a.publish(INVALIDATED, first)
    assert await a.publish(INVALIDATED, second)
    assert await asyncio.wait_for(heard.get(), 2) == first
    assert await asyncio.wait_for(heard.get(), 2) == second
    assert b.healthy
    assert states.empty()  # the link never went down
