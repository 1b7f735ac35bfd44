"""What every ceiling server shares: argument parsing, uvloop, and aiohttp's run_app.

The proxy's `serve` installs uvloop when it is available, so the ceilings do too: the
comparison is between handlers, not between event loops.
"""

from __future__ import annotations

import argparse
import asyncio

from aiohttp import web


def install_uvloop() -> str:
    try:
        import uvloop  # noqa: PLC0415 - optional, exactly as proxy.cli does
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--port", type=int, required=True, help="listen port on 127.0.0.1")
    return p


async def healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok")


def run(app: web.Application, port: int) -> None:
    """Serve on loopback only, single process, no access log (as the proxy runs in the bench)."""
    install_uvloop()
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)
