"""Running the app: one process with graceful shutdown, or N processes sharing the port.

On SIGTERM (or SIGINT) the process stops being ready at once (/readyz answers 503), keeps
listening for `shutdown_delay_seconds` so load balancers notice, then stops accepting, lets
in-flight requests finish within `drain_seconds`, closes its resources and exits 0.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import structlog
from aiohttp import web

from proxy.app import create_app
from proxy.keys import LIFECYCLE
from proxy.settings import Settings

log = structlog.get_logger("proxy.server")


async def serve(settings: Settings, *, reuse_port: bool = False) -> None:
    app = create_app(settings)
    runner = web.AppRunner(
        app,
        access_log=None,
        handle_signals=False,
        shutdown_timeout=settings.server.drain_seconds,
    )
    await runner.setup()
    site = web.TCPSite(
        runner,
        settings.server.host,
        settings.server.port,
        reuse_port=reuse_port or None,
        backlog=1024,
    )
    await site.start()
    log.info("listening", host=settings.server.host, port=settings.server.port, pid=os.getpid())

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
        app[LIFECYCLE].draining = True
        log.info(
            "draining",
            shutdown_delay_seconds=settings.server.shutdown_delay_seconds,
            drain_seconds=settings.server.drain_seconds,
        )
        if settings.server.shutdown_delay_seconds:
            # Deliberate: stay reachable (and unready) while endpoints are withdrawn.
            await asyncio.sleep(settings.server.shutdown_delay_seconds)
    finally:
        # Stops accepting, waits up to drain_seconds for in-flight requests, then cleans up.
        await runner.cleanup()
        log.info("stopped")


def run_workers(workers: int) -> int:
    """Start `workers` copies of `serve` sharing the port with SO_REUSEPORT; forward signals."""
    env = {**os.environ, "ORDER_PROXY_WORKER": "1"}
    children = [
        subprocess.Popen([sys.executable, "-m", "proxy", "serve"], env=env) for _ in range(workers)
    ]

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [child.wait() for child in children]
    return max(codes, key=abs, default=0)
