"""Awaiting the invalidation bus of an in-process proxy: it reports every change of health."""

from __future__ import annotations

import asyncio

from proxy.cache.bus import EventBus


async def until_bus(bus: EventBus, healthy: bool, within: float = 20.0) -> None:
    """Return once the bus is in the state asked for."""
    reached = asyncio.Event()
    bus.on_state(lambda now: reached.set() if now == healthy else None)
    if bus.healthy != healthy:
        await asyncio.wait_for(reached.wait(), within)
