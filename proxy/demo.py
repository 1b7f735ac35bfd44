"""`order-proxy demo`: the simulator and the proxy on loopback, one order shown MISS then HIT."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import aiohttp
from aiohttp import web

from proxy.app import create_app
from proxy.logs import configure_logging
from proxy.secrets import Secret
from proxy.settings import MerchantSettings, ServerSettings, Settings, UpstreamSettings
from proxy.simulator import SimulatorState, create_simulator_app

MERCHANT = "demo_merchant"
API_KEY = "demo_api_key"  # the simulator's own key; not a real credential
ORDER = "JP1636474794"


async def _start(app: web.Application, port: int) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    return runner, sockets[0].getsockname()[1]


async def _show(session: aiohttp.ClientSession, url: str) -> None:
    async with session.get(url, headers={"x-routing-id": "customer_1122"}) as resp:
        body = await resp.json()
        print(
            f"  GET {url}\n    -> {resp.status} X-Cache: {resp.headers.get('X-Cache')}"
            f"  Age: {resp.headers.get('Age', '-')}  status: {body.get('status')}"
            f"  amount: {body.get('amount')} {body.get('currency')}"
        )


async def _demo(port: int, once: bool) -> None:
    state = SimulatorState({MERCHANT: API_KEY})
    orders = state.seed_samples()
    state.lifecycle(MERCHANT, "DEMO-PENDING", ["NEW", "PENDING_VBV", "CHARGED"], after_reads=2)
    sim_runner, sim_port = await _start(create_simulator_app(state), 0)
    settings = Settings(
        merchants=(MerchantSettings(MERCHANT, Secret(API_KEY, "demo")),),
        default_merchant=MERCHANT,
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
    print(f"\nJuspay simulator on http://127.0.0.1:{sim_port}; proxy on {base} (in-process cache)")
    print(f"Seeded orders: {', '.join(orders)}, and DEMO-PENDING (NEW -> PENDING_VBV -> CHARGED)\n")
    try:
        async with aiohttp.ClientSession() as session:
            print("A final (CHARGED) order, asked twice:")
            await _show(session, f"{base}/orders/{ORDER}")
            await _show(session, f"{base}/orders/{ORDER}")
            print("\nAn order still in progress is never cached:")
            for _ in range(3):
                await _show(session, f"{base}/orders/DEMO-PENDING")
        print("\nTry it yourself:")
        print(f"  curl -i {base}/orders/{ORDER}")
        print(f"  curl -i -H 'Cache-Control: no-cache' {base}/orders/{ORDER}")
        print(f"  curl -i '{base}/order/status?order_id=JPAYNEW032'")
        print(f"  curl -i {base}/orders/no-such-order")
        print(f"  curl -i '{base}/orders/..%2Fadmin'")
        print(f"  curl -s {base}/metrics | grep ^order_proxy_requests_total")
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
