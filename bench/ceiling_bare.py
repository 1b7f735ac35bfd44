"""Ceiling 1: a bare aiohttp app answering every order read with the same bytes from memory.

This is the most an aiohttp handler can do per request on this machine: no validation, no
cache lookup, no metrics, no logging. The proxy's in-process HIT is measured against it.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from bench._serve import parser, run


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--body-file", type=Path, required=True)
    args = p.parse_args()
    body = args.body_file.read_bytes()

    async def order(_: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/orders/{order_id}", order)
    run(app, args.port)


if __name__ == "__main__":
    main()
