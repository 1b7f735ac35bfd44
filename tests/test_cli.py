"""The command line, run as a user would: real subprocesses of the installed script."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys

KEY = "sk_cli_secret_987"


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("JUSPAY_", "REDIS_", "PROXY_"))
    }
    return subprocess.run(
        [sys.executable, "-m", "proxy", *args],
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_help_lists_every_command() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("serve", "demo", "simulate", "check-config"):
        assert command in result.stdout


def test_check_config_prints_masked_settings() -> None:
    result = run(
        "check-config",
        env={
            "JUSPAY_MERCHANT_ID": "m1",
            "JUSPAY_API_KEY": KEY,
            "REDIS_URL": "redis://:pw123@r:6379",
        },
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["merchants"][0]["api_key"] == "********"
    assert data["redis"]["url"] == "redis://:********@r:6379"
    assert KEY not in result.stdout
    assert "pw123" not in result.stdout


def test_invalid_configuration_stops_with_one_line_naming_the_setting() -> None:
    for command in ("check-config", "serve"):
        result = run(
            command,
            env={"JUSPAY_MERCHANT_ID": "m1", "JUSPAY_API_KEY": KEY, "JUSPAY_TIMEOUT_SECONDS": "-1"},
        )
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1
        assert "JUSPAY_TIMEOUT_SECONDS" in lines[0]
        assert KEY not in result.stderr + result.stdout


def test_demo_shows_a_miss_then_a_hit() -> None:
    result = run("demo", "--port", "0", "--once")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if "X-Cache" in line]
    assert "X-Cache: MISS" in lines[0]
    assert "X-Cache: HIT" in lines[1]
    assert "curl" in result.stdout


def test_serve_with_several_workers_and_no_redis_refuses_before_any_worker_starts() -> None:
    # Its own process group: on code that does not refuse, the workers it starts are killed
    # with it rather than left behind.
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy", "serve", "--workers", "2"],
        env={
            **{
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("JUSPAY_", "REDIS_", "PROXY_"))
            },
            "JUSPAY_MERCHANT_ID": "m1",
            "JUSPAY_API_KEY": KEY,
            "PROXY_PORT": "0",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    assert proc.returncode == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "REDIS_URL" in lines[0]
    assert "unset" in lines[0]
    assert "--workers 1" in lines[0]
    assert out == ""  # not one log line: no worker was started
    assert KEY not in err


def test_check_config_masks_a_redis_password_wherever_the_url_carries_it() -> None:
    for url in (
        "redis://r:6379/0?password=pw-in-query-1",
        "redis://r:6379/0?db=0&Password=pw-in-query-1",
        "unix:///run/redis.sock?password=pw-in-query-1&db=0",
        "unix://:pw-in-query-1@/run/redis.sock",
        "redis://r:6379/0?password=pw-in@query-1",
    ):
        result = run(
            "check-config",
            env={"JUSPAY_MERCHANT_ID": "m1", "JUSPAY_API_KEY": KEY, "REDIS_URL": url},
        )
        assert result.returncode == 0, result.stderr
        shown = json.loads(result.stdout)["redis"]["url"]
        assert "********" in shown, shown
        for part in ("pw-in-query-1", "query-1", "pw-in"):
            assert part not in result.stdout + result.stderr, (url, shown)


def test_an_unusable_redis_url_is_refused_without_showing_its_query_password() -> None:
    result = run(
        "check-config",
        env={
            "JUSPAY_MERCHANT_ID": "m1",
            "JUSPAY_API_KEY": KEY,
            "REDIS_URL": "redis://r:6379/nodb?password=pw-in-query-2",
        },
    )
    assert result.returncode == 2
    assert "REDIS_URL" in result.stderr
    assert "pw-in-query-2" not in result.stdout + result.stderr
