"""Juspay's webhooks end to end: JWT webhooks, each merchant's own credentials, every family.

Real keys are made for the session; tokens are built by jwcrypto (not the proxy's JOSE
library) and by Juspay's own Node SDK, and posted to a real proxy in front of the simulator
and a real Redis. "Nothing changed" is checked the hard way: the cached order is still a HIT
and the simulator saw no further read.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.appkeys import ORDER_SERVICE
from proxy.config import SettingsError, load_settings
from proxy.config.secrets import Secret
from proxy.config.settings import (
    JwtWebhookSettings,
    MerchantSettings,
    Settings,
    WebhookSettings,
)
from proxy.devtools.simulator import SimulatorState, Stage
from proxy.web import webhook_jwt as jw
from tests.conftest import (
    API_KEY,
    MERCHANT,
    OTHER_API_KEY,
    OTHER_MERCHANT,
    ProxyFactory,
    make_settings,
)
from tests.support.metrics import metric
from tests.support.processes import RedisProcess
from tests.web.test_jwt_webhooks import (
    KID,
    Keys,
    _pem_pair,
    b64,
    body_of,
    encrypt,
    node_sdk_token,
    sign,
)

Client = TestClient[web.Request, web.Application]
A_USER, A_PASSWORD = "hooks_a", "a-password-81c2"
B_USER, B_PASSWORD = "hooks_b", "b-password-4e07"
SHARED_USER, SHARED_PASSWORD = "juspay", "shared-password-9d3f"
THIRD_MERCHANT = "merchant_c"  # served by the shared pair only (the simulator does not know it)


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


A_CREDS = basic(A_USER, A_PASSWORD)
B_CREDS = basic(B_USER, B_PASSWORD)
SHARED_CREDS = basic(SHARED_USER, SHARED_PASSWORD)


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return Keys(_pem_pair(), _pem_pair(), _pem_pair(), _pem_pair(), tmp_path_factory.mktemp("jk"))


def jwt_settings(keys: Keys) -> JwtWebhookSettings:
    return JwtWebhookSettings(
        private_key_files=((KID, keys.file("merchant-a.pem", keys.merchant.private)),),
        public_key_files=((KID, keys.file("juspay.pem", keys.juspay.public)),),
    )


def hook_settings(
    simulator: TestServer,
    redis_url: str,
    keys: Keys | None = None,
    *,
    a_basic: bool = True,
    shared: bool = False,
) -> Settings:
    """merchant_a: its own Basic pair and/or JWT keys; merchant_b: its own Basic pair;
    merchant_c (with `shared`): only the shared pair."""
    merchants = [
        MerchantSettings(
            MERCHANT,
            Secret(API_KEY, "test"),
            webhook=WebhookSettings(A_USER, Secret(A_PASSWORD, "test")) if a_basic else None,
            jwt=jwt_settings(keys) if keys is not None else None,
        ),
        MerchantSettings(
            OTHER_MERCHANT,
            Secret(OTHER_API_KEY, "test"),
            webhook=WebhookSettings(B_USER, Secret(B_PASSWORD, "test")),
        ),
    ]
    if shared:
        merchants.append(MerchantSettings(THIRD_MERCHANT, Secret("key_c_000111", "test")))
    return make_settings(
        simulator.make_url(""),
        redis_url=redis_url,
        merchants=tuple(merchants),
        webhook=WebhookSettings(SHARED_USER, Secret(SHARED_PASSWORD, "test")) if shared else None,
    )


def event(
    order_id: str | None,
    *,
    merchant: str | None = MERCHANT,
    name: str = "ORDER_REFUNDED",
    age: float = 5.0,
    content: dict[str, Any] | None = None,
) -> bytes:
    """A webhook event as Juspay sends it, stamped `age` seconds ago (real time)."""
    created = dt.datetime.fromtimestamp(time.time() - age, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if content is None:
        order: dict[str, Any] = {"order_id": order_id, "status": "CHARGED", "amount": 10.0}
        if merchant is not None:
            order["merchant_id"] = merchant
        content = {"order": order}
    body = {"id": "evt_V2_0011", "event_name": name, "date_created": created, "content": content}
    return json.dumps(body).encode()


def jwt_body(
    keys: Keys,
    payload: bytes,
    *,
    signer: bytes | None = None,
    recipient: bytes | None = None,
    **header: object,
) -> bytes:
    """Signed by Juspay (or `signer`), encrypted to merchant_a (or `recipient`), by jwcrypto."""
    signed = sign(payload, signer or keys.juspay.private)
    return body_of(encrypt(signed, recipient or keys.merchant.public, **header))


def refusals(client: Client, reason: str) -> float:
    return metric(client, "order_proxy_auth_failures_total", reason=reason)


async def x_cache(client: Client, order_id: str, merchant: str = MERCHANT) -> str:
    resp = await client.get(f"/orders/{order_id}", headers={"x-merchantid": merchant})
    assert resp.status == 200, await resp.text()
    return resp.headers["X-Cache"]


async def cache_order(
    client: Client, state: SimulatorState, order_id: str, merchant: str = MERCHANT
) -> None:
    state.put_order(merchant, order_id, "CHARGED")
    assert await x_cache(client, order_id, merchant) == "MISS"
    assert await x_cache(client, order_id, merchant) == "HIT"


async def settle(client: Client) -> None:
    await client.app[ORDER_SERVICE].background.join()


def reads(state: SimulatorState, order_id: str, merchant: str) -> int:
    """Upstream reads of one merchant's order, as the simulator saw them."""
    return sum(
        1
        for r in state.requests
        if r.path == f"/orders/{order_id}" and r.headers.get("x-merchantid") == merchant
    )


async def assert_unchanged(
    client: Client, state: SimulatorState, order_id: str, calls: int, merchant: str = MERCHANT
) -> None:
    """No refresh and no invalidation: `calls` reads so far, and the entry is still a HIT."""
    await settle(client)
    assert reads(state, order_id, merchant) == calls
    assert await x_cache(client, order_id, merchant) == "HIT"


async def assert_invalidated(
    client: Client, state: SimulatorState, order_id: str, calls: int, merchant: str = MERCHANT
) -> None:
    """`calls` reads so far, the last one the refresh the webhook started, whose answer is
    now the cached entry."""
    await settle(client)
    assert reads(state, order_id, merchant) == calls
    assert await x_cache(client, order_id, merchant) == "HIT"


async def post(client: Client, body: bytes, headers: dict[str, str] | None = None) -> Any:
    resp = await client.post("/webhooks/juspay", data=body, headers=headers or {})
    return resp.status, await resp.json()


# --- JWT webhooks -------------------------------------------------------------------------


@pytest.fixture
async def jwt_proxy(
    make_proxy: ProxyFactory, simulator: TestServer, redis_server: RedisProcess, keys: Keys
) -> Client:
    """merchant_a takes JWT webhooks only; merchant_b Basic with its own pair."""
    return await make_proxy(
        settings=hook_settings(simulator, redis_server.url, keys, a_basic=False)
    )


@pytest.fixture
async def migrating_proxy(
    make_proxy: ProxyFactory, simulator: TestServer, redis_server: RedisProcess, keys: Keys
) -> Client:
    """merchant_a with its own Basic pair and JWT keys (a migration); merchant_b Basic."""
    settings = hook_settings(simulator, redis_server.url, keys)
    # Room for the hostile bodies below (deep nesting needs more than the default 256 KiB).
    server = replace(settings.server, max_request_body_bytes=1 << 20)
    return await make_proxy(settings=replace(settings, server=server))


@pytest.mark.parametrize(
    "header",
    [{"alg": "RSA-OAEP-256"}, {"alg": "RSA-OAEP", "cty": "JWT"}],
    ids=["rsa-oaep-256", "rsa-oaep"],
)
async def test_a_jwt_webhook_built_by_jwcrypto_invalidates_the_order(
    jwt_proxy: Client, simulator_state: SimulatorState, keys: Keys, header: dict[str, str]
) -> None:
    await cache_order(jwt_proxy, simulator_state, "JWT1")
    refund = {"id": "rf1", "status": "SUCCESS", "amount": 1}
    simulator_state.put_order(MERCHANT, "JWT1", "CHARGED", [refund])
    status, answer = await post(jwt_proxy, jwt_body(keys, event("JWT1"), **header))
    assert (status, answer) == (200, {"status": "ok", "result": "invalidated"})
    await assert_invalidated(jwt_proxy, simulator_state, "JWT1", 2)
    served = await jwt_proxy.get("/orders/JWT1")
    assert (await served.json())["refunds"][0]["status"] == "SUCCESS"
    assert (
        metric(
            jwt_proxy,
            "order_proxy_webhook_events_total",
            event="order_refunded",
            result="invalidated",
        )
        == 1
    )


async def test_jwt_webhooks_from_juspays_node_sdk_invalidate_the_order(
    jwt_proxy: Client, simulator_state: SimulatorState, keys: Keys, tmp_path: Path
) -> None:
    await cache_order(jwt_proxy, simulator_state, "SDK1")
    sdk = node_sdk_token(keys, tmp_path, event("SDK1", name="ORDER_SUCCEEDED"))
    compact = ".".join(sdk[p] for p in ("header", "encryptedKey", "iv", "encryptedPayload", "tag"))
    assert json.loads(base64.urlsafe_b64decode(sdk["header"] + "=="))["alg"] == "RSA-OAEP"
    status, answer = await post(jwt_proxy, body_of(compact))
    assert (status, answer["result"]) == (200, "invalidated")
    await assert_invalidated(jwt_proxy, simulator_state, "SDK1", 2)
    # The SDK's own JSON spelling of the same JWE is the same webhook: already handled.
    status, answer = await post(jwt_proxy, body_of(sdk))
    assert (status, answer["result"]) == (200, "duplicate")
    # A new event from the SDK in that spelling takes effect.
    fresh = node_sdk_token(keys, tmp_path, event("SDK1", name="ORDER_REFUNDED", age=2))
    status, answer = await post(jwt_proxy, body_of(fresh))
    assert (status, answer["result"]) == (200, "invalidated")
    await assert_invalidated(jwt_proxy, simulator_state, "SDK1", 3)


async def test_a_replayed_jwt_webhook_is_acknowledged_as_a_duplicate_and_changes_nothing(
    jwt_proxy: Client, simulator_state: SimulatorState, keys: Keys
) -> None:
    payload = event("REPLAY1")
    body = jwt_body(keys, payload)
    await cache_order(jwt_proxy, simulator_state, "REPLAY1")
    assert (await post(jwt_proxy, body))[1]["result"] == "invalidated"
    await assert_invalidated(jwt_proxy, simulator_state, "REPLAY1", 2)
    # Juspay retries (or someone replays) the very same token, and the same signed payload
    # in a fresh JWE: both are answered 200 (the first copy took effect), the cache untouched.
    rewrapped = body_of(encrypt(sign(payload, keys.juspay.private), keys.merchant.public))
    assert rewrapped != body
    for replay in (body, rewrapped):
        assert await post(jwt_proxy, replay) == (200, {"status": "ok", "result": "duplicate"})
    await assert_unchanged(jwt_proxy, simulator_state, "REPLAY1", 2)
    # Counted as the event they carry, like its first copy (not as "other").
    duplicates = {
        label: metric(
            jwt_proxy, "order_proxy_webhook_events_total", event=label, result="duplicate"
        )
        for label in ("order_refunded", "other")
    }
    assert duplicates == {"order_refunded": 2, "other": 0}


def _tampered(keys: Keys) -> bytes:
    token = json.loads(jwt_body(keys, event("REFUSED1")))["JWT"]
    parts = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(parts[3] + "=="))
    raw[len(raw) // 2] ^= 0x01
    parts[3] = b64(bytes(raw))
    return body_of(".".join(parts))


def _unsigned(keys: Keys) -> bytes:
    header = b64(json.dumps({"alg": "none", "kid": KID}).encode())
    return body_of(encrypt(f"{header}.{b64(event('REFUSED1'))}.", keys.merchant.public))


REFUSED: list[tuple[str, Callable[[Keys], bytes], str]] = [
    (
        "wrong-key",
        lambda k: jwt_body(k, event("REFUSED1"), recipient=k.other_merchant.public),
        jw.DECRYPT_FAILED,
    ),
    ("wrong-kid", lambda k: jwt_body(k, event("REFUSED1"), kid="key_not_ours"), jw.UNKNOWN_KID),
    ("tampered-ciphertext", _tampered, jw.DECRYPT_FAILED),
    (
        "bad-signature",
        lambda k: jwt_body(k, event("REFUSED1"), signer=k.impostor.private),
        jw.BAD_SIGNATURE,
    ),
    ("expired", lambda k: jwt_body(k, event("REFUSED1", age=2 * 86400)), jw.EXPIRED),
    ("from-the-future", lambda k: jwt_body(k, event("REFUSED1", age=-3600)), jw.BAD_TIMESTAMP),
    ("alg-none", _unsigned, jw.BAD_ALGORITHM),
    ("rsa1_5", lambda k: jwt_body(k, event("REFUSED1"), alg="RSA1_5"), jw.BAD_ALGORITHM),
    (
        "bare-jws",
        lambda k: body_of(sign(event("REFUSED1"), k.juspay.private)),
        jw.NOT_ENCRYPTED,
    ),
    ("not-a-token", lambda k: body_of("a.b.c.d"), jw.MALFORMED),
    ("jwt-member-not-a-token", lambda k: b'{"JWT": 5}', jw.MALFORMED),
]


@pytest.mark.parametrize(
    ("make_body", "reason"), [(b, r) for _, b, r in REFUSED], ids=[i for i, _, _ in REFUSED]
)
async def test_a_jwt_webhook_that_fails_any_check_is_refused_and_changes_nothing(
    jwt_proxy: Client,
    simulator_state: SimulatorState,
    keys: Keys,
    make_body: Callable[[Keys], bytes],
    reason: str,
) -> None:
    await cache_order(jwt_proxy, simulator_state, "REFUSED1")
    # Basic credentials (merchant_b's, valid) change nothing for a JWT body: the token decides.
    for headers in ({}, B_CREDS):
        resp = await jwt_proxy.post("/webhooks/juspay", data=make_body(keys), headers=headers)
        assert resp.status == 401
        answer = await resp.json()
        assert answer["error_code"] == "access_denied"
        assert reason in answer["error_message"]
    await assert_unchanged(jwt_proxy, simulator_state, "REFUSED1", 1)
    assert refusals(jwt_proxy, f"jwt_{reason}") == 2


async def test_a_jwt_webhook_may_name_only_its_own_merchants_orders(
    jwt_proxy: Client, simulator_state: SimulatorState, keys: Keys
) -> None:
    await cache_order(jwt_proxy, simulator_state, "B1", OTHER_MERCHANT)
    # A good token of merchant_a's keyring whose event names merchant_b's order.
    status, answer = await post(jwt_proxy, jwt_body(keys, event("B1", merchant=OTHER_MERCHANT)))
    assert status == 403
    assert answer["error_code"] == "merchant_not_allowed"
    await assert_unchanged(jwt_proxy, simulator_state, "B1", 1, OTHER_MERCHANT)
    assert refusals(jwt_proxy, "webhook_wrong_merchant") == 1
    # ... and not being handled, it is not remembered: no "duplicate" for it later.
    status, _ = await post(jwt_proxy, jwt_body(keys, event("B1", merchant=OTHER_MERCHANT)))
    assert status == 403


async def test_a_jwt_merchant_refuses_plain_webhooks_while_others_keep_basic(
    make_proxy: ProxyFactory,
    simulator: TestServer,
    simulator_state: SimulatorState,
    redis_server: RedisProcess,
    keys: Keys,
) -> None:
    settings = hook_settings(simulator, redis_server.url, keys, a_basic=False, shared=True)
    proxy = await make_proxy(settings=settings)
    await cache_order(proxy, simulator_state, "PLAIN1")
    # Once JWT is on, Juspay encrypts every webhook of the merchant: a plain one is forged.
    for headers, status, reason in (
        ({}, 401, "webhook_credentials"),
        (SHARED_CREDS, 403, "webhook_jwt_required"),  # the shared pair is not its pair
        (B_CREDS, 403, "webhook_jwt_required"),
        (basic(A_USER, A_PASSWORD), 401, "webhook_credentials"),  # no longer configured
    ):
        assert (await post(proxy, event("PLAIN1"), headers))[0] == status
        assert refusals(proxy, reason) >= 1
    await assert_unchanged(proxy, simulator_state, "PLAIN1", 1)
    # merchant_b keeps its Basic pair.
    await cache_order(proxy, simulator_state, "PLAINB", OTHER_MERCHANT)
    status, answer = await post(proxy, event("PLAINB", merchant=OTHER_MERCHANT), B_CREDS)
    assert (status, answer["result"]) == (200, "invalidated")
    await assert_invalidated(proxy, simulator_state, "PLAINB", 2, OTHER_MERCHANT)


async def test_during_a_migration_basic_and_jwt_both_work(
    migrating_proxy: Client, simulator_state: SimulatorState, keys: Keys
) -> None:
    proxy = migrating_proxy
    await cache_order(proxy, simulator_state, "MIG1")
    assert (await post(proxy, event("MIG1"), A_CREDS))[1]["result"] == "invalidated"
    await assert_invalidated(proxy, simulator_state, "MIG1", 2)
    assert (await post(proxy, jwt_body(keys, event("MIG1"))))[1]["result"] == "invalidated"
    await assert_invalidated(proxy, simulator_state, "MIG1", 3)


async def test_a_jwt_webhook_refused_with_503_is_taken_when_retried(
    make_proxy: ProxyFactory,
    simulator: TestServer,
    simulator_state: SimulatorState,
    own_redis: RedisProcess,
    keys: Keys,
) -> None:
    proxy = await make_proxy(settings=hook_settings(simulator, own_redis.url, keys, a_basic=False))
    await cache_order(proxy, simulator_state, "RETRY1")
    body = jwt_body(keys, event("RETRY1"))
    admin = aioredis.Redis.from_url(own_redis.url)
    try:
        await admin.execute_command("CLIENT", "PAUSE", 10_000, "WRITE")
        refused = await proxy.post("/webhooks/juspay", data=body)
        await admin.execute_command("CLIENT", "UNPAUSE")
    finally:
        await admin.aclose()
    assert refused.status == 503
    assert refused.headers["Retry-After"] == "5"
    # Not applied, so not remembered: Juspay's retry of the same token takes effect.
    assert (await post(proxy, body))[1]["result"] == "invalidated"
    await assert_invalidated(proxy, simulator_state, "RETRY1", 2)
    assert (await post(proxy, body))[1]["result"] == "duplicate"


def _segment(value: object) -> str:
    return b64(json.dumps(value).encode()) if not isinstance(value, bytes) else b64(value)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    header=st.fixed_dictionaries(
        {},
        optional={
            "alg": st.sampled_from(["RSA-OAEP", "RSA-OAEP-256", "RSA1_5", "none", "dir", ""]),
            "enc": st.sampled_from(["A256GCM", "A128GCM", "A256CBC-HS512", 7]),
            "kid": st.sampled_from([KID, "key_other", "", None, 12, "\u0000"]),
            "zip": st.just("DEF"),
            "crit": st.just(["exp"]),
            "cty": st.sampled_from(["JWT", None]),
        },
    ),
    parts=st.lists(st.binary(max_size=300), min_size=4, max_size=4),
    raw_header=st.none() | st.text(max_size=40),
)
async def test_fuzzed_jwt_webhooks_are_a_401_and_never_a_server_error(
    jwt_proxy: Client, header: dict[str, object], parts: list[bytes], raw_header: str | None
) -> None:
    first = raw_header if raw_header is not None else _segment(header)
    token = ".".join([first, *(b64(p) for p in parts)])
    status, answer = await post(jwt_proxy, body_of(token))
    assert status == 401
    assert answer["error_code"] == "access_denied"


# --- per-merchant Basic credentials -------------------------------------------------------


async def test_each_merchants_basic_pair_touches_only_its_own_orders(
    make_proxy: ProxyFactory,
    simulator: TestServer,
    simulator_state: SimulatorState,
    redis_server: RedisProcess,
) -> None:
    proxy = await make_proxy(settings=hook_settings(simulator, redis_server.url, shared=True))
    await cache_order(proxy, simulator_state, "A1")
    await cache_order(proxy, simulator_state, "B1", OTHER_MERCHANT)

    # merchant_a's pair naming merchant_b's order, and the other way round: refused.
    for body, creds in (
        (event("B1", merchant=OTHER_MERCHANT), A_CREDS),
        (event("A1", merchant=MERCHANT), B_CREDS),
        (event("A1", merchant=MERCHANT), SHARED_CREDS),  # merchant_a has a pair of its own
        (
            event(
                "B1",
                merchant=OTHER_MERCHANT,
                name="MANDATE_REVOKED",
                content={
                    "mandate": {
                        "mandate_id": "md1",
                        "merchant_id": OTHER_MERCHANT,
                        "order_id": "B1",
                    }
                },
            ),
            A_CREDS,
        ),
    ):
        status, answer = await post(proxy, body, creds)
        assert status == 403
        assert answer["error_code"] == "merchant_not_allowed"
    assert refusals(proxy, "webhook_wrong_merchant") == 4
    # Unnamed merchant with merchant_a's pair: the default merchant, i.e. merchant_a's "B1".
    assert (await post(proxy, event("B1", merchant=None), A_CREDS))[1]["result"] == "invalidated"
    await assert_unchanged(proxy, simulator_state, "A1", 1)
    await assert_unchanged(proxy, simulator_state, "B1", 1, OTHER_MERCHANT)
    # Wrong or missing passwords.
    for creds in ({}, basic(A_USER, B_PASSWORD), basic(B_USER, A_PASSWORD), basic(A_USER, "")):
        assert (await post(proxy, event("A1"), creds))[0] == 401
    await assert_unchanged(proxy, simulator_state, "A1", 1)

    # Each pair for its own merchant: applied. An event naming no merchant, with merchant_b's
    # pair, is merchant_b's (the only merchant that pair speaks for).
    assert (await post(proxy, event("A1"), A_CREDS))[1]["result"] == "invalidated"
    await assert_invalidated(proxy, simulator_state, "A1", 2)
    assert (await post(proxy, event("B1", merchant=None), B_CREDS))[1]["result"] == "invalidated"
    await assert_invalidated(proxy, simulator_state, "B1", 2, OTHER_MERCHANT)
    # The shared pair speaks for merchant_c, the one merchant without a pair of its own.
    status, answer = await post(proxy, event("C1", merchant=THIRD_MERCHANT), SHARED_CREDS)
    assert (status, answer["result"]) == (200, "invalidated")
    # A merchant this proxy does not serve: nothing to do, acknowledged.
    status, answer = await post(proxy, event("Z1", merchant="merchant_z"), A_CREDS)
    assert (status, answer["result"]) == (200, "unknown_merchant")


async def test_the_endpoint_is_off_without_any_pair_or_key(
    make_proxy: ProxyFactory, simulator_state: SimulatorState
) -> None:
    proxy = await make_proxy()
    await cache_order(proxy, simulator_state, "OFF1")
    for headers in ({}, A_CREDS, SHARED_CREDS):
        assert (await post(proxy, event("OFF1"), headers))[0] == 401
    assert (await post(proxy, b'{"JWT": "a.b.c.d.e"}'))[0] == 401
    await assert_unchanged(proxy, simulator_state, "OFF1", 1)


# --- every event family -------------------------------------------------------------------

FAMILY_CASES: list[tuple[str, str, dict[str, Any], str, str | None]] = [
    # (id, event name, content, result, name class counted as unknown)
    ("order", "ORDER_SUCCEEDED", {"order": {"order_id": "FAM1"}}, "invalidated", None),
    ("txn", "TXN_CREATED", {"order": {"order_id": "FAM1"}}, "invalidated", None),
    (
        "auto-refund",
        "AUTO_REFUND_SUCCEEDED",
        {"order": {"order_id": "FAM1", "merchant_id": MERCHANT}},
        "invalidated",
        None,
    ),
    (
        "mandate",
        "MANDATE_ACTIVATED",
        {"mandate": {"mandate_id": "md1", "mandate_status": "ACTIVE", "order_id": "FAM1"}},
        "invalidated",
        None,
    ),
    (
        "mandate-order",
        "MANDATE_PAUSED",
        {
            "mandate": {"mandate_id": "md1", "mandate_status": "PAUSED"},
            "order": {"order_id": "FAM1"},
        },
        "invalidated",
        None,
    ),
    (
        "mandate-no-order",
        "MANDATE_REVOKED",
        {"mandate": {"mandate_id": "md1", "mandate_status": "REVOKED", "merchant_id": MERCHANT}},
        "ignored",
        None,
    ),
    (
        "chargeback-txn",
        "CHARGEBACK_RECEIVED",
        {"chargeback": {"id": "cb1", "dispute_status": "RECEIVED", "txn": {"order_id": "FAM1"}}},
        "invalidated",
        None,
    ),
    (
        "chargeback",
        "CHARGEBACK_RESOLVED_IN_MERCHANT_FAVOUR",
        {"chargeback": {"id": "cb1", "order_id": "FAM1"}},
        "invalidated",
        None,
    ),
    (
        "chargeback-odd",
        "CHARGEBACK_EXPIRED",
        {"chargeback": {"id": "cb1", "txn": "txn_77", "order_id": 5}},
        "ignored",
        None,
    ),
    ("txn-new", "TXN_CHARGED", {"txn": {"order_id": "FAM1"}}, "invalidated", "txn"),
    (
        "order-new",
        "ORDER_PARTIALLY_CAPTURED",
        {"order": {"order_id": "FAM1"}},
        "invalidated",
        "order",
    ),
    (
        "notification",
        "NOTIFICATION_SUCCEEDED",
        {"mandate": {"order_id": "FAM1"}},
        "ignored",
        "notification",
    ),
    ("other", "PAYOUT_SETTLED", {"order": {"order_id": "FAM1"}}, "ignored", "other"),
    ("no-name", "", {"order": {"order_id": "FAM1"}}, "ignored", "other"),
]


@pytest.mark.parametrize(
    "case", [case[1:] for case in FAMILY_CASES], ids=[c[0] for c in FAMILY_CASES]
)
async def test_every_event_family_is_read_for_its_order_or_acknowledged(
    migrating_proxy: Client,
    simulator_state: SimulatorState,
    case: tuple[str, dict[str, Any], str, str | None],
) -> None:
    name, content, result, unknown = case
    proxy = migrating_proxy
    await cache_order(proxy, simulator_state, "FAM1")
    if name.startswith("CHARGEBACK_"):
        # Juspay's order holds the chargeback its event is about (a read without one lags
        # the event: see test_webhook_lower_bound.py).
        body = simulator_state.order_body(MERCHANT, "FAM1", "CHARGED")
        chargeback = {"id": "cb1", "dispute_status": "OPEN", "date_resolved": None}
        simulator_state.script(MERCHANT, "FAM1", [Stage({**body, "chargebacks": [chargeback]})])
    status, answer = await post(proxy, event(None, name=name, content=content), A_CREDS)
    assert (status, answer) == (200, {"status": "ok", "result": result})
    if result == "invalidated":
        await assert_invalidated(proxy, simulator_state, "FAM1", 2)
    else:
        await assert_unchanged(proxy, simulator_state, "FAM1", 1)
    label = name.lower() if unknown is None else "other"
    assert metric(proxy, "order_proxy_webhook_events_total", event=label, result=result) == 1
    if unknown is not None:
        assert metric(proxy, "order_proxy_webhook_unknown_events_total", family=unknown) == 1


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[1, 2]",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"event_name": "ORDER_SUCCEEDED", "content": {"order": {"order_id": "../x"}}}',
        b'{"event_name": "MANDATE_ACTIVATED", "content": {"mandate": {"order_id": "a/b"}}}',
        b'{"event_name": "ORDER_SUCCEEDED", "content": '
        + b'{"x": ' * 50_000
        + b"1"
        + b"}" * 50_001,
    ],
    ids=["not-json", "array", "deep-array", "bad-order-id", "bad-mandate-order-id", "deep-object"],
)
async def test_hostile_bodies_are_a_400_and_change_nothing(
    migrating_proxy: Client, simulator_state: SimulatorState, body: bytes
) -> None:
    proxy = migrating_proxy
    await cache_order(proxy, simulator_state, "HOSTILE1")
    assert (await post(proxy, body, A_CREDS))[0] == 400
    assert (await post(proxy, body))[0] == 401  # without credentials: not even parsed as one
    await assert_unchanged(proxy, simulator_state, "HOSTILE1", 1)


# --- settings -----------------------------------------------------------------------------


def _config(tmp_path: Path, keys: Keys, second_kid: str) -> dict[str, str]:
    (tmp_path / "a.pem").write_bytes(keys.merchant.private)
    (tmp_path / "b.pem").write_bytes(keys.other_merchant.private)
    (tmp_path / "j.pem").write_bytes(keys.juspay.public)
    path = tmp_path / "proxy.toml"
    path.write_text(
        "[[merchants]]\n"
        'id = "m_a"\napi_key_env = "KEY_A"\n'
        f'jwt_private_key_files = {{ {KID} = "a.pem" }}\n'
        f'jwt_public_key_files = {{ {KID} = "j.pem" }}\n'
        "[[merchants]]\n"
        'id = "m_b"\napi_key_env = "KEY_B"\n'
        f'jwt_private_key_files = {{ {second_kid} = "b.pem" }}\n'
        f'jwt_public_key_files = {{ {KID} = "j.pem" }}\n'
    )
    return {"PROXY_CONFIG_FILE": str(path), "KEY_A": "key_a_123", "KEY_B": "key_b_123"}


def test_jwt_key_ids_must_be_unique_across_merchants(keys: Keys, tmp_path: Path) -> None:
    # Juspay's signing key may be shared (the same public kid); the merchants' own kids not.
    settings = load_settings(_config(tmp_path, keys, "key_m_b_2026"))
    assert [m.jwt is not None for m in settings.merchants] == [True, True]
    with pytest.raises(SettingsError) as info:
        load_settings(_config(tmp_path, keys, KID))
    message = str(info.value)
    assert message.startswith(f"PROXY_CONFIG_FILE merchants[1].jwt_private_key_files.{KID}: ")
    assert "unique across merchants" in message
    assert "'m_a'" in message
    assert "\n" not in message


def test_the_environment_merchant_keeps_the_shared_pair_while_migrating(keys: Keys) -> None:
    env = {
        "JUSPAY_MERCHANT_ID": "m1",
        "JUSPAY_API_KEY": "key_m1_123",
        "JUSPAY_WEBHOOK_USERNAME": "juspay",
        "JUSPAY_WEBHOOK_PASSWORD": "pw-123",
    }
    jwt = {
        "JUSPAY_WEBHOOK_JWT_KID": KID,
        "JUSPAY_WEBHOOK_JWT_PRIVATE_KEY_FILE": str(keys.file("env-a.pem", keys.merchant.private)),
        "JUSPAY_WEBHOOK_JWT_PUBLIC_KEY_FILE": str(keys.file("env-j.pem", keys.juspay.public)),
    }
    # Basic only: the shared pair covers the merchant, which needs no pair of its own.
    assert load_settings(env).merchants[0].webhook is None
    # Both: the pair is the merchant's own, so plain webhooks still count during the migration.
    migrating = load_settings({**env, **jwt})
    assert migrating.merchants[0].webhook is not None
    assert migrating.merchants[0].webhook.username == "juspay"
    # JWT only once the pair is removed.
    done = {k: v for k, v in {**env, **jwt}.items() if not k.startswith("JUSPAY_WEBHOOK_PASS")}
    done.pop("JUSPAY_WEBHOOK_USERNAME")
    only_jwt = load_settings(done).merchants[0]
    assert only_jwt.webhook is None
    assert only_jwt.jwt is not None


def _forged(alg: str) -> bytes:
    """A JWE naming merchant_a's kid that no key opens (random key, iv, ciphertext, tag)."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": alg, "enc": "A256GCM", "kid": KID}).encode())
    parts = [b64(os.urandom(n)) for n in (256, 12, 64, 16)]
    return json.dumps({"JWT": ".".join([header, *parts])}).encode()


async def test_forged_tokens_cost_a_bounded_number_of_decryptions_and_junk_costs_none(
    make_proxy: ProxyFactory, simulator: TestServer, redis_server: RedisProcess, keys: Keys
) -> None:
    settings = hook_settings(simulator, redis_server.url, keys, a_basic=False)
    server = replace(settings.server, jwt_max_per_second=2.0)
    proxy = await make_proxy(settings=replace(settings, server=server))
    # Refused by the cheap checks (algorithm): no decryption, so never over the bound.
    for _ in range(10):
        status, body = await post(proxy, _forged("none"))
        assert (status, body["error_code"]) == (401, "access_denied")
    # Past the cheap checks: a burst of two decryptions (and the odd one as time passes),
    # then 503 with Retry-After at once.
    answers = [await post(proxy, _forged("RSA-OAEP-256")) for _ in range(10)]
    statuses = [status for status, _ in answers]
    assert 2 <= statuses.count(401) <= 4, statuses
    assert {body["error_code"] for status, body in answers if status == 503} == {"overloaded"}
    busy = metric(proxy, "order_proxy_connections_refused_total", reason="jwt_busy")
    assert busy == statuses.count(503) > 0
