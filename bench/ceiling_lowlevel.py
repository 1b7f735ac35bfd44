"""Ceiling 0: aiohttp's low-level server (`web.Server`) answering with the same bytes.

The same answer as ceiling_bare, without web.Application: no router, no middleware chain, no
response hooks. It is what aiohttp's parser, request object and response writer cost alone, so
the proxy's fast lane is measured against it as well as against the Application.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from bench._serve import install_uvloop, parser


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--body-file", type=Path, required=True)
    args = p.parse_args()
    body = args.body_file.read_bytes()

    async def handle(request: web.BaseRequest) -> web.Response:
        if request.path == "/healthz":
            return web.Response(text="ok")
        return web.Response(body=body, content_type="application/json")

    async def serve() -> None:
        runner = web.ServerRunner(web.Server(handle), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", args.port).start()
        await asyncio.Event().wait()  # until the bench stops the process

    install_uvloop()
    asyncio.run(serve())


if __name__ == "__main__":
    main()
