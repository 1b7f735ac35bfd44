"""Settings: parsed once, checked fully, one clear line per mistake, secrets never shown."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from pathlib import Path

import pytest

from proxy.config import SettingsError, describe, load_settings
from proxy.config.meta import extra, field_metas
from proxy.config.settings import JwtWebhookSettings, Settings

KEY = "sk_live_supersecret_123"
BASE = {"JUSPAY_MERCHANT_ID": "m1", "JUSPAY_API_KEY": KEY}


def test_minimal_environment_gives_documented_defaults() -> None:
    s = load_settings(BASE)
    assert str(s.upstream.base_url) == "https://api.juspay.in"
    assert s.upstream.api_version == "2023-06-30"
    assert s.upstream.timeout_seconds == 10.0
    assert (s.server.host, s.server.port) == ("127.0.0.1", 8080)
    assert s.redis.url is None
    assert s.webhook is None
    assert (s.log.level, s.log.format) == ("info", "json")
    assert s.default_merchant == "m1"


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({}, "JUSPAY_MERCHANT_ID"),
        ({"JUSPAY_MERCHANT_ID": "m1"}, "JUSPAY_API_KEY"),
        ({**BASE, "JUSPAY_TIMEOUT_SECONDS": "soon"}, "JUSPAY_TIMEOUT_SECONDS"),
        ({**BASE, "JUSPAY_TIMEOUT_SECONDS": "0"}, "JUSPAY_TIMEOUT_SECONDS"),
        ({**BASE, "JUSPAY_TIMEOUT_SECONDS": "nan"}, "JUSPAY_TIMEOUT_SECONDS"),
        ({**BASE, "PROXY_PORT": "70000"}, "PROXY_PORT"),
        ({**BASE, "JUSPAY_API_VERSION": "2023-02-30"}, "JUSPAY_API_VERSION"),
        ({**BASE, "JUSPAY_BASE_URL": "http://api.juspay.in"}, "JUSPAY_BASE_URL"),
        ({**BASE, "JUSPAY_BASE_URL": "ftp://x"}, "JUSPAY_BASE_URL"),
        ({**BASE, "JUSPAY_BASE_URL": "https://u:p@api.juspay.in"}, "JUSPAY_BASE_URL"),
        ({**BASE, "REDIS_URL": "http://cache"}, "REDIS_URL"),
        ({**BASE, "LOG_FORMAT": "xml"}, "LOG_FORMAT"),
        ({**BASE, "LOG_LEVEL": "loud"}, "LOG_LEVEL"),
        ({**BASE, "JUSPAY_MERCHANT_ID": "bad id"}, "JUSPAY_MERCHANT_ID"),
        ({**BASE, "JUSPAY_API_KEY_FILE": "/x"}, "JUSPAY_API_KEY"),
        ({**BASE, "JUSPAY_WEBHOOK_USERNAME": "juspay"}, "JUSPAY_WEBHOOK_PASSWORD"),
        ({**BASE, "JUSPAY_WEBHOOK_PASSWORD": "pw"}, "JUSPAY_WEBHOOK_USERNAME"),
        ({**BASE, "PROXY_CONFIG_FILE": "/no/such/file.toml"}, "PROXY_CONFIG_FILE"),
    ],
)
def test_bad_configuration_names_the_setting_in_one_line(env: dict[str, str], setting: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(env)
    message = str(info.value)
    assert message.startswith(setting)
    assert "\n" not in message
    assert KEY not in message


def test_plain_http_is_allowed_for_loopback_or_when_explicitly_allowed() -> None:
    assert load_settings({**BASE, "JUSPAY_BASE_URL": "http://127.0.0.1:8099"}).upstream.base_url
    assert load_settings({**BASE, "JUSPAY_BASE_URL": "http://[::1]:8099/"}).upstream.base_url
    relay = {**BASE, "JUSPAY_BASE_URL": "http://relay.internal", "JUSPAY_ALLOW_INSECURE_HTTP": "1"}
    assert load_settings(relay).upstream.base_url.host == "relay.internal"


def test_api_key_file_is_read_and_its_newline_dropped(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    s = load_settings({"JUSPAY_MERCHANT_ID": "m1", "JUSPAY_API_KEY_FILE": str(key_file)})
    assert s.merchants[0].api_key.reveal() == KEY
    assert s.merchants[0].api_key_file == key_file


def test_missing_or_empty_key_file_is_named(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    for path in (tmp_path / "missing", empty):
        with pytest.raises(SettingsError) as info:
            load_settings({"JUSPAY_MERCHANT_ID": "m1", "JUSPAY_API_KEY_FILE": str(path)})
        assert str(info.value).startswith("JUSPAY_API_KEY_FILE")


def test_secrets_never_appear_in_repr_or_describe() -> None:
    env = {
        **BASE,
        "REDIS_URL": "redis://:redispass123@cache:6379/0",
        "JUSPAY_WEBHOOK_USERNAME": "juspay",
        "JUSPAY_WEBHOOK_PASSWORD": "hookpass456",
    }
    s = load_settings(env)
    text = repr(s) + str(s.describe()) + f"{s.merchants[0].api_key}"
    for secret in (KEY, "redispass123", "hookpass456"):
        assert secret not in text
    assert s.describe()["redis"]["url"] == "redis://:********@cache:6379/0"


def test_toml_lists_merchants_and_ttls(tmp_path: Path) -> None:
    (tmp_path / "m2.key").write_text("key-two\n")
    config = tmp_path / "proxy.toml"
    config.write_text(
        """
default_merchant = "m2"

[[merchants]]
id = "m2"
api_key_file = "m2.key"

[[merchants]]
id = "m3"
api_key_env = "M3_KEY"

[cache]
final_ttl_seconds = 3600
failure_ttl_seconds = 10
not_found_ttl_seconds = 5
memory_max_entries = 1000

[cache.status_ttl_seconds]
VOIDED = 60
"""
    )
    s = load_settings({**BASE, "PROXY_CONFIG_FILE": str(config), "M3_KEY": "key-three"})
    assert [m.merchant_id for m in s.merchants] == ["m1", "m2", "m3"]
    assert s.default_merchant == "m2"
    assert s.merchant("m2") is not None
    assert s.merchant("m3").api_key.reveal() == "key-three"  # type: ignore[union-attr]
    policy = s.cache.policy
    assert (policy.final_ttl, policy.failure_ttl, policy.not_found_ttl) == (3600, 10, 5)
    assert policy.status_ttls == (("VOIDED", 60),)
    assert s.cache.memory_max_entries == 1000


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ("[cache]\nttl = 5\n", "PROXY_CONFIG_FILE"),
        ("[cache.status_ttl_seconds]\nNEW = 60\n", "status_ttl_seconds.NEW"),
        ("[cache.status_ttl_seconds]\nPENDING_VBV = 60\n", "status_ttl_seconds.PENDING_VBV"),
        ("[[merchants]]\nid = 'm9'\n", "merchants[0]"),
        ("[[merchants]]\nid = 'm1'\napi_key_env = 'X'\n", "merchants[0]"),
        ("default_merchant = 'nobody'\n", "default_merchant"),
        ("this is not toml", "PROXY_CONFIG_FILE"),
    ],
)
def test_bad_toml_is_refused_naming_the_key(tmp_path: Path, toml: str, named: str) -> None:
    config = tmp_path / "proxy.toml"
    config.write_text(toml)
    with pytest.raises(SettingsError) as info:
        load_settings({**BASE, "PROXY_CONFIG_FILE": str(config), "X": "k"})
    assert named in str(info.value)


def _schema_classes(cls: type, seen: dict[type, None]) -> dict[type, None]:
    """Every settings dataclass reachable from `cls` through the types of its fields (those
    given when it is made; derived ones are not settings)."""
    if cls in seen or not dataclasses.is_dataclass(cls):
        return seen
    seen[cls] = None
    hints = typing.get_type_hints(cls)
    for kind in (hints[f.name] for f in dataclasses.fields(cls) if f.init):
        for part in (kind, *typing.get_args(kind)):
            for inner in (part, *typing.get_args(part)):
                if isinstance(inner, type):
                    _schema_classes(inner, seen)
    return seen


def _keys(shown: object) -> set[str]:
    if isinstance(shown, dict):
        return set(shown) | {k for value in shown.values() for k in _keys(value)}
    if isinstance(shown, list):
        return {k for value in shown for k in _keys(value)}
    return set()


def _everything_set(tmp_path: Path) -> Settings:
    """Settings with every optional part present: shared and per-merchant webhook passwords,
    JWT key files, clients with rate limits, Redis with a password in its URL."""
    client_key = "ck_plain_client_key_000111"
    config = tmp_path / "proxy.toml"
    config.write_text(
        f"""
[[merchants]]
id = "m2"
api_key_env = "M2_KEY"
webhook_username = "m2hooks"
webhook_password_env = "M2_HOOK_PW"

[[clients]]
name = "svc"
key_sha256 = "{hashlib.sha256(client_key.encode()).hexdigest()}"
merchants = ["*"]
rate_per_second = 5
upstream_rate_per_second = 1
"""
    )
    settings = load_settings(
        {
            **BASE,
            "PROXY_CONFIG_FILE": str(config),
            "M2_KEY": "sk_second_merchant_key_77",
            "M2_HOOK_PW": "m2hookpass789",
            "REDIS_URL": "redis://user:redispass123@cache:6379/0",
            "JUSPAY_WEBHOOK_USERNAME": "juspay",
            "JUSPAY_WEBHOOK_PASSWORD": "hookpass456",
            "PROXY_INTERNAL_PORT": "9090",
        }
    )
    # JWT key files are checked when loaded; the schema only holds their paths.
    jwt = JwtWebhookSettings(((KID, tmp_path / "m.pem"),), ((KID, tmp_path / "j.pem"),))
    first, second = settings.merchants
    return dataclasses.replace(settings, merchants=(dataclasses.replace(first, jwt=jwt), second))


KID = "kid-1"
SECRETS = (
    KEY,
    "sk_second_merchant_key_77",
    "m2hookpass789",
    "redispass123",
    "hookpass456",
    "ck_plain_client_key_000111",
)


def test_describe_shows_every_field_of_the_schema(tmp_path: Path) -> None:
    settings = _everything_set(tmp_path)
    shown = settings.describe()
    keys = _keys(shown)
    for cls in _schema_classes(Settings, {}):
        if callable(getattr(cls, "describe", None)) and cls is not Settings:
            continue  # shown as it describes itself (the TTL policy, rate limits)
        for name, meta in field_metas(cls).items():
            if not next(f for f in dataclasses.fields(cls) if f.name == name).init:
                continue  # derived from other fields (the parsed Redis URL)
            assert extra(meta).get("describe_as", name) in keys, f"{cls.__name__}.{name}"
    # What describe() once left out is there now.
    assert shown["upstream"]["backoff_base_seconds"] == 0.1
    assert shown["wait"]["poll_factor"] == 1.5
    assert shown["server"]["max_line_size"] == shown["server"]["max_field_size"] == 8190
    (client,) = shown["auth"]["clients"]
    assert client["rate_limit"] == "5/s, burst 5"
    assert shown["merchants"][0]["jwt"]["private_key_files"] == {KID: str(tmp_path / "m.pem")}


def test_describe_masks_every_secret(tmp_path: Path) -> None:
    settings = _everything_set(tmp_path)
    text = json.dumps(settings.describe()) + repr(settings)
    for secret in SECRETS:
        assert secret not in text
    shown = settings.describe()
    assert shown["redis"]["url"] == "redis://user:********@cache:6379/0"
    assert shown["webhook"]["password"] == "********"
    m1, m2 = shown["merchants"]
    assert (m1["api_key"], m1["api_key_source"]) == ("********", "env:JUSPAY_API_KEY")
    assert (m2["webhook"]["password"], m2["webhook"]["password_source"]) == (
        "********",
        "env:M2_HOOK_PW",
    )
    digest = settings.clients[0].key_sha256
    assert digest not in text
    assert shown["auth"]["clients"][0]["key_sha256"] == digest[:8] + "…"


def test_describe_refuses_a_value_it_does_not_know_how_to_show() -> None:
    """A new kind of field could hold a secret: it must be given a way to be shown first."""

    @dataclasses.dataclass(frozen=True)
    class Odd:
        value: object

    with pytest.raises(TypeError):
        describe.section(Odd(bytearray(b"secret")))


def test_redis_url_is_parsed_once_into_the_settings() -> None:
    s = load_settings({**BASE, "REDIS_URL": "redis+sentinel://:pw@s1:26379,s2:26379/main/3"})
    assert s.redis.mode == "sentinel"
    assert s.redis.target is not None
    assert s.redis.target.nodes == (("s1", 26379), ("s2", 26379))
    assert (s.redis.target.service, s.redis.target.db) == ("main", 3)
    assert "pw" not in repr(s.redis.target)


def test_an_api_version_with_spaces_is_stored_as_checked(tmp_path: Path) -> None:
    # It is sent as Juspay's `version` header and is part of every cache key: " 2023-06-30 "
    # must not become a second key beside requests that say 2023-06-30.
    config = tmp_path / "proxy.toml"
    config.write_text('[upstream]\napi_version = " 2024-01-15 "\n')
    from_file = load_settings({**BASE, "PROXY_CONFIG_FILE": str(config)})
    assert from_file.upstream.api_version == "2024-01-15"
    from_env = load_settings({**BASE, "JUSPAY_API_VERSION": " 2024-01-15\t"})
    assert from_env.upstream.api_version == "2024-01-15"


@pytest.mark.parametrize(
    "url",
    [
        "redis://:s3cr/etpw@cache:6379/0",  # an unescaped "/" in the password
        "redis+cluster://:s3cr/etpw@",  # ... and no node at all
        "redis+sentinel://:s3cr/etpw@s1:26379",  # ... and no service name
        "redis://:s3cr/etpw@cache:6379/x",  # ... and a bad database
    ],
)
def test_a_bad_redis_url_is_refused_without_showing_its_password(url: str) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings({**BASE, "REDIS_URL": url})
    message = str(refused.value)
    assert message.startswith("REDIS_URL: ")
    assert "s3cr" not in message
    assert "etpw" not in message
