"""The `order-proxy` command line: serve, demo, simulate, client-key, check-config."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from proxy import __version__
from proxy.config import Settings, SettingsError, load_settings

_EPILOG = """\
Configuration comes from environment variables (JUSPAY_MERCHANT_ID, JUSPAY_API_KEY or
JUSPAY_API_KEY_FILE, JUSPAY_BASE_URL, REDIS_URL, PROXY_HOST, PROXY_PORT, ...) and an optional
TOML file named by PROXY_CONFIG_FILE. docs/configuration.md lists every setting with its
default.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="order-proxy",
        description="Read-through caching proxy in front of Juspay's Order Status API.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"order-proxy {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve_cmd = commands.add_parser(
        "serve",
        help="run the proxy (settings from the environment)",
        description="Run the proxy. Settings come from the environment; see docs/configuration.md. "
        "SIGTERM drains in-flight requests (PROXY_DRAIN_SECONDS) and exits 0.",
    )
    serve_cmd.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="processes sharing the port with SO_REUSEPORT (default 1; more need REDIS_URL)",
    )
    demo = commands.add_parser(
        "demo",
        help="run the simulator and the proxy together, no Juspay account needed",
        description="Start the built-in Juspay simulator and the proxy (in-process cache) on "
        "loopback, send one order through it twice (MISS, then HIT) and print curl lines.",
    )
    demo.add_argument("--port", type=int, default=8080, help="proxy port (default 8080)")
    demo.add_argument("--once", action="store_true", help="exit after showing the two requests")
    sim = commands.add_parser(
        "simulate",
        help="run only the Juspay-compatible upstream simulator",
        description="Run the Juspay-compatible simulator: orders seeded from Juspay's samples "
        "for every merchant, plus orders still in progress that settle --settle-after "
        "seconds after their first read, and a control API under /__sim/ (see docs/simulator.md).",
    )
    sim.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    sim.add_argument("--port", type=int, default=8099, help="listen port (default 8099)")
    sim.add_argument(
        "--merchant-id",
        action="append",
        dest="merchants",
        metavar="ID[=ENV_VAR]",
        help="a merchant it serves (repeat for several; default demo_merchant); its API key "
        "is read from ENV_VAR when given, else from --api-key-env",
    )
    sim.add_argument(
        "--api-key-env",
        default="SIMULATOR_API_KEY",
        help="environment variable holding the API key of merchants given without their own "
        "(default SIMULATOR_API_KEY; 'demo_api_key' when unset)",
    )
    sim.add_argument(
        "--settle-after",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="each seeded in-progress order settles this long after its first read (default 30)",
    )
    sim.add_argument(
        "--jwt-keys",
        metavar="DIR",
        default=None,
        help="play JWT webhooks: for each merchant, make its key pair and write "
        "DIR/<merchant>/merchant-private.pem, juspay-public.pem and kid for the proxy; "
        "its webhooks are then sent as JWT webhooks (docs/simulator.md)",
    )
    key_cmd = commands.add_parser(
        "client-key",
        help="make a new client key and the [[clients]] entry holding its hash",
        description="Print a new random client key (give it to the calling service) and the "
        "TOML entry for PROXY_CONFIG_FILE, which holds only the key's SHA-256.",
    )
    key_cmd.add_argument("--name", required=True, help="the calling service's name")
    key_cmd.add_argument(
        "--merchant",
        action="append",
        dest="merchants",
        metavar="ID",
        help="a merchant it may read (repeat; default: all, '*')",
    )
    key_cmd.add_argument("--operator", action="store_true", help="may purge cache entries")
    check = commands.add_parser(
        "check-config",
        help="print the effective settings (secrets masked) and exit",
        description="Parse the settings exactly as `serve` would and print them, secrets masked. "
        "Exits 2 with one line naming the bad setting when the configuration is invalid. "
        "With --probe, reach Redis and Juspay instead and print what was found, with a "
        "verdict for Redis and for each merchant (exit 1 when one is not ok).",
    )
    check.add_argument(
        "--probe",
        action="store_true",
        help="reach Redis (PING, version, role, replicas, persistence, topology) and Juspay "
        "(TLS, each merchant's key accepted or refused, latency)",
    )
    return parser


def _settings_or_exit() -> Settings:
    try:
        return load_settings(os.environ)
    except SettingsError as exc:
        print(f"order-proxy: invalid configuration: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _install_uvloop() -> str:
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up, only when serving
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def serve(workers: int = 1) -> int:
    from proxy.observe.logs import configure_logging  # noqa: PLC0415 - keep `--help` fast
    from proxy.server import run_workers, serve  # noqa: PLC0415
    from proxy.startup import StartupError  # noqa: PLC0415
    from proxy.supervisor import CENSUS_ENV  # noqa: PLC0415

    settings = _settings_or_exit()
    if workers < 1 or workers > 64:
        print("order-proxy: --workers must be between 1 and 64", file=sys.stderr)
        return 2
    if workers > 1 and settings.redis.url is None:
        # Each worker has its own in-process cache and hears webhooks and purges only through
        # Redis: without it, an invalidation reaches one worker and the others keep serving
        # the old order until its TTL. Refused before any worker starts.
        print(
            f"order-proxy: --workers {workers} needs REDIS_URL, which is unset: workers "
            "without a shared Redis cannot hear each other's webhooks and purges and would "
            "serve stale orders; set REDIS_URL or use --workers 1",
            file=sys.stderr,
        )
        return 2
    configure_logging(settings.log.level, settings.log.format)
    if workers > 1:
        return run_workers(workers, settings)
    loop_name = _install_uvloop()
    import structlog  # noqa: PLC0415

    structlog.get_logger("proxy").info(
        "starting",
        version=__version__,
        loop=loop_name,
        upstream=str(settings.upstream.base_url),
        cache="redis" if settings.redis.url else "in-process",
        merchants=[m.merchant_id for m in settings.merchants],
    )
    reuse_port = os.environ.get("ORDER_PROXY_WORKER") == "1"
    census = os.environ.get(CENSUS_ENV)
    try:
        asyncio.run(
            serve(settings, reuse_port=reuse_port, census_file=Path(census) if census else None)
        )
    except StartupError as exc:
        print(f"order-proxy: {exc}", file=sys.stderr)
        return 2
    return 0


def simulate(args: argparse.Namespace) -> int:
    from proxy.devtools.simulator import SimulatorState, create_simulator_app  # noqa: PLC0415
    from proxy.observe.logs import configure_logging  # noqa: PLC0415

    configure_logging("info", os.environ.get("LOG_FORMAT", "json"))
    if not 0 <= args.settle_after <= 86400:
        print("order-proxy: --settle-after must be between 0 and 86400 seconds", file=sys.stderr)
        return 2
    merchants: dict[str, str] = {}
    key_sources: dict[str, str] = {}
    for item in args.merchants or ["demo_merchant"]:
        merchant_id, has_env, env_name = item.partition("=")
        merchant_id = merchant_id.strip()
        if not merchant_id or merchant_id in merchants:
            print(f"order-proxy: --merchant-id {item!r}: empty or repeated", file=sys.stderr)
            return 2
        if has_env:
            key = os.environ.get(env_name)
            if not key:
                print(
                    f"order-proxy: --merchant-id {item!r}: ${env_name} is unset or empty",
                    file=sys.stderr,
                )
                return 2
            key_sources[merchant_id] = f"env:{env_name}"
        else:
            key = os.environ.get(args.api_key_env) or "demo_api_key"
            key_sources[merchant_id] = (
                f"env:{args.api_key_env}" if os.environ.get(args.api_key_env) else "demo_api_key"
            )
        merchants[merchant_id] = key
    state = SimulatorState(merchants)
    seeded = state.seed_samples()
    moving = state.seed_in_progress(args.settle_after)
    jwt_files = {}
    if args.jwt_keys is not None:
        folder = Path(args.jwt_keys).resolve()
        jwt_files = {m: state.jwt.write_files(m, folder / m) for m in merchants}
    line = json.dumps(
        {
            "event": "simulator_listening",
            "url": f"http://{args.host}:{args.port}",
            # Where each merchant's key came from (never the key itself).
            "merchants": key_sources,
            "merchant_id": next(iter(merchants)),
            "orders": seeded,
            "in_progress_orders": moving,
            "settle_after_seconds": args.settle_after,
            # Where each merchant's JWT key files are (paths and kid, never a key).
            "jwt_keys": jwt_files,
        }
    )
    web.run_app(
        create_simulator_app(state),
        host=args.host,
        port=args.port,
        # Called once the socket is bound: whoever waits for this line can connect at once.
        print=lambda _banner: print(line, flush=True),
        access_log=None,
    )
    return 0


def client_key(args: argparse.Namespace) -> int:
    from proxy.web.auth import hash_key, new_client_key  # noqa: PLC0415

    key = new_client_key()
    merchants = args.merchants or ["*"]
    print(f"# client key for {args.name} (shown once; store it as the caller's secret):")
    print(f"# {key}")
    print("[[clients]]")
    print(f"name = {json.dumps(args.name)}")
    print(f'key_sha256 = "{hash_key(key)}"')
    print(f"merchants = {json.dumps(merchants)}")
    print(f"operator = {'true' if args.operator else 'false'}")
    return 0


def check_config(probe: bool = False) -> int:
    settings = _settings_or_exit()
    if not probe:
        print(json.dumps(settings.describe(), indent=2))
        return 0
    from proxy.observe.logs import configure_logging  # noqa: PLC0415
    from proxy.preflight import probe as run_probe  # noqa: PLC0415 - only with --probe

    # Lines logged on the way (a refused key...) go to stderr: stdout is the report.
    configure_logging(settings.log.level, settings.log.format, stream=sys.stderr)
    report = asyncio.run(run_probe(settings))
    print(json.dumps(report, indent=2))
    return 0 if report["verdict"] == "ok" else 1


def main(argv: Sequence[str] | None = None) -> int:
    try:
        code = _main(argv)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`order-proxy check-config | head -1`): it took what it wanted.
        # Point stdout at /dev/null so the interpreter's final flush cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 0
    return code


def _main(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return serve(args.workers)
    if args.command == "demo":
        from proxy.devtools.demo import run_demo  # noqa: PLC0415

        return run_demo(port=args.port, once=args.once)
    if args.command == "simulate":
        return simulate(args)
    if args.command == "client-key":
        return client_key(args)
    return check_config(probe=args.probe)
