"""Ceiling 2: an aiohttp app doing one plain redis.asyncio GET per request and returning it.

The value (the bench body) is loaded into Redis at start-up. The proxy's Redis HIT is
measured against this.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import redis.asyncio as aioredis
from aiohttp import web

from bench._serve import parser, run

CLIENT = web.AppKey("client", aioredis.Redis)


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--body-file", type=Path, required=True)
    p.add_argument("--redis-url", required=True)
    p.add_argument("--key", default="bench:ceiling:body")
    args = p.parse_args()
    body = args.body_file.read_bytes()
    key: str = args.key

    async def client_ctx(app: web.Application) -> AsyncIterator[None]:
        # Same pool size as the proxy's default (redis.max_connections = 64).
        client = aioredis.Redis.from_url(args.redis_url, max_connections=64)
        await client.set(key, body)
        app[CLIENT] = client
        yield
        await client.aclose()

    async def order(request: web.Request) -> web.Response:
        raw = await request.app[CLIENT].get(key)
        if raw is None:
            return web.Response(status=404)
        return web.Response(body=raw, content_type="application/json")

    app = web.Application()
    app.cleanup_ctx.append(client_ctx)
    app.router.add_get("/orders/{order_id}", order)
    run(app, args.port)


if __name__ == "__main__":
    main()
