"""Issue 14, item 3: configuration that accepted nonsense, and error lines that hid the value.

Run as a user would: real `order-proxy` processes (check-config, serve).
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from proxy.config import SettingsError, load_settings
from tests.support.processes import serve_on_any_ports, simulator_process

BASE = {"JUSPAY_MERCHANT_ID": "m1", "JUSPAY_API_KEY": "sk_config_secret_42"}


def check_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("JUSPAY_", "REDIS_", "PROXY_"))
    }
    return subprocess.run(
        [sys.executable, "-m", "proxy", "check-config"],
        env={**clean, **BASE, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def refused(env: dict[str, str]) -> str:
    result = check_config(env)
    assert result.returncode == 2, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://cache:6379/99x", "'99x'"),
        ("redis://:pw-secret@cache:6379/1x", "'1x'"),
        ("rediss://cache:6379/-1", "'-1'"),
        ("unix:///run/redis.sock?db=two", "'two'"),
        ("redis+sentinel://s1:26379,s2:26379/mymaster/db3", "'db3'"),
    ],
)
def test_a_redis_url_with_a_database_that_is_not_a_number_is_refused(url: str, shown: str) -> None:
    line = refused({"REDIS_URL": url})
    assert "REDIS_URL" in line
    assert "database" in line
    assert shown in line
    assert "pw-secret" not in line


def test_a_redis_url_with_a_numbered_database_is_accepted() -> None:
    for url in ("redis://cache:6379/3", "redis://cache:6379", "redis://cache:6379/"):
        settings = load_settings({**BASE, "REDIS_URL": url})
        assert settings.redis.url is not None


def test_a_bad_redis_scheme_shows_the_value_and_claims_no_password_that_is_not_there() -> None:
    line = refused({"REDIS_URL": "http://cache:6379/0"})
    assert "'http://cache:6379/0'" in line
    assert "password masked" not in line
    with_password = refused({"REDIS_URL": "http://user:pw-secret@cache:6379/0"})
    assert "pw-secret" not in with_password
    assert "@cache:6379/0" in with_password


@pytest.mark.parametrize(
    "value",
    ["ftp://api.juspay.in", "http://api.example.com", "https://api.juspay.in/?debug=1", "api"],
)
def test_a_refused_base_url_is_shown_in_the_error_line(value: str) -> None:
    line = refused({"JUSPAY_BASE_URL": value})
    assert line.startswith("order-proxy: invalid configuration: JUSPAY_BASE_URL:")
    assert repr(value) in line


def test_a_base_url_with_credentials_is_refused_without_showing_them() -> None:
    line = refused({"JUSPAY_BASE_URL": "https://user:hunter2@api.juspay.in"})
    assert "hunter2" not in line
    assert "credentials" in line


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        (
            '[upstream]\ntimeout_seconds = "ten"\n',
            "upstream.timeout_seconds: must be a number, got 'ten'",
        ),
        ("[cache]\nttl = 3\n", "cache.ttl: unknown setting"),
        ('[[merchants]]\napi_key_env = "X"\n', "merchants[0]: missing the required key 'id'"),
        ("[[merchants]]\nid = 5\n", "merchants[0].id: must be a string, got 5"),
        ('allow_anonymous = "yes"\n', "allow_anonymous: must be true or false, got 'yes'"),
        ("[wait]\nmax_waiters = 2.5\n", "wait.max_waiters: must be a whole number, got 2.5"),
    ],
)
def test_toml_type_errors_are_said_in_our_words(tmp_path: Path, toml: str, expected: str) -> None:
    path = tmp_path / "proxy.toml"
    path.write_text(toml)
    with pytest.raises(SettingsError) as caught:
        load_settings({**BASE, "PROXY_CONFIG_FILE": str(path)})
    message = str(caught.value)
    assert message.startswith(f"PROXY_CONFIG_FILE ({path}) ")
    assert expected in message
    for msgspec_wording in ("Expected `", "$.", "Object contains", "null"):
        assert msgspec_wording not in message


def test_check_config_piped_into_head_exits_quietly() -> None:
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("JUSPAY_", "REDIS_", "PROXY_"))
    }
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first byte (as `head -1` is, soon)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "proxy", "check-config"],
            env={**clean, **BASE},
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert "Traceback" not in result.stderr
    assert "BrokenPipeError" not in result.stderr
    assert result.stderr == ""
    assert result.returncode == 0


def test_proxy_port_zero_logs_the_port_it_really_listens_on() -> None:
    sim = simulator_process().start()
    try:
        with serve_on_any_ports(sim) as listening:
            for name in ("port", "internal_port"):
                port = listening[name]
                assert isinstance(port, int)
                assert port != 0
            url = f"http://127.0.0.1:{listening['port']}/orders/JP1636474794"
            with urllib.request.urlopen(url, timeout=10) as resp:
                assert resp.status == 200
            internal = f"http://127.0.0.1:{listening['internal_port']}/healthz"
            with urllib.request.urlopen(internal, timeout=10) as resp:
                assert resp.status == 200
    finally:
        sim.stop()
