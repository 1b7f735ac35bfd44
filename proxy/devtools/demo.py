"""`order-proxy demo`: the simulator and the proxy on loopback, with two merchants.

It shows one order MISS then HIT, an order in progress never cached, the same order for the
second merchant and an order in progress waited for with `?wait=`, a JWT webhook (the second
merchant's webhooks are JWT webhooks, with keys the simulator made) invalidating a cached
order, then prints curl lines for the proxy and for the simulator's control API (advance an
order, add a refund, inject latency or faults, fire a webhook at the proxy).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import tempfile
from pathlib import Path

import aiohttp
from aiohttp import web

from proxy.app import create_app
from proxy.config.secrets import Secret
from proxy.config.settings import (
    JwtWebhookSettings,
    MerchantSettings,
    ServerSettings,
    Settings,
    UpstreamSettings,
    WebhookSettings,
)
from proxy.devtools.simulator import SimulatorState, create_simulator_app
from proxy.observe.logs import configure_logging

MERCHANT = "demo_merchant"
API_KEY = "demo_api_key"  # the simulator's own key; not a real credential
SECOND_MERCHANT = "demo_travel"
SECOND_API_KEY = "demo_travel_key"  # each merchant has its own key, as on Juspay
ORDER = "JP1636474794"
# The Basic pair the demo proxy takes Juspay's webhooks with (the simulator fires them).
HOOK_USER, HOOK_PASSWORD = "demo_hooks", "demo_hook_password"
SETTLE_SECONDS = 2.0


async def _start(app: web.Application, port: int) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    return runner, sockets[0].getsockname()[1]


async def _show(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> None:
    sent = {"x-routing-id": "customer_1122", **(headers or {})}
    async with session.get(url, headers=sent) as resp:
        body = await resp.json()
        wait = f"  X-Wait: {resp.headers['X-Wait']}" if "X-Wait" in resp.headers else ""
        print(
            f"  GET {url}\n    -> {resp.status} X-Cache: {resp.headers.get('X-Cache')}"
            f"  Age: {resp.headers.get('Age', '-')}  status: {body.get('status')}"
            f"  amount: {body.get('amount')} {body.get('currency')}{wait}"
        )


def _print_tries(base: str, sim: str, moving: list[str]) -> None:
    print("\nTry it yourself:")
    print(f"  curl -i {base}/orders/{ORDER}")
    print(f"  curl -i -H 'x-merchantid: {SECOND_MERCHANT}' {base}/orders/{ORDER}")
    print(f"  curl -i '{base}/orders/{moving[1]}?wait=10'")
    print(f"  curl -i -H 'Cache-Control: no-cache' {base}/orders/{ORDER}")
    print(f"  curl -i '{base}/order/status?order_id=JPAYNEW032'")
    print(f"  curl -i {base}/orders/no-such-order")
    print(f"  curl -i '{base}/orders/..%2Fadmin'")
    print(f"  curl -s {base}/metrics | grep ^order_proxy_requests_total")
    post = "curl -s -XPOST -H 'Content-Type: application/json'"
    print("\nThe simulator's control API (docs/simulator.md):")
    print(f"  curl -s {sim}/__sim/orders")
    print(f"""  {post} {sim}/__sim/advance -d '{{"order_id": "{moving[1]}"}}'""")
    print(f"""  {post} {sim}/__sim/refunds -d '{{"order_id": "{ORDER}", "amount": 5}}'""")
    print(
        f"""  {post} {sim}/__sim/webhooks -d '{{"order_id": "{ORDER}", """
        f""""url": "{base}/webhooks/juspay", "username": "{HOOK_USER}", """
        f""""password": "{HOOK_PASSWORD}"}}'"""
    )
    print(
        f"""  {post} {sim}/__sim/webhooks -d '{{"merchant_id": "{SECOND_MERCHANT}", """
        f""""order_id": "{ORDER}", "url": "{base}/webhooks/juspay"}}'   # a JWT webhook"""
    )
    print(f"""  {post} {sim}/__sim/faults -d '{{"kind": "latency", "delay": 2}}'""")
    print(f"""  {post} {sim}/__sim/faults -d '{{"kind": "status", "status": 503}}'""")
    print(f"  curl -s -XDELETE {sim}/__sim/faults")


async def _show_jwt_webhook(session: aiohttp.ClientSession, base: str, sim: str) -> None:
    """Juspay's JWT webhook for a cached order of the second merchant, then the order again."""
    headers = {"x-merchantid": SECOND_MERCHANT}
    fire = {"merchant_id": SECOND_MERCHANT, "order_id": ORDER, "url": f"{base}/webhooks/juspay"}
    async with session.post(f"{sim}/__sim/webhooks", json=fire) as resp:
        sent = await resp.json()
    print(
        f"  POST {sim}/__sim/webhooks ({SECOND_MERCHANT}, {ORDER})\n"
        f"    -> {sent.get('event_name')} sent as a {sent.get('auth')} webhook; the proxy "
        f"answered {sent.get('status')} {sent.get('answer')}"
    )
    await _show(session, f"{base}/orders/{ORDER}", headers)


def _jwt_settings(state: SimulatorState, folder: Path) -> JwtWebhookSettings:
    """The second merchant's JWT webhook keys, made by the simulator as Juspay's dashboard would."""
    made = state.jwt.write_files(SECOND_MERCHANT, folder)
    kid = made["kid"]
    return JwtWebhookSettings(
        private_key_files=((kid, Path(made["private_key_file"])),),
        public_key_files=((kid, Path(made["public_key_file"])),),
    )


async def _demo(port: int, once: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="order-proxy-demo-") as keys:
        await _run_demo(port, once, Path(keys))


async def _run_demo(port: int, once: bool, keys: Path) -> None:
    state = SimulatorState({MERCHANT: API_KEY, SECOND_MERCHANT: SECOND_API_KEY})
    orders = state.seed_samples()
    moving = state.seed_in_progress(SETTLE_SECONDS)
    state.lifecycle(MERCHANT, "DEMO-PENDING", ["NEW", "PENDING_VBV", "CHARGED"], after_reads=2)
    sim_runner, sim_port = await _start(create_simulator_app(state), 0)
    settings = Settings(
        merchants=(
            MerchantSettings(MERCHANT, Secret(API_KEY, "demo")),
            MerchantSettings(
                SECOND_MERCHANT,
                Secret(SECOND_API_KEY, "demo"),
                jwt=_jwt_settings(state, keys),
            ),
        ),
        default_merchant=MERCHANT,
        webhook=WebhookSettings(HOOK_USER, Secret(HOOK_PASSWORD, "demo")),
        upstream=UpstreamSettings(
            base_url=UpstreamSettings()
            .base_url.with_scheme("http")
            .with_host("127.0.0.1")
            .with_port(sim_port)
        ),
        server=ServerSettings(port=port),
    )
    proxy_runner, proxy_port = await _start(create_app(settings), port)
    base = f"http://127.0.0.1:{proxy_port}"
    sim = f"http://127.0.0.1:{sim_port}"
    print(f"\nJuspay simulator on {sim}; proxy on {base} (in-process cache)")
    print(
        f"Merchants: {MERCHANT} (the default; Basic webhooks) and {SECOND_MERCHANT} (JWT "
        "webhooks), each with its own key"
    )
    print(f"Seeded orders: {', '.join(orders)}, and DEMO-PENDING (NEW -> PENDING_VBV -> CHARGED)")
    print(
        f"In progress: {', '.join(moving)} (each settles {SETTLE_SECONDS:g} s after its "
        "first read)\n"
    )
    try:
        async with aiohttp.ClientSession() as session:
            print("A final (CHARGED) order, asked twice:")
            await _show(session, f"{base}/orders/{ORDER}")
            await _show(session, f"{base}/orders/{ORDER}")
            print("\nAn order still in progress is never cached:")
            for _ in range(3):
                await _show(session, f"{base}/orders/DEMO-PENDING")
            print(f"\nThe same order for the other merchant ({SECOND_MERCHANT}, its own key):")
            await _show(session, f"{base}/orders/{ORDER}", {"x-merchantid": SECOND_MERCHANT})
            print("\nWaiting (?wait=10) for an order in progress to settle:")
            await _show(session, f"{base}/orders/{moving[0]}?wait=10")
            print(f"\nA JWT webhook ({SECOND_MERCHANT}'s webhooks are JWT-encrypted):")
            await _show_jwt_webhook(session, base, sim)
        _print_tries(base, sim, moving)
        if not once:
            print("\nServing until Ctrl-C.")
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
    finally:
        await proxy_runner.cleanup()
        await sim_runner.cleanup()


def run_demo(*, port: int = 8080, once: bool = False) -> int:
    configure_logging("warning", "console")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_demo(port, once))
    return 0
