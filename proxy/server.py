"""Running the app: one process with graceful shutdown, or N processes sharing the port.

On SIGTERM (or SIGINT) the process stops being ready at once (/readyz answers 503), keeps
listening for `shutdown_delay_seconds` so load balancers notice, then stops accepting, lets
in-flight requests finish within `drain_seconds`, closes its resources and exits 0.

With `--workers N`, the parent runs N such processes on one port (SO_REUSEPORT), replacing any
that dies (proxy.supervisor), and gives them
one prometheus-client multiprocess directory (`PROMETHEUS_MULTIPROC_DIR`, or a new temporary
one), emptied at start; when a worker exits its live gauges are dropped
(`mark_process_dead`), and /metrics on any worker answers for the whole pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
from pathlib import Path

import structlog
from aiohttp import web

from proxy.app import create_app
from proxy.appkeys import INTERNAL_APP, LIFECYCLE, METRICS
from proxy.config.settings import Settings
from proxy.observe import accesslog
from proxy.observe.metrics import MULTIPROC_DIR_ENV, multiprocess_dir
from proxy.preflight import log_redis_at_start
from proxy.startup import StartupError, listen_failed
from proxy.supervisor import RestartPolicy, mark_listening, run_supervised
from proxy.web.bounds import BoundedRunner

log = structlog.get_logger("proxy.server")


async def serve(
    settings: Settings, *, reuse_port: bool = False, census_file: Path | None = None
) -> None:
    # A first word from Redis before traffic: an unreachable one is logged now, not at the
    # first request.
    await log_redis_at_start(settings.redis)
    app = create_app(settings)
    app[LIFECYCLE].census_file = census_file
    runner = BoundedRunner(
        app,
        settings.server,
        app[METRICS],
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
    try:
        await _listen(site, "PROXY_HOST", "PROXY_PORT")
        internal = await _start_internal(app, settings, reuse_port)
    except StartupError:
        await runner.cleanup()
        raise
    fields: dict[str, object] = {"host": settings.server.host, "port": bound_port(site)}
    if internal is not None:
        fields["internal_host"] = settings.server.internal_host or settings.server.host
        fields["internal_port"] = bound_port(internal[1])
    if census_file is not None:
        mark_listening(census_file, os.getpid())  # the supervisor's census counts it now
    log.info("listening", **fields, pid=os.getpid())

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    refresher = (
        asyncio.create_task(_refresh_metrics(app)) if multiprocess_dir() is not None else None
    )
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
        if refresher is not None:
            refresher.cancel()
        await runner.cleanup()
        if internal is not None:
            # Last: /metrics and /readyz (draining) answer until the proxy is gone.
            await internal[0].cleanup()
        log.info("stopped")
        sink = accesslog.sink()
        if sink is not None:
            sink.flush()


async def _listen(site: web.TCPSite, host_setting: str, port_setting: str) -> None:
    try:
        await site.start()
    except (OSError, UnicodeError) as exc:
        # UnicodeError: a host name the IDNA codec refuses (a label over 63 characters).
        raise listen_failed(exc, host_setting, str(site._host), port_setting, site._port) from None


def bound_port(site: web.TCPSite) -> int:
    """The port a site listens on: the real one when the setting was 0 (any free port)."""
    sockets = getattr(site._server, "sockets", None) or []
    return int(sockets[0].getsockname()[1]) if sockets else site._port


async def _start_internal(
    app: web.Application, settings: Settings, reuse_port: bool
) -> tuple[web.AppRunner, web.TCPSite] | None:
    """The optional listener for /metrics, /readyz and /healthz (PROXY_INTERNAL_PORT)."""
    internal_app = app.get(INTERNAL_APP)
    if internal_app is None or settings.server.internal_port is None:
        return None
    runner = BoundedRunner(
        internal_app, settings.server, app[METRICS], access_log=None, handle_signals=False
    )
    await runner.setup()
    site = web.TCPSite(
        runner,
        settings.server.internal_host or settings.server.host,
        settings.server.internal_port,
        reuse_port=reuse_port or None,
    )
    try:
        host_setting = "PROXY_INTERNAL_HOST" if settings.server.internal_host else "PROXY_HOST"
        await _listen(site, host_setting, "PROXY_INTERNAL_PORT")
    except StartupError:
        await runner.cleanup()
        raise
    return runner, site


async def _refresh_metrics(app: web.Application) -> None:
    """In multiprocess mode a scrape reaches one worker: every worker keeps its computed gauges
    (in flight, queued, circuit state...) and dropped-lines count current on its own."""
    metrics = app[METRICS]
    while True:
        metrics.refresh()
        await asyncio.sleep(1.0)


def prepare_multiprocess_dir() -> str:
    """The directory the workers share their metric values in, emptied of earlier runs."""
    path = multiprocess_dir()
    if path is None:
        path = tempfile.mkdtemp(prefix="order-proxy-metrics-")
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()
    return str(directory)


def run_workers(workers: int, settings: Settings) -> int:
    """Run `workers` copies of `serve` sharing the port with SO_REUSEPORT, supervised
    (proxy.supervisor): dead workers are replaced, signals are passed on."""
    from prometheus_client import multiprocess  # noqa: PLC0415 - only the parent needs it

    owned = multiprocess_dir() is None
    metrics_dir = prepare_multiprocess_dir()
    env = {**os.environ, "ORDER_PROXY_WORKER": "1", MULTIPROC_DIR_ENV: metrics_dir}
    log.info("workers_starting", workers=workers, metrics_dir=metrics_dir)

    def exited(pid: int) -> None:
        # Its live gauges leave the sums; its counters stay (they are the pod's history).
        multiprocess.mark_process_dead(pid, metrics_dir)  # type: ignore[no-untyped-call]

    policy = RestartPolicy(
        first_delay=settings.server.worker_restart_seconds,
        crash_limit=settings.server.worker_crash_limit,
    )
    census = Path(metrics_dir) / f"workers-{os.getpid()}.json"
    try:
        return run_supervised(workers, env, census, policy, exited)
    finally:
        if owned:
            with contextlib.suppress(OSError):
                shutil.rmtree(metrics_dir)
