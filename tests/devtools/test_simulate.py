"""Issue 14, item 5: everything docs/simulator.md describes can be tried locally with `order-proxy
simulate`: several merchants each with its own key, orders still in progress that settle after
a configurable time, and the control API (advance, refund, faults, webhooks), as documented.

Real processes: the simulator and the proxy, as a newcomer would start them.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from proxy import cli
from proxy.devtools.simulator import create_simulator_app
from tests.support.processes import ServiceProcess, free_port, proxy_process

ROOT = Path(__file__).resolve().parents[2]
SIMULATOR_DOCS = (ROOT / "docs" / "simulator.md").read_text()
SHOP, TRAVEL = "m_shop", "m_travel"
SHOP_KEY, TRAVEL_KEY = "shop_key_0123456789", "travel_key_9876543210"
HOOK_USER, HOOK_PASSWORD = "hooks", "hook-password-123"
CHARGED_SAMPLE = "JP1636474794"


def call(
    url: str,
    *,
    method: str = "GET",
    data: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    body = json.dumps(data).encode() if data is not None else None
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})  # noqa: S310
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310 - loopback
            return resp.status, dict(resp.headers), json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read() or b"null")


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def simulator(settle_after: float) -> ServiceProcess:
    port = free_port()
    return ServiceProcess(
        [
            "simulate",
            "--port", str(port),
            "--merchant-id", f"{SHOP}=SHOP_KEY",
            "--merchant-id", f"{TRAVEL}=TRAVEL_KEY",
            "--settle-after", str(settle_after),
        ],
        {"SHOP_KEY": SHOP_KEY, "TRAVEL_KEY": TRAVEL_KEY},
        b"simulator_listening",
        port,
    )  # fmt: skip


def test_the_simulator_serves_several_merchants_each_with_its_own_key() -> None:
    sim = simulator(settle_after=60).start()
    try:
        url = f"{sim.url}/orders/{CHARGED_SAMPLE}"
        for merchant, key in ((SHOP, SHOP_KEY), (TRAVEL, TRAVEL_KEY)):
            status, _, body = call(url, headers={**basic(key), "x-merchantid": merchant})
            assert status == 200, body
            assert body["order_id"] == CHARGED_SAMPLE
        # One merchant's key is not another's.
        status, _, _ = call(url, headers={**basic(SHOP_KEY), "x-merchantid": TRAVEL})
        assert status == 401
        # The keys never reach the output (it says where each came from).
        assert SHOP_KEY.encode() not in sim.output()
    finally:
        sim.stop()


def test_two_merchants_through_the_proxy_and_every_control_route(tmp_path: Path) -> None:
    sim = simulator(settle_after=1).start()
    config = tmp_path / "proxy.toml"
    config.write_text(
        f'default_merchant = "{SHOP}"\n\n[[merchants]]\nid = "{TRAVEL}"\n'
        'api_key_env = "TRAVEL_API_KEY"\n'
    )
    proxy = proxy_process(
        {
            "JUSPAY_BASE_URL": sim.url,
            "JUSPAY_MERCHANT_ID": SHOP,
            "JUSPAY_API_KEY": SHOP_KEY,
            "TRAVEL_API_KEY": TRAVEL_KEY,
            "PROXY_CONFIG_FILE": str(config),
            "JUSPAY_WEBHOOK_USERNAME": HOOK_USER,
            "JUSPAY_WEBHOOK_PASSWORD": HOOK_PASSWORD,
        }
    )
    try:
        proxy.start()
        # Both merchants are served: the second no longer gets 502 upstream_auth_failed.
        for merchant in (SHOP, TRAVEL):
            status, headers, body = call(
                f"{proxy.url}/orders/{CHARGED_SAMPLE}", headers={"x-merchantid": merchant}
            )
            assert status == 200, body
            assert headers["X-Cache"] == "MISS"

        # A seeded order still in progress settles after --settle-after: ?wait= shows it.
        status, _, listed = call(f"{sim.url}/__sim/orders")
        assert status == 200
        pending = {(o["merchant_id"], o["order_id"]): o["status"] for o in listed}
        assert pending[(SHOP, "SIM-PENDING-1")] == "PENDING_VBV"
        status, headers, body = call(f"{proxy.url}/orders/SIM-PENDING-1?wait=15")
        assert status == 200
        assert headers["X-Wait"] == "final"
        assert body["status"] == "CHARGED"

        # Advance an order by hand.
        moving = {"merchant_id": TRAVEL, "order_id": "SIM-AUTHORIZING-1"}
        call(f"{sim.url}/__sim/orders", method="POST", data={**moving, "status": "AUTHORIZING"})
        assert call(f"{sim.url}/__sim/advance", method="POST", data=moving)[0] == 200

        # Add a refund to a cached CHARGED order, then fire the webhook Juspay would send.
        cached = call(f"{proxy.url}/orders/{CHARGED_SAMPLE}")
        assert cached[1]["X-Cache"] == "HIT"
        status, _, added = call(
            f"{sim.url}/__sim/refunds",
            method="POST",
            data={"merchant_id": SHOP, "order_id": CHARGED_SAMPLE, "amount": 5},
        )
        assert status == 200
        assert added["refund"]["status"] == "PENDING"
        status, _, fired = call(
            f"{sim.url}/__sim/webhooks",
            method="POST",
            data={
                "merchant_id": SHOP,
                "order_id": CHARGED_SAMPLE,
                "url": f"{proxy.url}/webhooks/juspay",
                "username": HOOK_USER,
                "password": HOOK_PASSWORD,
            },
        )
        assert status == 200, fired
        assert fired["event_name"] == "ORDER_REFUNDED"
        assert fired["status"] == 200
        assert json.loads(fired["answer"])["result"] == "invalidated"
        # The cached copy is gone: the answer shows the refund (a fresh read or its refresh).
        status, _, body = call(f"{proxy.url}/orders/{CHARGED_SAMPLE}")
        assert status == 200
        assert [r["status"] for r in body["refunds"]][-1] == "PENDING"

        # Inject latency, then clear it.
        fault = {"kind": "latency", "delay": 0.3, "order_id": "JPAYNEW032"}
        assert call(f"{sim.url}/__sim/faults", method="POST", data=fault)[0] == 200
        started = time.monotonic()
        assert call(f"{proxy.url}/orders/JPAYNEW032")[0] in (200, 400)
        assert time.monotonic() - started >= 0.3
        assert call(f"{sim.url}/__sim/faults", method="DELETE")[0] == 200
    finally:
        proxy.stop()
        sim.stop()


def test_the_simulator_page_documents_every_control_route_and_simulate_flag() -> None:
    app = create_simulator_app()
    routes = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith("/__sim/")
        and route.method != "HEAD"  # aiohttp's automatic twin of each GET
    }
    assert routes
    for method, path in routes:
        assert re.search(rf"`{method} {re.escape(path)}`", SIMULATOR_DOCS), (method, path)
    flags = {
        action.option_strings[-1]
        for action in _simulate_parser()._actions
        if action.option_strings and action.option_strings[-1] != "--help"
    }
    assert flags >= {"--merchant-id", "--api-key-env", "--settle-after", "--jwt-keys"}
    table = SIMULATOR_DOCS[SIMULATOR_DOCS.index("| `order-proxy simulate` flag") :]
    for flag in flags:
        assert f"`{flag}" in table, flag


def _simulate_parser() -> argparse.ArgumentParser:
    parser = cli._parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    found: argparse.ArgumentParser = commands.choices["simulate"]
    return found


def test_the_demo_shows_two_merchants_a_wait_and_the_control_api() -> None:
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("JUSPAY_", "REDIS_", "PROXY_"))
    }
    result = subprocess.run(
        [sys.executable, "-m", "proxy", "demo", "--port", "0", "--once"],
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    shown = [line for line in out.splitlines() if line.startswith("    -> ")]
    assert all(" 200 " in line for line in shown), shown  # the second merchant too
    assert any("X-Wait: final" in line and "CHARGED" in line for line in shown)
    assert "x-merchantid: demo_travel" in out
    for route in ("/__sim/orders", "/__sim/advance", "/__sim/refunds", "/__sim/webhooks"):
        assert route in out, route
    assert "/__sim/faults" in out
