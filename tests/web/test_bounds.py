"""Bounds that hold without a key, tried as an attacker would, against a real `serve` process."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.processes import ServiceProcess, proxy_process

MIB = 1024 * 1024


def rss(pid: int) -> int:
    """Resident memory of a process, in bytes (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def proxy_env(sim: ServiceProcess, config: Path | None = None) -> dict[str, str]:
    env = {
        "JUSPAY_BASE_URL": sim.url,
        "JUSPAY_MERCHANT_ID": "demo_merchant",
        "JUSPAY_API_KEY": "demo_api_key",
        "LOG_FORMAT": "json",
    }
    if config is not None:
        env["PROXY_CONFIG_FILE"] = str(config)
    return env


@pytest.fixture
def served(sim: ServiceProcess, tmp_path: Path) -> Iterator[ServiceProcess]:
    """The proxy with short deadlines, so a test sees them pass (the defaults are 10 s)."""
    config = tmp_path / "proxy.toml"
    config.write_text("[server]\nheader_timeout_seconds = 2.0\nbody_timeout_seconds = 2.0\n")
    proc = proxy_process(proxy_env(sim, config)).start()
    yield proc
    proc.stop()


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """Everything the server sent until it closed the connection (fails if it stays open).
    A server closing with unread bytes from us resets the connection: closed, nothing read."""
    try:
        return await asyncio.wait_for(reader.read(), timeout=seconds)
    except ConnectionError:  # reset, or the pipe broke while we still wrote
        return b""


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _unfinished_headers(port: int, headers: int, size: int) -> Connection:
    """A connection sending a request line and `headers` headers of `size` bytes, never the
    blank line that ends them."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    with contextlib.suppress(ConnectionError):
        writer.write(b"GET /orders/ORD1 HTTP/1.1\r\nHost: proxy\r\n")
        for i in range(headers):
            writer.write(b"X-Pad-%d: %s\r\n" % (i, b"a" * size))
            await writer.drain()
    return reader, writer


async def test_unfinished_headers_on_120_connections_cost_under_48_mib(
    served: ServiceProcess,
) -> None:
    before = rss(served.pid)
    connections = await asyncio.gather(
        *(_unfinished_headers(served.port, headers=120, size=8000) for _ in range(120))
    )
    grown = rss(served.pid) - before
    if grown >= 48 * MIB:
        for _, writer in connections:
            writer.close()
    assert grown < 48 * MIB, f"RSS grew {grown / MIB:.1f} MiB"
    # Each connection is refused once its headers pass the total bound, long before the end.
    answers = await asyncio.gather(*(_closed_within(r, 10) for r, _ in connections))
    for _, writer in connections:
        writer.close()
    # Closed (a 431 first, unless the reset that unread bytes cause overtook it).
    assert all(a == b"" or a.startswith(b"HTTP/1.1 431 ") for a in answers), answers[0][:100]


async def test_headers_that_never_end_are_cut_off_at_the_header_deadline(
    served: ServiceProcess,
) -> None:
    started = time.monotonic()
    reader, writer = await _unfinished_headers(served.port, headers=1, size=10)
    answer = await _closed_within(reader, 8)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert time.monotonic() - started < 6  # the deadline is 2 s, keep-alive 75 s


async def _answer(reader: asyncio.StreamReader) -> bytes:
    """One whole answer to a GET on a kept-alive connection (its head and its body)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    return head + await reader.readexactly(length)


async def test_a_slow_request_after_others_gets_its_own_whole_deadline(
    served: ServiceProcess,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: proxy\r\n\r\n")
    assert (await asyncio.wait_for(_answer(reader), 5)).startswith(b"HTTP/1.1 200 ")
    # The next request starts 1.5 s later and takes 1 s to send its headers: it is still
    # sending them 2 s after the first request began, and inside its own 2 s, so it is served.
    await asyncio.sleep(1.5)
    writer.write(b"GET /healthz HTTP/1.1\r\n")
    await writer.drain()
    await asyncio.sleep(1.0)  # the caller's pace: half of its headers now, the rest later
    writer.write(b"Host: proxy\r\n\r\n")
    assert (await asyncio.wait_for(_answer(reader), 5)).startswith(b"HTTP/1.1 200 ")
    writer.close()


async def test_a_request_stalling_after_others_is_cut_off_at_its_own_deadline(
    served: ServiceProcess,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: proxy\r\n\r\n")
    assert (await asyncio.wait_for(_answer(reader), 5)).startswith(b"HTTP/1.1 200 ")
    # Later than the first request's deadline would be checked (2 s after it), a request
    # whose headers never end: refused 2 s after its own first byte, not sooner.
    await asyncio.sleep(1.2)
    writer.write(b"GET /orders/ORD1 HTTP/1.1\r\nHost: proxy\r\n")
    await writer.drain()
    stalled = time.monotonic()
    answer = await _closed_within(reader, 8)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert 1.8 <= time.monotonic() - stalled < 6


async def test_a_body_that_never_ends_is_cut_off_at_the_body_deadline(
    served: ServiceProcess,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    writer.write(
        b"POST /orders:batchGet HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\n"
        b'Content-Length: 1000\r\n\r\n{"order_ids": ['
    )
    await writer.drain()
    started = time.monotonic()
    answer = await _closed_within(reader, 8)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"request_timeout" in answer
    assert time.monotonic() - started < 6
    writer.close()


async def test_connections_over_the_limit_get_a_503_and_are_closed(
    sim: ServiceProcess, tmp_path: Path
) -> None:
    config = tmp_path / "proxy.toml"
    config.write_text("[server]\nmax_connections = 16\n")
    proc = proxy_process(proxy_env(sim, config)).start()
    held = []
    try:
        for _ in range(16):
            held.append(await asyncio.open_connection("127.0.0.1", proc.port))
        reader, writer = await asyncio.open_connection("127.0.0.1", proc.port)
        answer = await _closed_within(reader, 5)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 503 ")
        # One held connection closes: a new one is served again.
        held.pop()[1].close()
        for _ in range(50):
            reader, writer = await asyncio.open_connection("127.0.0.1", proc.port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: proxy\r\nConnection: close\r\n\r\n")
            answer = await _closed_within(reader, 5)
            writer.close()
            if answer.startswith(b"HTTP/1.1 200 "):
                break
            await asyncio.sleep(0.05)  # the server has not seen the close yet: try again
        assert answer.startswith(b"HTTP/1.1 200 ")
    finally:
        for _, writer in held:
            writer.close()
        proc.stop()


CLIENT_KEY = "opk_secret_client_key_0123456789"
CREDENTIALS = base64.b64encode(f"{CLIENT_KEY}:".encode()).decode()


async def _send(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    answer = await _closed_within(reader, 10)
    writer.close()
    return answer


def _output_with(proc: ServiceProcess, marker: bytes, seconds: float = 10) -> bytes:
    """The process' output once it holds `marker` (its log lines are written in batches)."""
    deadline = time.monotonic() + seconds
    while marker not in (output := proc.output()):
        assert time.monotonic() < deadline, f"no {marker!r} in {output[-2000:]!r}"
        time.sleep(0.05)
    return output


@pytest.mark.parametrize(
    "malformed",
    [
        # A bare LF ends the Authorization line.
        f"GET /orders/ORD1 HTTP/1.1\r\nHost: p\r\nAuthorization: Basic {CREDENTIALS}\n\r\n",
        # A control byte inside the Authorization value.
        f"GET /orders/ORD1 HTTP/1.1\r\nHost: p\r\nAuthorization: Basic {CREDENTIALS}\x01\r\n\r\n",
    ],
    ids=["bare_lf", "control_byte"],
)
async def test_a_request_the_parser_refuses_is_a_bare_400_and_one_line_quoting_nothing(
    served: ServiceProcess, malformed: str
) -> None:
    answers = [await _send(served.port, malformed.encode("latin-1")) for _ in range(20)]
    for answer in answers:
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.split(b" ")[1] == b"400", answer[:200]
        assert b"\r\nserver:" not in head.lower()
        assert body == b"Bad Request\n"
    output = _output_with(served, b'"request_refused"')
    # One warning line for the twenty refusals (at most one per 10 s), at warning level.
    refused = [json.loads(line) for line in output.splitlines() if b"request_refused" in line]
    assert len(refused) == 1
    assert refused[0]["level"] == "warning"
    for line in output.splitlines():
        json.loads(line)  # every line is JSON
    for secret in (CLIENT_KEY, CREDENTIALS, CREDENTIALS[:12]):
        assert secret.encode() not in output
    assert b"Traceback" not in output
    assert b"Error handling request" not in output


def _pem_files(folder: Path) -> dict[str, str]:
    """JWT webhook settings for `serve`: a merchant key pair and a "Juspay" key pair."""
    paths = {}
    for name in ("merchant", "juspay"):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        private = folder / f"{name}.pem"
        private.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        public = folder / f"{name}.pub.pem"
        public.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        paths[name] = (private, public)
    return {
        "JUSPAY_WEBHOOK_JWT_KID": "kid-1",
        "JUSPAY_WEBHOOK_JWT_PRIVATE_KEY_FILE": str(paths["merchant"][0]),
        "JUSPAY_WEBHOOK_JWT_PUBLIC_KEY_FILE": str(paths["juspay"][1]),
    }


async def _stalled_webhook(port: int, size: int) -> Connection:
    """A webhook whose body stops one byte short of its Content-Length."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /webhooks/juspay HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % size
    )
    writer.write(b'{"JWT": "' + b"a" * (size - 10))  # not drained: the server may stop reading
    return reader, writer


async def test_300_stalled_webhook_bodies_hold_little_memory_and_no_connection_for_long(
    sim: ServiceProcess, tmp_path: Path
) -> None:
    config = tmp_path / "proxy.toml"
    config.write_text("[server]\nbody_timeout_seconds = 2.0\n")
    env = {**proxy_env(sim, config), **_pem_files(tmp_path)}
    proc = proxy_process(env).start()
    try:
        before = rss(proc.pid)
        started = time.monotonic()
        connections = [await _stalled_webhook(proc.port, 262_144) for _ in range(300)]
        closing = asyncio.gather(*(_closed_within(r, 20) for r, _ in connections))
        peak = before
        while not closing.done():  # sample memory while the bodies are held
            peak = max(peak, rss(proc.pid))
            await asyncio.wait([closing], timeout=0.1)
        answers = closing.result()
        elapsed = time.monotonic() - started
        for _, writer in connections:
            writer.close()
    finally:
        proc.stop()
    statuses = {a.split(b" ")[1] for a in answers if a}
    # At most `max_unauthenticated_bodies` are read at once (the rest are 503 at once), and
    # each of those is cut off at the body deadline (2 s here): none is held for long.
    assert (peak - before) < 40 * MIB, f"RSS grew {(peak - before) / MIB:.1f} MiB"
    assert elapsed < 15
    assert statuses <= {b"503", b"408"}, statuses
    assert b"503" in statuses
