"""An OTLP/HTTP trace sink for the tracing scenarios: accepts POST /v1/traces, counts, drops.

The proxy's exporter needs somewhere to send spans, as it would a collector; the sink only
answers (it runs on the client core, its CPU is not the proxy's).
"""

from __future__ import annotations

from aiohttp import web

from bench._serve import parser, run


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    received = {"posts": 0, "bytes": 0}

    async def traces(request: web.Request) -> web.Response:
        body = await request.read()
        received["posts"] += 1
        received["bytes"] += len(body)
        # An empty ExportTraceServiceResponse is zero bytes of protobuf.
        return web.Response(body=b"", content_type="application/x-protobuf")

    async def stats(_: web.Request) -> web.Response:
        return web.json_response(received)

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post("/v1/traces", traces)
    app.router.add_get("/stats", stats)
    run(app, args.port)


if __name__ == "__main__":
    main()
