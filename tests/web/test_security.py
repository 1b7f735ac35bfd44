"""Who gets in and what gets out: client keys, merchants, purge, webhooks, secrets, headers."""

from __future__ import annotations

import base64
import io
import json
import logging
import re
from dataclasses import replace
from pathlib import Path

import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.appkeys import ORDER_SERVICE
from proxy.config.secrets import Secret
from proxy.config.settings import ClientSettings, MerchantSettings, Settings, WebhookSettings
from proxy.devtools.simulator import SimulatorState
from proxy.observe.logs import configure_logging
from proxy.web.auth import KNOWN_HEADERS_PER_CLIENT, ClientKeyAuth, hash_key
from tests.conftest import (
    API_KEY,
    MERCHANT,
    OTHER_API_KEY,
    OTHER_MERCHANT,
    ProxyFactory,
    make_settings,
)
from tests.support.processes import RedisProcess

READER_KEY = "opk_reader_only_merchant_a_0123456789abcdef"
OPERATOR_KEY = "opk_operator_all_merchants_fedcba9876543210"
HOOK_USER, HOOK_PASSWORD = "juspay", "hook-password-5f3a9c"
ORDER = "JP1636474794"
Client = TestClient[web.Request, web.Application]


def basic(user: str, password: str = "", colon: bool = True) -> dict[str, str]:
    raw = f"{user}:{password}" if colon else user
    return {"Authorization": "Basic " + base64.b64encode(raw.encode()).decode()}


def secured(simulator: TestServer, redis_url: str | None, **changes: object) -> Settings:
    settings = make_settings(
        simulator.make_url(""),
        redis_url=redis_url,
        clients=(
            ClientSettings("reader", hash_key(READER_KEY), (MERCHANT,)),
            ClientSettings("ops", hash_key(OPERATOR_KEY), ("*",), operator=True),
        ),
        webhook=WebhookSettings(HOOK_USER, Secret(HOOK_PASSWORD, "test")),
    )
    return replace(settings, **changes)


@pytest.fixture
async def gateway(
    make_proxy: ProxyFactory, simulator: TestServer, redis_server: RedisProcess
) -> Client:
    return await make_proxy(settings=secured(simulator, redis_server.url))


# --- callers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic("opk_wrong_key"),
        basic(READER_KEY, "a-password"),
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": "Bearer " + READER_KEY},
        {"Authorization": READER_KEY},
        basic(hash_key(READER_KEY)),  # the stored hash is not a key
    ],
    ids=["missing", "wrong", "password", "malformed", "bearer", "bare", "hash"],
)
async def test_bad_or_missing_credentials_get_401_and_no_upstream_call(
    gateway: Client, simulator_state: SimulatorState, headers: dict[str, str]
) -> None:
    resp = await gateway.get(f"/orders/{ORDER}", headers=headers)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Basic")
    assert (await resp.json())["error_code"] == "access_denied"
    assert simulator_state.total_calls == 0


@pytest.mark.parametrize("colon", [True, False], ids=["key-colon", "bare-key"])
async def test_client_key_is_accepted_the_way_sdks_send_an_api_key(
    gateway: Client, simulator_state: SimulatorState, colon: bool
) -> None:
    resp = await gateway.get(f"/orders/{ORDER}", headers=basic(READER_KEY, colon=colon))
    assert resp.status == 200
    # The caller's credentials are replaced by the merchant's Juspay key upstream.
    sent = simulator_state.requests[-1].headers["authorization"]
    assert sent == "Basic " + base64.b64encode(f"{API_KEY}:".encode()).decode()


async def test_a_remembered_client_key_still_meets_every_check_and_wrong_keys_are_not_kept(
    gateway: Client, simulator_state: SimulatorState
) -> None:
    auth = next(m for m in gateway.app.middlewares if isinstance(m, ClientKeyAuth))
    for _ in range(2):  # the second time the header is recognised as sent
        ok = await gateway.get(f"/orders/{ORDER}", headers=basic(READER_KEY))
        assert ok.status == 200
        # The reader key is limited to its merchant, remembered or not.
        other = await gateway.get(
            f"/orders/{ORDER}", headers={**basic(READER_KEY), "x-merchantid": OTHER_MERCHANT}
        )
        assert other.status == 403
        # And it is no operator key.
        purge = await gateway.delete(f"/cache/orders/{ORDER}", headers=basic(READER_KEY))
        assert purge.status == 403
    for n in range(50):
        wrong = await gateway.get(f"/orders/{ORDER}", headers=basic(f"opk_wrong_{n}"))
        assert wrong.status == 401
    assert list(auth._known.values()) == [c for c in auth._clients if c.name == "reader"]


async def test_the_remembered_keys_are_bounded_per_client(gateway: Client) -> None:
    auth = next(m for m in gateway.app.middlewares if isinstance(m, ClientKeyAuth))
    # Spellings of one key that all decode to it (the header's scheme in any case).
    for scheme in ("Basic", "basic", "BASIC", "bASIC", "BaSiC", "BAsic", "baSIC", "BASic", "basIC"):
        header = scheme + " " + base64.b64encode(f"{READER_KEY}:".encode()).decode()
        resp = await gateway.get(f"/orders/{ORDER}", headers={"Authorization": header})
        assert resp.status == 200
    assert len(auth._known) == KNOWN_HEADERS_PER_CLIENT * len(auth._clients)


async def test_a_client_cannot_reach_another_merchant(
    gateway: Client, simulator_state: SimulatorState
) -> None:
    resp = await gateway.get(
        f"/orders/{ORDER}", headers={**basic(READER_KEY), "x-merchantid": OTHER_MERCHANT}
    )
    assert resp.status == 403
    assert (await resp.json())["error_code"] == "merchant_not_allowed"
    assert simulator_state.total_calls == 0
    allowed = await gateway.get(
        f"/orders/{ORDER}", headers={**basic(OPERATOR_KEY), "x-merchantid": OTHER_MERCHANT}
    )
    assert allowed.status == 200
    assert simulator_state.requests[-1].headers["x-merchantid"] == OTHER_MERCHANT
    other = "Basic " + base64.b64encode(f"{OTHER_API_KEY}:".encode()).decode()
    assert simulator_state.requests[-1].headers["authorization"] == other


async def test_operator_routes_stay_open(gateway: Client) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert (await gateway.get(path)).status == 200, path


# --- purge ---------------------------------------------------------------------------------


async def test_operator_purge_drops_every_variant_of_the_order(
    gateway: Client, simulator_state: SimulatorState
) -> None:
    reader = basic(READER_KEY)
    for version in ("2023-06-30", "2021-01-01"):
        await gateway.get(f"/orders/{ORDER}", headers={**reader, "version": version})
        hit = await gateway.get(f"/orders/{ORDER}", headers={**reader, "version": version})
        assert hit.headers["X-Cache"] == "HIT"
    denied = await gateway.delete(f"/cache/orders/{ORDER}", headers=reader)
    assert denied.status == 403
    purged = await gateway.delete(f"/cache/orders/{ORDER}", headers=basic(OPERATOR_KEY))
    assert purged.status == 200
    assert await purged.json() == {
        "status": "purged",
        "merchant_id": MERCHANT,
        "order_id": ORDER,
        "entries": 2,
    }
    for version in ("2023-06-30", "2021-01-01"):
        after = await gateway.get(f"/orders/{ORDER}", headers={**reader, "version": version})
        assert after.headers["X-Cache"] == "MISS"


async def test_purge_without_operator_keys_is_refused(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy()  # anonymous loopback sidecar: no operator exists
    resp = await proxy.delete(f"/cache/orders/{ORDER}")
    assert resp.status == 403


# --- webhooks ------------------------------------------------------------------------------


def event(
    order: dict[str, object], name: str = "ORDER_SUCCEEDED", when: str = "2026-11-21T10:00:00Z"
) -> bytes:
    return json.dumps(
        {"id": "evt_V2_1", "event_name": name, "date_created": when, "content": {"order": order}}
    ).encode()


def charged(state: SimulatorState, order_id: str, **extra: object) -> dict[str, object]:
    return state.order_body(MERCHANT, order_id, "CHARGED", **extra)


async def test_a_webhook_invalidates_and_the_proxy_reads_the_order_from_juspay(
    gateway: Client, simulator_state: SimulatorState
) -> None:
    simulator_state.put_order(MERCHANT, "HOOK1", "CHARGED")
    assert (await gateway.get("/orders/HOOK1", headers=basic(READER_KEY))).headers[
        "X-Cache"
    ] == "MISS"
    # Juspay refunds the order, then tells us.
    refund = {"id": "rf1", "status": "SUCCESS", "amount": 1}
    simulator_state.put_order(MERCHANT, "HOOK1", "CHARGED", [refund])
    body = event(charged(simulator_state, "HOOK1", refunds=[refund]), "ORDER_REFUNDED")
    resp = await gateway.post(
        "/webhooks/juspay", data=body, headers=basic(HOOK_USER, HOOK_PASSWORD)
    )
    assert resp.status == 200
    assert await resp.json() == {"status": "ok", "result": "invalidated"}
    await gateway.app[ORDER_SERVICE].background.join()  # the refresh it started
    assert simulator_state.calls["HOOK1"] == 2
    hit = await gateway.get("/orders/HOOK1", headers=basic(READER_KEY))
    assert hit.headers["X-Cache"] == "HIT"
    assert (await hit.json())["refunds"][0]["status"] == "SUCCESS"


async def test_the_webhooks_own_copy_of_the_order_is_never_served(
    gateway: Client, simulator_state: SimulatorState
) -> None:
    simulator_state.put_order(MERCHANT, "HOOK2", "CHARGED", amount=10)
    # Whoever holds the webhook credentials cannot write an answer: only Juspay's counts.
    forged = event(charged(simulator_state, "HOOK2", amount=99_999, udf1="forged"))
    resp = await gateway.post(
        "/webhooks/juspay", data=forged, headers=basic(HOOK_USER, HOOK_PASSWORD)
    )
    assert (await resp.json())["result"] == "invalidated"
    await gateway.app[ORDER_SERVICE].background.join()
    served = await gateway.get("/orders/HOOK2", headers=basic(READER_KEY))
    assert served.headers["X-Cache"] == "HIT"  # what the refresh read from Juspay
    assert (await served.json())["amount"] == 10
    assert b"forged" not in await served.read()


async def test_a_replayed_older_webhook_never_brings_back_an_older_state(
    gateway: Client, simulator_state: SimulatorState
) -> None:
    creds = basic(HOOK_USER, HOOK_PASSWORD)
    refund = {"id": "rf1", "status": "SUCCESS", "amount": 1}
    simulator_state.put_order(MERCHANT, "HOOK3", "CHARGED", [refund])
    newer = event(charged(simulator_state, "HOOK3", refunds=[refund]), "ORDER_REFUNDED")
    older = event(charged(simulator_state, "HOOK3"), "ORDER_SUCCEEDED", "2026-11-21T09:00:00Z")
    for body in (newer, older, older, newer):  # replays, the same event twice included
        replay = await gateway.post("/webhooks/juspay", data=body, headers=creds)
        assert replay.status == 200
        assert (await replay.json())["result"] == "invalidated"
    await gateway.app[ORDER_SERVICE].background.join()
    served = await (await gateway.get("/orders/HOOK3", headers=basic(READER_KEY))).json()
    assert served["refunds"][0]["status"] == "SUCCESS"


async def test_two_webhooks_for_one_order_in_the_same_second_are_both_applied(
    gateway: Client, simulator_state: SimulatorState
) -> None:
    # Juspay's stamps have one-second resolution: the second event must not be "stale".
    creds = basic(HOOK_USER, HOOK_PASSWORD)
    same_second = "2026-11-21T10:00:00Z"
    simulator_state.put_order(MERCHANT, "HOOK4", "CHARGED")
    await gateway.get("/orders/HOOK4", headers=basic(READER_KEY))
    pending = {"id": "rf4", "status": "PENDING", "amount": 1}
    simulator_state.put_order(MERCHANT, "HOOK4", "CHARGED", [pending])
    first = event(charged(simulator_state, "HOOK4"), "ORDER_REFUNDED", same_second)
    assert (await gateway.post("/webhooks/juspay", data=first, headers=creds)).status == 200
    await gateway.app[ORDER_SERVICE].background.join()
    settled = {**pending, "status": "SUCCESS"}
    simulator_state.put_order(MERCHANT, "HOOK4", "CHARGED", [settled])
    second = event(charged(simulator_state, "HOOK4"), "ORDER_REFUNDED", same_second)
    resp = await gateway.post("/webhooks/juspay", data=second, headers=creds)
    assert (await resp.json())["result"] == "invalidated"
    await gateway.app[ORDER_SERVICE].background.join()
    served = await (await gateway.get("/orders/HOOK4", headers=basic(READER_KEY))).json()
    assert served["refunds"][0]["status"] == "SUCCESS"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 400),
        (b"[]", 400),
        (
            json.dumps(
                {"event_name": "ORDER_SUCCEEDED", "content": {"order": {"order_id": "../x"}}}
            ).encode(),
            400,
        ),
        (json.dumps({"event_name": "ORDER_SUCCEEDED", "content": {"order": [1]}}).encode(), 400),
        (b'{"event_name": "ORDER_SUCCEEDED", "pad": "' + b"x" * 300_000 + b'"}', 400),
    ],
    ids=["not-json", "array", "bad-order-id", "order-not-object", "oversized"],
)
async def test_bad_webhook_bodies_answer_400_and_change_nothing(
    gateway: Client, simulator_state: SimulatorState, body: bytes, status: int
) -> None:
    await gateway.get(f"/orders/{ORDER}", headers=basic(READER_KEY))
    resp = await gateway.post(
        "/webhooks/juspay", data=body, headers=basic(HOOK_USER, HOOK_PASSWORD)
    )
    assert resp.status == status
    still = await gateway.get(f"/orders/{ORDER}", headers=basic(READER_KEY))
    assert still.headers["X-Cache"] == "HIT"


async def test_unknown_events_are_acknowledged_and_counted(gateway: Client) -> None:
    # A known event that names no order, and an event whose name the proxy does not know.
    for name in ("MANDATE_ACTIVATED", "PAYOUT_SETTLED"):
        body = json.dumps({"id": "evt_2", "event_name": name, "content": {}}).encode()
        resp = await gateway.post(
            "/webhooks/juspay", data=body, headers=basic(HOOK_USER, HOOK_PASSWORD)
        )
        assert resp.status == 200
        assert (await resp.json())["result"] == "ignored"
    metrics = await (await gateway.get("/metrics")).text()
    assert (
        'order_proxy_webhook_events_total{event="mandate_activated",result="ignored"} 1.0'
        in metrics
    )
    assert 'order_proxy_webhook_events_total{event="other",result="ignored"} 1.0' in metrics
    assert 'order_proxy_webhook_unknown_events_total{family="other"} 1.0' in metrics


@pytest.mark.parametrize(
    "headers",
    [{}, basic(HOOK_USER, "wrong"), basic("someone", HOOK_PASSWORD), basic(READER_KEY)],
    ids=["missing", "wrong-password", "wrong-user", "client-key"],
)
async def test_unauthenticated_webhooks_are_refused(
    gateway: Client, simulator_state: SimulatorState, headers: dict[str, str]
) -> None:
    body = event(charged(simulator_state, "HOOK9"))
    resp = await gateway.post("/webhooks/juspay", data=body, headers=headers)
    assert resp.status == 401
    after = await gateway.get("/orders/HOOK9", headers=basic(READER_KEY))
    assert after.status == 400  # unknown to the simulator, and nothing was cached


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    payload=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(
                st.sampled_from(
                    ["id", "event_name", "content", "order", "order_id", "status", "x"]
                ),
                children,
                max_size=5,
            )
        ),
        max_leaves=20,
    )
)
async def test_webhook_never_fails_on_arbitrary_json(gateway: Client, payload: object) -> None:
    resp = await gateway.post(
        "/webhooks/juspay", data=json.dumps(payload), headers=basic(HOOK_USER, HOOK_PASSWORD)
    )
    assert resp.status in (200, 400)


# --- secrets -------------------------------------------------------------------------------


async def test_rotated_api_key_file_is_used_without_a_restart(
    make_proxy: ProxyFactory, simulator: TestServer, simulator_state: SimulatorState, tmp_path: Path
) -> None:
    key_file = tmp_path / "juspay-api-key"
    key_file.write_text(API_KEY + "\n")
    settings = make_settings(
        simulator.make_url(""),
        merchants=(MerchantSettings(MERCHANT, Secret(API_KEY, f"file:{key_file}"), key_file),),
        secret_refresh_seconds=0.0,
    )
    proxy = await make_proxy(settings=settings)
    assert (
        await proxy.get(f"/orders/{ORDER}?x=1", headers={"Cache-Control": "no-cache"})
    ).status == 200
    simulator_state.merchants[MERCHANT] = "rotated-key-2"  # Juspay now wants the new key
    refused = await proxy.get(f"/orders/{ORDER}", headers={"Cache-Control": "no-cache"})
    assert refused.status == 502
    key_file.write_text("rotated-key-2\n")  # Kubernetes updates the mounted secret
    ok = await proxy.get(f"/orders/{ORDER}", headers={"Cache-Control": "no-cache"})
    assert ok.status == 200


async def test_secrets_never_reach_logs_metrics_or_answers(
    make_proxy: ProxyFactory, simulator: TestServer, redis_server: RedisProcess
) -> None:
    buffer = io.StringIO()
    configure_logging("debug", "json", stream=buffer)
    try:
        proxy = await make_proxy(settings=secured(simulator, redis_server.url))
        seen = []
        for headers in (basic(READER_KEY), basic(OPERATOR_KEY), basic("opk_wrong"), {}):
            resp = await proxy.get(f"/orders/{ORDER}", headers=headers)
            seen.append(await resp.text())
        await proxy.post("/webhooks/juspay", data=b"{}", headers=basic(HOOK_USER, HOOK_PASSWORD))
        await proxy.post("/webhooks/juspay", data=b"{}", headers=basic(HOOK_USER, "bad"))
        seen.append(await (await proxy.get("/metrics")).text())
        seen.append(await (await proxy.get("/readyz")).text())
        seen.append(repr(proxy.app))
        logging.getLogger("aiohttp.server").warning("a stdlib line for good measure")
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
    captured = buffer.getvalue() + "".join(seen)
    assert re.search(r'"event": ?"request"', captured)  # the request lines were captured
    for secret in (API_KEY, OTHER_API_KEY, READER_KEY, OPERATOR_KEY, HOOK_PASSWORD):
        assert secret not in captured
    for encoded in (
        base64.b64encode(f"{API_KEY}:".encode()).decode(),
        base64.b64encode(f"{READER_KEY}:".encode()).decode(),
    ):
        assert encoded not in captured
    assert "test@gmail.com" not in buffer.getvalue()  # customer email from the sample order


# --- headers -------------------------------------------------------------------------------


async def test_only_allow_listed_headers_go_out(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy()
    resp = await proxy.get(f"/orders/{ORDER}")
    assert "Server" not in resp.headers
    allowed = {
        "content-type", "content-length", "x-cache", "cache-status", "etag", "cache-control",
        "x-request-id", "age", "date",
    }  # fmt: skip
    assert {h.lower() for h in resp.headers} <= allowed


async def test_oversized_request_lines_and_headers_are_refused(make_proxy: ProxyFactory) -> None:
    from tests.support.rawhttp import raw_get  # noqa: PLC0415

    proxy = await make_proxy()
    assert proxy.server.host is not None
    assert proxy.server.port is not None
    long_line = await raw_get(proxy.server.host, proxy.server.port, "/orders/" + "a" * 9000)
    assert long_line.status in (400, 414)
    big_header = await raw_get(
        proxy.server.host, proxy.server.port, f"/orders/{ORDER}", {"x-routing-id": "r" * 9000}
    )
    assert big_header.status in (400, 431)


def test_anonymous_gateway_is_refused_at_start_up() -> None:
    from proxy.config import SettingsError, load_settings  # noqa: PLC0415

    env = {"JUSPAY_MERCHANT_ID": "m1", "JUSPAY_API_KEY": "k", "PROXY_HOST": "0.0.0.0"}  # noqa: S104
    with pytest.raises(SettingsError) as info:
        load_settings(env)
    assert str(info.value).startswith("PROXY_ALLOW_ANONYMOUS")
    assert load_settings({**env, "PROXY_ALLOW_ANONYMOUS": "true"}).allow_anonymous
