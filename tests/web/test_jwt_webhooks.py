"""Juspay's JWT webhooks: tokens from another JOSE library and from Juspay's own Node SDK."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwcrypto import jwe as cjwe
from jwcrypto import jwk as cjwk
from jwcrypto import jws as cjws

from proxy.config import SettingsError, keyfiles, load_settings
from proxy.web import webhook_jwt as jw
from proxy.web.webhook_jwt import JwtKeyring, WebhookTokenError

NOW = 1_790_000_000.0  # the keyrings' clock
KID = "key_ccccda97e8b4d1bad6ca72c1"  # the kid of the merchant's JWT key (Juspay's sample style)
NODE_DIR = Path(__file__).resolve().parents[1] / "node"


@dataclass(frozen=True)
class Pem:
    private: bytes
    public: bytes


def _pem_pair() -> Pem:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return Pem(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )


@dataclass(frozen=True)
class Keys:
    merchant: Pem  # ours: Juspay encrypts to its public half
    other_merchant: Pem  # a key the keyring does not hold
    juspay: Pem  # Juspay's: signs
    impostor: Pem  # signs, but is not Juspay
    folder: Path

    def file(self, name: str, data: bytes) -> Path:
        path = self.folder / name
        path.write_bytes(data)
        return path


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return Keys(_pem_pair(), _pem_pair(), _pem_pair(), _pem_pair(), tmp_path_factory.mktemp("k"))


def keyring(keys: Keys, **kwargs: object) -> JwtKeyring:
    options: dict[str, object] = {
        "private_key_files": {KID: keys.file("merchant.pem", keys.merchant.private)},
        "public_key_files": {KID: keys.file("juspay.pem", keys.juspay.public)},
        "clock": lambda: NOW,
        **kwargs,
    }
    return JwtKeyring(**options)


def event(*, age: float = 5.0, **extra: object) -> bytes:
    created = dt.datetime.fromtimestamp(NOW - age, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    order = {"order_id": "JP1636474794", "status": "CHARGED", "amount": 10.0}
    body = {
        "id": "evt_V2_b737837102414514ae0e9717a9f2664d",
        "event_name": "ORDER_SUCCEEDED",
        "date_created": created,
        "content": {"order": order},
        **extra,
    }
    return json.dumps(body).encode()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# Tokens are built with jwcrypto: a JOSE implementation other than the proxy's (joserfc).
def sign(payload: bytes, pem: bytes, **header: object) -> str:
    protected = {k: v for k, v in {"alg": "RS256", "kid": KID, **header}.items() if v}
    token = cjws.JWS(payload)
    token.add_signature(cjwk.JWK.from_pem(pem), alg=None, protected=json.dumps(protected))
    return str(token.serialize(compact=True))


def encrypt(plaintext: str | bytes, pem: bytes, **header: object) -> str:
    protected = {"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": KID, **header}
    data = plaintext.encode() if isinstance(plaintext, str) else plaintext
    token = cjwe.JWE(data, protected=json.dumps({k: v for k, v in protected.items() if v}))
    token.allowed_algs = [*cjwe.default_allowed_algs, "RSA1_5"]
    token.add_recipient(cjwk.JWK.from_pem(pem))
    return str(token.serialize(compact=True))


def webhook(keys: Keys, payload: bytes | None = None, **header: object) -> bytes:
    """A JWT webhook body as Juspay sends it: signed by Juspay, encrypted to the merchant."""
    signed = sign(payload or event(), keys.juspay.private)
    return body_of(encrypt(signed, keys.merchant.public, **header))


def body_of(token: str | dict[str, str]) -> bytes:
    return json.dumps({"JWT": token}).encode()


def refused(reason: str, fn: Callable[[], object]) -> WebhookTokenError:
    with pytest.raises(WebhookTokenError) as info:
        fn()
    assert info.value.reason == reason
    assert reason in jw.REASONS
    return info.value


# --- good tokens ------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["RSA-OAEP-256", "RSA-OAEP"])
def test_a_token_signed_by_juspay_and_encrypted_to_the_merchant_opens(keys: Keys, alg: str) -> None:
    payload = event()
    verified = keyring(keys).verify_body(webhook(keys, payload, alg=alg, cty="JWT"))
    assert verified.payload == payload
    assert (verified.kid, verified.signing_kid) == (KID, KID)
    assert verified.issued_at == NOW - 5


def test_a_large_order_fits(keys: Keys) -> None:
    payload = event(padding="x" * 200_000)  # past joserfc's default size limits
    assert keyring(keys).verify_body(webhook(keys, payload)).payload == payload
    too_big = b'{"JWT": "' + b"A" * (jw.MAX_TOKEN_BYTES + 1) + b'"}'
    refused(jw.MALFORMED, lambda: keyring(keys).verify_body(too_big))


def test_a_token_from_juspays_own_node_sdk_opens(keys: Keys, tmp_path: Path) -> None:
    payload = event()
    sdk_jwe = node_sdk_token(keys, tmp_path, payload)
    # The SDK writes {"header","encryptedKey","iv","encryptedPayload","tag"}: joined by dots, it is
    # the compact JWE of Juspay's webhook sample; the SDK's JSON spelling is accepted as well.
    header = json.loads(base64.urlsafe_b64decode(sdk_jwe["header"] + "=="))
    assert header == {"alg": "RSA-OAEP", "enc": "A256GCM", "cty": "JWT", "kid": KID}
    parts = ("header", "encryptedKey", "iv", "encryptedPayload", "tag")
    compact = ".".join(sdk_jwe[p] for p in parts)
    assert keyring(keys).verify_body(body_of(compact)).payload == payload
    assert keyring(keys).verify_body(body_of(sdk_jwe)).payload == payload


def node_sdk_token(keys: Keys, folder: Path, payload: bytes) -> dict[str, str]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: `make tools` installs it (scripts/ensure-tools.sh)")
    if not (NODE_DIR / "node_modules" / "expresscheckout-nodejs").is_dir():
        pytest.fail("Juspay's Node SDK is missing: run `make tools` (npm ci in tests/node)")
    (folder / "event.json").write_bytes(payload)
    result = subprocess.run(
        [
            node,
            str(NODE_DIR / "sdk_token.js"),
            str(folder / "event.json"),
            KID,
            str(keys.file("merchant.pub.pem", keys.merchant.public)),
            str(keys.file("juspay.priv.pem", keys.juspay.private)),
        ],
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    token: dict[str, str] = json.loads(result.stdout)
    return token


def test_a_token_without_a_kid_is_tried_with_each_configured_key(keys: Keys) -> None:
    ring = keyring(
        keys,
        private_key_files={
            "old": keys.file("other.pem", keys.other_merchant.private),
            KID: keys.file("merchant.pem", keys.merchant.private),
        },
    )
    signed = sign(event(), keys.juspay.private, kid=None)
    verified = ring.verify_body(body_of(encrypt(signed, keys.merchant.public, kid=None)))
    assert (verified.kid, verified.signing_kid) == (KID, KID)


def test_the_signature_kid_may_differ_from_the_encryption_kid(keys: Keys) -> None:
    ring = keyring(keys, public_key_files={"juspay_2026": keys.file("j.pem", keys.juspay.public)})
    signed = sign(event(), keys.juspay.private, kid="juspay_2026")
    verified = ring.verify_body(body_of(encrypt(signed, keys.merchant.public)))
    assert verified.signing_kid == "juspay_2026"


def test_decode_body_returns_the_event_and_remembers_it(keys: Keys) -> None:
    ring = keyring(keys)
    body = webhook(keys)
    assert json.loads(ring.decode_body(body))["event_name"] == "ORDER_SUCCEEDED"
    refused(jw.REPLAYED, lambda: ring.decode_body(body))


# --- refusals ---------------------------------------------------------------------------------


def test_a_token_encrypted_to_another_key_is_refused(keys: Keys) -> None:
    signed = sign(event(), keys.juspay.private)
    body = body_of(encrypt(signed, keys.other_merchant.public))
    error = refused(jw.DECRYPT_FAILED, lambda: keyring(keys).verify_body(body))
    assert error.kid == KID


def test_a_kid_that_is_not_configured_is_refused(keys: Keys) -> None:
    error = refused(
        jw.UNKNOWN_KID, lambda: keyring(keys).verify_body(webhook(keys, kid="key_somebody_else"))
    )
    assert error.kid == "key_somebody_else"
    signed = sign(event(), keys.juspay.private, kid="juspay_unknown")
    body = body_of(encrypt(signed, keys.merchant.public))
    refused(jw.UNKNOWN_KID, lambda: keyring(keys).verify_body(body))


@pytest.mark.parametrize("part", [0, 1, 2, 3, 4])
def test_a_tampered_token_is_refused(keys: Keys, part: int) -> None:
    token = json.loads(webhook(keys))["JWT"]
    parts = token.split(".")
    if part == 0:
        # Same algorithms and kid, different bytes: the header is the AEAD's associated data.
        parts[0] = b64(json.dumps({"kid": KID, "enc": "A256GCM", "alg": "RSA-OAEP-256"}).encode())
    else:
        raw = bytearray(base64.urlsafe_b64decode(parts[part] + "=="))
        raw[len(raw) // 2] ^= 0x01
        parts[part] = b64(bytes(raw))
    refused(jw.DECRYPT_FAILED, lambda: keyring(keys).verify_body(body_of(".".join(parts))))


def test_a_token_signed_by_anyone_but_juspay_is_refused(keys: Keys) -> None:
    signed = sign(event(), keys.impostor.private)
    body = body_of(encrypt(signed, keys.merchant.public))
    refused(jw.BAD_SIGNATURE, lambda: keyring(keys).verify_body(body))
    # A payload swapped under Juspay's real signature fails the same way.
    header, _, signature = sign(event(), keys.juspay.private).split(".")
    forged = f"{header}.{b64(event(age=1))}.{signature}"
    body = body_of(encrypt(forged, keys.merchant.public))
    refused(jw.BAD_SIGNATURE, lambda: keyring(keys).verify_body(body))


def test_alg_none_and_other_signature_algorithms_are_refused(keys: Keys) -> None:
    none_header = json.dumps({"alg": "none", "kid": KID}).encode()
    unsigned = f"{b64(none_header)}.{b64(event())}."
    refused(
        jw.BAD_ALGORITHM,
        lambda: keyring(keys).verify_body(body_of(encrypt(unsigned, keys.merchant.public))),
    )
    hmac = cjws.JWS(event())
    hmac.add_signature(cjwk.JWK(kty="oct", k=b64(b"k" * 32)), alg=None, protected='{"alg":"HS256"}')
    signed = str(hmac.serialize(compact=True))
    refused(
        jw.BAD_ALGORITHM,
        lambda: keyring(keys).verify_body(body_of(encrypt(signed, keys.merchant.public))),
    )


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ({"alg": "RSA1_5"}, jw.BAD_ALGORITHM),
        ({"enc": "A128GCM"}, jw.BAD_ALGORITHM),
        ({"enc": "A256CBC-HS512"}, jw.BAD_ALGORITHM),
        ({"zip": "DEF"}, jw.BAD_HEADER),
    ],
)
def test_encryption_outside_the_allowed_algorithms_is_refused(
    keys: Keys, header: dict[str, str], reason: str
) -> None:
    refused(reason, lambda: keyring(keys).verify_body(webhook(keys, **header)))


def test_a_signed_but_unencrypted_token_is_refused(keys: Keys) -> None:
    body = body_of(sign(event(), keys.juspay.private))
    refused(jw.NOT_ENCRYPTED, lambda: keyring(keys).verify_body(body))
    # A plain (Basic-auth style) webhook body for a merchant whose webhooks are encrypted.
    refused(jw.NOT_ENCRYPTED, lambda: keyring(keys).verify_body(event()))


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'{"JWT": 5}', b'{"JWT": "a.b.c.d"}', b'{"JWT": "%%%.a.b.c.d"}'],
)
def test_a_body_that_is_not_a_jwt_webhook_is_refused(keys: Keys, body: bytes) -> None:
    refused(jw.MALFORMED, lambda: keyring(keys).verify_body(body))


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (event(age=25 * 3600 + 1), jw.EXPIRED),  # date_created older than the bound
        (event(age=-3600), jw.BAD_TIMESTAMP),  # from the future
        (event(exp=NOW - 3600), jw.EXPIRED),  # a JWT exp claim in the past
        (event(iat=NOW - 26 * 3600), jw.EXPIRED),  # iat wins over date_created
        (event(iat="yesterday"), jw.BAD_TIMESTAMP),
        (json.dumps({"event_name": "ORDER_SUCCEEDED"}).encode(), jw.BAD_TIMESTAMP),
        (event(date_created="last tuesday"), jw.BAD_TIMESTAMP),
        (b'"just a string"', jw.MALFORMED),
    ],
)
def test_a_payload_too_old_or_without_a_usable_time_is_refused(
    keys: Keys, payload: bytes, reason: str
) -> None:
    refused(reason, lambda: keyring(keys).verify_body(webhook(keys, payload)))


def test_the_age_bound_is_configurable(keys: Keys) -> None:
    body = webhook(keys, event(age=600))
    assert keyring(keys).verify_body(body)
    refused(jw.EXPIRED, lambda: keyring(keys, max_age_seconds=300).verify_body(body))


def test_a_replayed_token_is_refused_once_handled(keys: Keys) -> None:
    ring = keyring(keys)
    payload = event()
    signed = sign(payload, keys.juspay.private)
    body = body_of(encrypt(signed, keys.merchant.public))
    first = ring.verify_body(body)
    assert ring.verify_body(body).replay_key == first.replay_key  # not handled yet: may retry
    ring.mark_handled(first)
    refused(jw.REPLAYED, lambda: ring.verify_body(body))
    # The same signed payload in a fresh JWE is the same webhook.
    refused(jw.REPLAYED, lambda: ring.verify_body(body_of(encrypt(signed, keys.merchant.public))))
    # Another keyring (another replica) has not seen it.
    assert keyring(keys).verify_body(body).payload == payload


def test_replay_memory_is_bounded_and_forgets_what_the_age_check_refuses(keys: Keys) -> None:
    clock = [NOW]
    ring = keyring(keys, replay_cache_size=2, max_age_seconds=600, clock=lambda: clock[0])
    bodies = [webhook(keys, event(n=n)) for n in range(3)]
    for body in bodies:
        ring.mark_handled(ring.verify_body(body))
    assert ring.verify_body(bodies[0])  # pushed out by the bound
    refused(jw.REPLAYED, lambda: ring.verify_body(bodies[2]))
    clock[0] += 600 + jw.DEFAULT_CLOCK_SKEW_SECONDS + 1
    refused(jw.EXPIRED, lambda: ring.verify_body(bodies[2]))


def test_rotated_key_files_are_picked_up_without_a_restart(keys: Keys, tmp_path: Path) -> None:
    private = tmp_path / "merchant.pem"
    private.write_bytes(keys.merchant.private)
    ring = keyring(keys, private_key_files={KID: private}, check_interval=0)
    to_new = body_of(encrypt(sign(event(), keys.juspay.private), keys.other_merchant.public))
    refused(jw.DECRYPT_FAILED, lambda: ring.verify_body(to_new))

    # Kubernetes swaps a mounted secret's file for a new one.
    staged = tmp_path / "merchant.pem.new"
    staged.write_bytes(keys.other_merchant.private)
    os.replace(staged, private)
    assert ring.verify_body(to_new)
    refused(jw.DECRYPT_FAILED, lambda: ring.verify_body(webhook(keys)))

    # A broken replacement keeps the last good key.
    staged.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    os.replace(staged, private)
    assert ring.verify_body(to_new)


def test_key_material_and_payloads_never_show_in_errors_or_repr(keys: Keys) -> None:
    ring = keyring(keys)
    payload = event(secret_marker="PAYLOAD-MARKER-1234")
    verified = ring.verify_body(webhook(keys, payload))
    shown = repr(ring) + repr(verified) + str(verified)
    errors = []
    for body in (webhook(keys, kid="nope"), webhook(keys, event(age=10**6)), b"{"):
        with pytest.raises(WebhookTokenError) as info:
            ring.verify_body(body)
        errors.append(info.value)
        # Nothing from the JOSE library (or the payload) rides along as a cause or context.
        assert info.value.__cause__ is None
        assert info.value.__context__ is None or info.value.__suppress_context__
    shown += "".join(f"{e!s}{e!r}" for e in errors)
    assert "PAYLOAD-MARKER" not in shown
    for pem in (keys.merchant.private, keys.juspay.public):
        body_line = pem.decode().splitlines()[1]
        assert body_line[:20] not in shown


def test_peek_kid_reads_the_jwe_header_without_keys(keys: Keys) -> None:
    token = jw.token_of(webhook(keys))
    assert token is not None
    assert jw.peek_kid(token) == KID
    assert jw.peek_kid("not a token") is None
    assert jw.token_of(event()) is None


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "not a PEM file"),
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "PEM private key"),
    ],
)
def test_unusable_key_files_are_refused_at_load(
    keys: Keys, tmp_path: Path, data: bytes, problem: str
) -> None:
    path = tmp_path / "bad.pem"
    path.write_bytes(data)
    with pytest.raises(keyfiles.KeyFileError, match=problem):
        keyfiles.load_private_key(path)
    with pytest.raises(keyfiles.KeyFileError, match="holds a private key"):
        keyfiles.load_public_key(keys.file("juspay-private-by-mistake.pem", keys.juspay.private))
    # A key too small to trust, refused by the proxy: that is the point here.
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    weak = small.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    with pytest.raises(keyfiles.KeyFileError, match="at least 2048"):
        keyfiles.load_private_key(keys.file("weak.pem", weak))


# --- settings ---------------------------------------------------------------------------------


def config(tmp_path: Path, merchant_lines: str) -> dict[str, str]:
    path = tmp_path / "proxy.toml"
    path.write_text(f'[[merchants]]\nid = "m_shop"\napi_key_env = "M_SHOP_KEY"\n{merchant_lines}\n')
    return {"PROXY_CONFIG_FILE": str(path), "M_SHOP_KEY": "key_m_shop_123", "HOOK_PW": "pw-xyz"}


def test_merchant_jwt_keys_and_webhook_pair_come_from_the_config_file(
    keys: Keys, tmp_path: Path
) -> None:
    (tmp_path / "m.pem").write_bytes(keys.merchant.private)
    (tmp_path / "j.pem").write_bytes(keys.juspay.public)
    env = config(
        tmp_path,
        'webhook_username = "shop_hooks"\nwebhook_password_env = "HOOK_PW"\n'
        f'jwt_private_key_files = {{ {KID} = "m.pem" }}\n'
        f'jwt_public_key_files = {{ {KID} = "{tmp_path / "j.pem"}" }}\n'
        "jwt_max_age_seconds = 900\n",
    )
    settings = load_settings(env)
    merchant = settings.merchants[0]
    assert merchant.webhook is not None
    assert merchant.webhook.username == "shop_hooks"
    assert merchant.webhook.password.reveal() == "pw-xyz"
    assert merchant.jwt is not None
    assert merchant.jwt.private_key_files == ((KID, tmp_path / "m.pem"),)
    assert merchant.jwt.public_key_files == ((KID, tmp_path / "j.pem"),)
    assert merchant.jwt.max_age_seconds == 900
    shown = repr(settings) + json.dumps(settings.describe())
    assert "pw-xyz" not in shown
    assert keys.merchant.private.decode().splitlines()[1][:20] not in shown
    described = settings.describe()["merchants"][0]
    assert described["webhook"]["password"] == "********"
    assert described["jwt"]["private_key_files"] == {KID: str(tmp_path / "m.pem")}
    ring = JwtKeyring(
        private_key_files=dict(merchant.jwt.private_key_files),
        public_key_files=dict(merchant.jwt.public_key_files),
        max_age_seconds=merchant.jwt.max_age_seconds,
        clock=lambda: NOW,
    )
    assert ring.verify_body(webhook(keys)).kid == KID


def test_the_env_merchant_takes_one_jwt_key_pair_from_the_environment(
    keys: Keys, tmp_path: Path
) -> None:
    env = {
        "JUSPAY_MERCHANT_ID": "m1",
        "JUSPAY_API_KEY": "key_m1_123",
        "JUSPAY_WEBHOOK_JWT_KID": KID,
        "JUSPAY_WEBHOOK_JWT_PRIVATE_KEY_FILE": str(keys.file("m.pem", keys.merchant.private)),
        "JUSPAY_WEBHOOK_JWT_PUBLIC_KEY_FILE": str(keys.file("j.pem", keys.juspay.public)),
    }
    jwt = load_settings(env).merchants[0].jwt
    assert jwt is not None
    assert [kid for kid, _ in jwt.private_key_files] == [KID]
    assert [kid for kid, _ in jwt.public_key_files] == [KID]
    assert jwt.max_age_seconds == keyfiles.DEFAULT_MAX_AGE_SECONDS
    other = load_settings({**env, "JUSPAY_WEBHOOK_JWT_PUBLIC_KEY_KID": "juspay_k2"})
    assert other.merchants[0].jwt is not None
    assert other.merchants[0].jwt.public_key_files[0][0] == "juspay_k2"


@pytest.mark.parametrize(
    ("lines", "setting"),
    [
        (f'jwt_private_key_files = {{ {KID} = "bad.pem" }}', "jwt_public_key_files"),
        (
            f'jwt_private_key_files = {{ {KID} = "bad.pem" }}\n'
            f'jwt_public_key_files = {{ {KID} = "j.pem" }}',
            f"jwt_private_key_files.{KID}",
        ),
        (
            f'jwt_private_key_files = {{ {KID} = "m.pem" }}\n'
            f'jwt_public_key_files = {{ {KID} = "m.pem" }}',
            f"jwt_public_key_files.{KID}",
        ),
        (
            f'jwt_private_key_files = {{ {KID} = "missing.pem" }}\n'
            f'jwt_public_key_files = {{ {KID} = "j.pem" }}',
            f"jwt_private_key_files.{KID}",
        ),
        ("jwt_max_age_seconds = 60", "jwt_max_age_seconds"),
        ('webhook_username = "hooks"', "merchants[0]"),
        ('webhook_password_env = "HOOK_PW"', "webhook_username"),
        ('webhook_username = "a:b"\nwebhook_password_env = "HOOK_PW"', "webhook_username"),
    ],
)
def test_bad_merchant_webhook_settings_name_the_setting_without_key_material(
    keys: Keys, tmp_path: Path, lines: str, setting: str
) -> None:
    (tmp_path / "m.pem").write_bytes(keys.merchant.private)
    (tmp_path / "j.pem").write_bytes(keys.juspay.public)
    (tmp_path / "bad.pem").write_text(
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    )
    with pytest.raises(SettingsError) as info:
        load_settings(config(tmp_path, lines))
    message = str(info.value)
    assert message.startswith("PROXY_CONFIG_FILE merchants[0]")
    assert setting in message.partition(":")[0]
    assert "\n" not in message
    assert "BEGIN" not in message
    assert keys.merchant.private.decode().splitlines()[1][:20] not in message


def test_jwt_environment_without_a_merchant_or_a_kid_is_refused(keys: Keys) -> None:
    files = {
        "JUSPAY_WEBHOOK_JWT_PRIVATE_KEY_FILE": str(keys.file("m.pem", keys.merchant.private)),
        "JUSPAY_WEBHOOK_JWT_PUBLIC_KEY_FILE": str(keys.file("j.pem", keys.juspay.public)),
    }
    base = {"JUSPAY_MERCHANT_ID": "m1", "JUSPAY_API_KEY": "key_m1_123"}
    with pytest.raises(SettingsError, match=r"^JUSPAY_WEBHOOK_JWT_KID: "):
        load_settings({**base, **files})
    with pytest.raises(SettingsError, match=r"^JUSPAY_WEBHOOK_JWT_PRIVATE_KEY_FILE: applies"):
        load_settings({**files, "JUSPAY_WEBHOOK_JWT_KID": KID, "PROXY_CONFIG_FILE": ""})


_LOADED_JOSE = """
import sys
from proxy.app import create_app
from proxy.config import load_settings
env = {"JUSPAY_MERCHANT_ID": "m1", "JUSPAY_API_KEY": "k", "JUSPAY_BASE_URL": "http://127.0.0.1:9"}
env.update(dict(arg.split("=", 1) for arg in sys.argv[1:]))
create_app(load_settings(env))
heavy = ("joserfc", "cryptography.hazmat")
print(sorted({m.split(".")[0] for m in sys.modules if m.startswith(heavy)}))
"""


def _jose_modules_after_start_up(*env: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", _LOADED_JOSE, *env],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def test_a_proxy_without_jwt_webhooks_does_not_load_joserfc_or_cryptography() -> None:
    # They cost ~9 MiB of every replica's memory; only JWT keyrings need them.
    assert _jose_modules_after_start_up() == "[]"


def test_a_proxy_with_jwt_webhooks_loads_them_to_check_its_keys(keys: Keys) -> None:
    loaded = _jose_modules_after_start_up(
        f"JUSPAY_WEBHOOK_JWT_KID={KID}",
        f"JUSPAY_WEBHOOK_JWT_PRIVATE_KEY_FILE={keys.file('m.pem', keys.merchant.private)}",
        f"JUSPAY_WEBHOOK_JWT_PUBLIC_KEY_FILE={keys.file('j.pem', keys.juspay.public)}",
    )
    assert loaded == "['cryptography', 'joserfc']"
