"""Every line `serve` writes, on stdout and stderr, is JSON: with the locked redis-py and with
the newest one pyproject.toml admits (installed beside the venv by `make tools`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.processes import RedisProcess, ServiceProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
NEWEST = ROOT / ".venv" / "redis-newest"


def _redis_py(env: dict[str, str]) -> str:
    """The redis-py version a process started with `env` imports."""
    return subprocess.run(
        [sys.executable, "-c", "import redis; print(redis.__version__)"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def _installed(folder: Path) -> str:
    """The version of the redis-py installed in `folder` (from its dist-info)."""
    (info,) = folder.glob("redis-*.dist-info")
    return info.name.removeprefix("redis-").removesuffix(".dist-info")


@pytest.mark.parametrize("redis_py", ["locked", "newest"])
def test_every_line_serve_writes_is_json_with_any_admitted_redis_py(
    redis_py: str, sim: ServiceProcess, redis_server: RedisProcess, tmp_path: Path
) -> None:
    extra: dict[str, str] = {}
    if redis_py == "newest":
        if not (NEWEST / "redis").is_dir():
            pytest.fail("the newest admitted redis-py is missing: run `make tools`")
        extra["PYTHONPATH"] = str(NEWEST)
        # What the test is about: the process really imports that one.
        assert _redis_py(extra) == _installed(NEWEST)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUSPAY_", "PROXY_", "REDIS_"))}
    env.update(
        JUSPAY_BASE_URL=sim.url,
        JUSPAY_MERCHANT_ID="demo_merchant",
        JUSPAY_API_KEY="demo_api_key",
        REDIS_URL=redis_server.url,
        PROXY_PORT=str(free_port()),
        LOG_FORMAT="json",
        **extra,
    )
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        # Files, not pipes: every line from the very first is kept, stdout and stderr apart.
        proc = subprocess.Popen(
            [sys.executable, "-m", "proxy", "serve"], env=env, stdout=stdout, stderr=stderr
        )
        try:
            deadline = time.monotonic() + 30
            while b'"listening"' not in out.read_bytes():
                assert proc.poll() is None, err.read_text()
                assert time.monotonic() < deadline, "serve did not start"
                time.sleep(0.05)
            url = f"http://127.0.0.1:{env['PROXY_PORT']}/orders/JP1636474794"
            with urllib.request.urlopen(url, timeout=10) as answer:
                assert answer.status == 200
        finally:
            proc.terminate()
            code = proc.wait(timeout=30)
    assert code == 0
    for stream in (out, err):
        for line in stream.read_text().splitlines():
            event = json.loads(line)  # a plain-text line (a warning, a traceback) fails here
            assert event.get("logger") != "py.warnings", event
    assert out.read_text().strip()
