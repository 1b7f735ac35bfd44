"""Settings: parsed once, checked fully, one clear line per mistake, secrets never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.config.settings import SettingsError, load_settings

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
