"""`serve` that cannot listen: one line naming the setting, exit 2, no traceback."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from proxy.startup import listen_failed
from tests.support.processes import RedisProcess

ENV = {
    "JUSPAY_BASE_URL": "http://127.0.0.1:9",
    "JUSPAY_MERCHANT_ID": "m1",
    "JUSPAY_API_KEY": "sk_startup_secret_42",
    "PROXY_VERIFY_SAMPLE_RATE": "0",
}


def serve(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("JUSPAY_", "REDIS_", "PROXY_"))
    }
    return subprocess.run(
        [sys.executable, "-m", "proxy", "serve", *args],
        env={**clean, **ENV, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port another socket (without SO_REUSEPORT) listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if not line.startswith("{")]
    assert len(lines) == 1, result.stderr
    assert ENV["JUSPAY_API_KEY"] not in result.stderr + result.stdout
    return lines[0]


def test_a_port_in_use_is_one_line_naming_proxy_port(taken_port: int) -> None:
    line = _one_line(serve(PROXY_PORT=str(taken_port)))
    assert line == (
        f"order-proxy: cannot listen on PROXY_HOST=127.0.0.1 PROXY_PORT={taken_port}: "
        "address already in use (another process listens there)"
    )


def test_an_internal_port_in_use_names_proxy_internal_port(taken_port: int) -> None:
    line = _one_line(serve(PROXY_PORT="0", PROXY_INTERNAL_PORT=str(taken_port)))
    assert f"PROXY_INTERNAL_PORT={taken_port}: address already in use" in line


def test_an_address_this_host_does_not_have_names_proxy_host() -> None:
    # TEST-NET-1 (RFC 5737): no interface has it; binding fails without sending anything.
    line = _one_line(serve(PROXY_HOST="192.0.2.1", PROXY_PORT="0", PROXY_ALLOW_ANONYMOUS="true"))
    assert "PROXY_HOST=192.0.2.1 PROXY_PORT=0: address not available" in line


def test_a_host_name_that_cannot_resolve_names_proxy_host() -> None:
    # Refused before any lookup (a label over 63 characters): nothing leaves the machine.
    host = "a" * 64 + ".example"
    line = _one_line(serve(PROXY_HOST=host, PROXY_PORT="0", PROXY_ALLOW_ANONYMOUS="true"))
    assert f"PROXY_HOST={host} PROXY_PORT=0: unknown host" in line


def test_unknown_host_and_permission_denied_read_as_such() -> None:
    # Real errors from the socket layer, made without DNS traffic or an unprivileged user.
    try:
        socket.getaddrinfo("not-numeric", None, flags=socket.AI_NUMERICHOST)
    except socket.gaierror as exc:
        unknown = listen_failed(exc, "PROXY_HOST", "not-numeric", "PROXY_PORT", 8080)
    assert str(unknown).startswith(
        "cannot listen on PROXY_HOST=not-numeric PROXY_PORT=8080: unknown host ("
    )
    denied = listen_failed(
        OSError(errno.EACCES, os.strerror(errno.EACCES)),
        "PROXY_HOST",
        "127.0.0.1",
        "PROXY_PORT",
        80,
    )
    assert str(denied) == (
        "cannot listen on PROXY_HOST=127.0.0.1 PROXY_PORT=80: "
        "permission denied (ports below 1024 need privileges)"
    )


@pytest.mark.slow
def test_workers_that_cannot_listen_end_the_parent_with_2(
    taken_port: int, redis_server: RedisProcess
) -> None:
    result = serve("--workers", "2", PROXY_PORT=str(taken_port), REDIS_URL=redis_server.url)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"PROXY_PORT={taken_port}: address already in use" in result.stderr
    assert '"worker_start_failed"' in result.stdout + result.stderr
