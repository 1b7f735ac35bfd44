"""Ceiling 3: an aiohttp app forwarding each order read to the upstream with one shared session.

It injects the same credentials the proxy would and returns the upstream's status and body,
and nothing else. The proxy's MISS (a non-cacheable order) is measured against this.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from bench._serve import parser, run

SESSION = web.AppKey("session", aiohttp.ClientSession)


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--upstream", required=True, help="e.g. http://127.0.0.1:8099")
    p.add_argument("--merchant-id", default="demo_merchant")
    p.add_argument("--api-key", default="demo_api_key")
    args = p.parse_args()
    upstream = args.upstream.rstrip("/")
    headers = {
        "Authorization": "Basic " + base64.b64encode(f"{args.api_key}:".encode()).decode(),
        "x-merchantid": args.merchant_id,
        "version": "2023-06-30",
        "Accept": "application/json",
    }

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        # The proxy's upstream pool: 100 connections, keep-alive.
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100))
        app[SESSION] = session
        yield
        await session.close()

    async def order(request: web.Request) -> web.Response:
        url = f"{upstream}/orders/{request.match_info['order_id']}"
        async with request.app[SESSION].get(url, headers=headers) as resp:
            body = await resp.read()
            return web.Response(
                status=resp.status,
                body=body,
                headers={"Content-Type": resp.headers.get("Content-Type", "application/json")},
            )

    app = web.Application()
    app.cleanup_ctx.append(session_ctx)
    app.router.add_get("/orders/{order_id}", order)
    run(app, args.port)


if __name__ == "__main__":
    main()
