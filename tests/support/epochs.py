"""The epoch a Redis server stamps on the entries fenced on it, for tests that write entries."""

from __future__ import annotations

import redis.asyncio as aioredis

from proxy.cache.epoch import epoch_of


async def redis_epoch(client: aioredis.Redis) -> str:
    """What proxy.cache.epoch computes for the server `client` talks to."""
    server = await client.execute_command("INFO", "server")
    replication = await client.execute_command("INFO", "replication")
    return epoch_of(_raw(server), _raw(replication))


def _raw(reply: object) -> bytes:
    # redis-py parses INFO into a dict unless asked for the raw text: rebuild the two lines
    # epoch_of reads from whichever it got.
    if isinstance(reply, bytes):
        return reply
    assert isinstance(reply, dict)
    return "\n".join(f"{k}:{v}" for k, v in reply.items()).encode()
