"""The simulator's webhooks as Juspay sends them: every event family's payload, Basic and JWT
(JWS RS256 inside JWE RSA-OAEP-256/A256GCM with the kid), received by a real server or a proxy.

Pinned from Juspay's documentation (see docs/simulator.md, "What remains inferred"): the
envelope {"id", "event_name", "date_created", "content": {"order"}} for order, refund and
transaction events; the order, refund, mandate and chargeback event names; mandate events
outside the standard structure.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from proxy.appkeys import METRICS
from proxy.config.settings import JwtWebhookSettings
from proxy.core.models import CHARGEBACK_EVENTS, MANDATE_EVENTS, ORDER_EVENTS, family_of
from proxy.devtools.simulator import SimulatorState, create_simulator_app
from proxy.web.webhook_jwt import JwtKeyring
from tests.conftest import MERCHANT, ProxyFactory, make_settings
from tests.support.processes import ServiceProcess, free_port, proxy_process

Client = TestClient[web.Request, web.Application]
ORDER = "JP1636474794"
STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


class Receiver:
    """A real HTTP server that records every webhook it is sent and answers 200."""

    def __init__(self) -> None:
        self.seen: list[tuple[dict[str, str], bytes]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append((dict(request.headers), await request.read()))
        return web.json_response({"status": "ok"})

    def last(self) -> tuple[dict[str, str], Any]:
        headers, body = self.seen[-1]
        return headers, json.loads(body)


@pytest.fixture
async def receiver(
    aiohttp_server: Callable[..., Awaitable[TestServer]],
) -> tuple[Receiver, str]:
    got = Receiver()
    app = web.Application()
    app.router.add_post("/hooks", got.handle)
    server = await aiohttp_server(app)
    return got, str(server.make_url("/hooks"))


@pytest.fixture
async def sim(aiohttp_client: Callable[..., Awaitable[Client]]) -> Client:
    state = SimulatorState({MERCHANT: "key_a_0123"})
    state.seed_samples()
    return await aiohttp_client(create_simulator_app(state))


async def fire(sim: Client, **body: Any) -> tuple[int, Any]:
    resp = await sim.post("/__sim/webhooks", json=body)
    return resp.status, await resp.json()


def test_the_event_names_are_juspays() -> None:
    # Juspay's webhook table names these; the chargeback list is its "Chargeback Received,
    # Resolved (merchant/customer favour), Cancelled, Refunded, Expired, Under review,
    # Evidence Required".
    assert {"ORDER_SUCCEEDED", "ORDER_FAILED", "TXN_CREATED", "AUTO_REFUND_FAILED"} <= ORDER_EVENTS
    assert len(ORDER_EVENTS) == 8
    assert {"MANDATE_ACTIVATED", "MANDATE_REVOKED"} <= MANDATE_EVENTS
    assert len(MANDATE_EVENTS) == 7
    assert len(CHARGEBACK_EVENTS) == 8


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("ORDER_SUCCEEDED", "order"),
        ("ORDER_REFUNDED", "refund"),
        ("AUTO_REFUND_FAILED", "refund"),
        ("TXN_CREATED", "txn"),
        ("MANDATE_ACTIVATED", "mandate"),
        ("CHARGEBACK_REFUNDED", "chargeback"),
        ("NOTIFICATION_SENT", "notification"),
        ("SOMETHING_NEW", "other"),
    ],
)
def test_event_names_fall_in_their_families(name: str, family: str) -> None:
    # One classifier for the proxy's counts and the simulator's envelopes (core/models.py).
    assert family_of(name) == family


@pytest.mark.parametrize(
    ("status", "refunds", "expected"),
    [
        ("CHARGED", [], "ORDER_SUCCEEDED"),
        ("AUTHORIZATION_FAILED", [], "ORDER_FAILED"),
        ("PENDING_VBV", [], "TXN_CREATED"),
        ("AUTO_REFUNDED", [], "AUTO_REFUND_SUCCEEDED"),
        ("CHARGED", [{"status": "SUCCESS", "amount": 1}], "ORDER_REFUNDED"),
        ("CHARGED", [{"status": "FAILURE", "amount": 1}], "ORDER_REFUND_FAILED"),
        ("CHARGED", [{"status": "MANUAL_REVIEW", "amount": 1}], "REFUND_MANUAL_REVIEW_NEEDED"),
    ],
)
async def test_the_default_event_follows_the_order(
    sim: Client,
    receiver: tuple[Receiver, str],
    status: str,
    refunds: list[dict[str, Any]],
    expected: str,
) -> None:
    got, url = receiver
    await sim.post("/__sim/orders", json={"order_id": "E1", "status": status, "refunds": refunds})
    code, answer = await fire(sim, order_id="E1", url=url)
    assert code == 200
    assert answer["event_name"] == expected
    assert got.last()[1]["event_name"] == expected


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("ORDER_SUCCEEDED", "order"),
        ("ORDER_REFUNDED", "refund"),
        ("TXN_CREATED", "txn"),
        ("CHARGEBACK_RECEIVED", "chargeback"),
    ],
)
async def test_order_refund_txn_and_chargeback_events_carry_the_whole_order(
    sim: Client, receiver: tuple[Receiver, str], name: str, family: str
) -> None:
    got, url = receiver
    chargebacks = [{"id": "cb1", "amount": 1.0, "dispute_status": "RECEIVED"}]
    put = {"order_id": "E2", "status": "CHARGED", "fields": {"chargebacks": chargebacks}}
    await sim.post("/__sim/orders", json=put)
    code, answer = await fire(sim, order_id="E2", url=url, event_name=name)
    assert (code, answer["family"], answer["status"]) == (200, family, 200)
    _, event = got.last()
    assert set(event) == {"id", "event_name", "date_created", "content"}
    assert re.fullmatch(r"evt_V2_[0-9a-f]{32}", event["id"])
    assert STAMP.fullmatch(event["date_created"])
    assert set(event["content"]) == {"order"}
    order = event["content"]["order"]
    served = await (await sim.get("/__sim/orders")).json()
    assert order["order_id"] == "E2"
    assert order["merchant_id"] == MERCHANT
    assert order["chargebacks"] == chargebacks
    assert any(o["order_id"] == "E2" and o["status"] == order["status"] for o in served)


async def test_mandate_events_carry_the_mandate_naming_its_order(
    sim: Client, receiver: tuple[Receiver, str]
) -> None:
    got, url = receiver
    code, answer = await fire(sim, order_id=ORDER, url=url, event_name="MANDATE_ACTIVATED")
    assert code == 400  # the card sample has no mandate block
    assert "mandate" in answer["error"]
    mandate = {"mandate_id": "m1", "mandate_status": "ACTIVE"}
    await sim.post("/__sim/orders", json={"order_id": ORDER, "fields": {"mandate": mandate}})
    code, answer = await fire(sim, order_id=ORDER, url=url, event_name="MANDATE_ACTIVATED")
    assert (code, answer["family"]) == (200, "mandate")
    content = got.last()[1]["content"]
    assert content == {"mandate": {**mandate, "order_id": ORDER, "merchant_id": MERCHANT}}


async def test_basic_webhooks_carry_the_dashboard_credentials(
    sim: Client, receiver: tuple[Receiver, str]
) -> None:
    got, url = receiver
    code, answer = await fire(sim, order_id=ORDER, url=url, username="hooks", password="pw-1")
    assert (code, answer["auth"]) == (200, "basic")
    headers, event = got.last()
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"hooks:pw-1").decode()
    assert event["content"]["order"]["order_id"] == ORDER


def _header(segment: str) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    )
    return decoded


async def test_jwt_webhooks_are_signed_then_encrypted_to_the_merchants_key(
    sim: Client, receiver: tuple[Receiver, str], tmp_path: Path
) -> None:
    got, url = receiver
    merchant = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = merchant.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    kid = "key_ccccda97e8b4d1bad6ca72c1"
    put = await sim.put(
        f"/__sim/jwt/{MERCHANT}", json={"kid": kid, "public_key_pem": public_pem.decode()}
    )
    assert put.status == 200
    shown = await (await sim.get(f"/__sim/jwt/{MERCHANT}")).json()
    assert (shown["kid"], shown["merchant_public_key_set"]) == (kid, True)

    code, answer = await fire(sim, order_id=ORDER, url=url)  # JWT by default once a key is set
    assert (code, answer["auth"]) == (200, "jwt")
    headers, body = got.last()
    assert "Authorization" not in headers
    assert set(body) == {"JWT"}
    token = body["JWT"]
    assert _header(token.split(".")[0]) == {"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": kid}

    private_file = tmp_path / "merchant.pem"
    private_file.write_bytes(
        merchant.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    juspay_file = tmp_path / "juspay.pem"
    juspay_file.write_text(shown["juspay_public_key_pem"])
    # The proxy's own keyring opens it: decrypts, verifies the RS256 signature, checks its age.
    keyring = JwtKeyring(private_key_files={kid: private_file}, public_key_files={kid: juspay_file})
    verified = keyring.verify_token(token)
    assert (verified.kid, verified.signing_kid) == (kid, kid)
    event = json.loads(verified.payload)
    assert event["event_name"] == "ORDER_REFUNDED"  # the sample has a settled refund
    assert event["content"]["order"]["order_id"] == ORDER


async def test_a_jwt_webhook_without_a_key_names_what_is_missing(sim: Client) -> None:
    code, answer = await fire(sim, order_id=ORDER, url="http://127.0.0.1:9/", auth="jwt")
    assert code == 400
    assert f"PUT /__sim/jwt/{MERCHANT}" in answer["error"]


async def test_a_jwt_webhook_from_the_simulator_invalidates_through_the_proxy(
    make_proxy: ProxyFactory,
    simulator: TestServer,
    simulator_state: SimulatorState,
    aiohttp_client: Callable[..., Awaitable[Client]],
    tmp_path: Path,
) -> None:
    made = simulator_state.jwt.write_files(MERCHANT, tmp_path / "keys")
    kid = made["kid"]
    settings = make_settings(simulator.make_url(""))
    merchants = tuple(
        replace(
            m,
            jwt=JwtWebhookSettings(
                private_key_files=((kid, Path(made["private_key_file"])),),
                public_key_files=((kid, Path(made["public_key_file"])),),
            ),
        )
        if m.merchant_id == MERCHANT
        else m
        for m in settings.merchants
    )
    proxy = await make_proxy(settings=replace(settings, merchants=merchants))
    assert (await proxy.get(f"/orders/{ORDER}")).headers["X-Cache"] == "MISS"
    assert (await proxy.get(f"/orders/{ORDER}")).headers["X-Cache"] == "HIT"
    control = await aiohttp_client(simulator.app)  # the same simulator, its control API
    hook = {"order_id": ORDER, "url": str(proxy.make_url("/webhooks/juspay"))}
    code, answer = await fire(control, **hook)
    assert (code, answer["auth"], answer["status"]) == (200, "jwt", 200), answer
    assert json.loads(answer["answer"])["result"] == "invalidated"
    registry = proxy.app[METRICS].registry
    labels = {"event": "order_refunded", "result": "invalidated"}
    assert registry.get_sample_value("order_proxy_webhook_events_total", labels) == 1


def test_a_jwt_webhook_in_three_commands(tmp_path: Path) -> None:
    """docs/simulator.md: simulate --jwt-keys, serve with the files it wrote, fire."""
    port = free_port()
    sim = ServiceProcess(
        ["simulate", "--port", str(port), "--jwt-keys", str(tmp_path)],
        {},
        b"simulator_listening",
        port,
    ).start()
    keys = tmp_path / "demo_merchant"
    proxy = proxy_process(
        {
            "JUSPAY_BASE_URL": sim.url,
            "JUSPAY_MERCHANT_ID": "demo_merchant",
            "JUSPAY_API_KEY": "demo_api_key",
            "JUSPAY_WEBHOOK_JWT_KID": (keys / "kid").read_text().strip(),
            "JUSPAY_WEBHOOK_JWT_PRIVATE_KEY_FILE": str(keys / "merchant-private.pem"),
            "JUSPAY_WEBHOOK_JWT_PUBLIC_KEY_FILE": str(keys / "juspay-public.pem"),
        }
    )
    try:
        proxy.start()
        import urllib.request  # noqa: PLC0415 - only this test talks plain HTTP to processes

        hook = {"order_id": ORDER, "url": f"{proxy.url}/webhooks/juspay"}
        request = urllib.request.Request(  # noqa: S310 - loopback
            f"{sim.url}/__sim/webhooks", data=json.dumps(hook).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310 - loopback
            answer = json.loads(resp.read())
        assert (answer["auth"], answer["status"]) == ("jwt", 200), answer
        assert json.loads(answer["answer"])["result"] == "invalidated"
        assert b"BEGIN" not in sim.output()  # no key material in its output
    finally:
        proxy.stop()
        sim.stop()
