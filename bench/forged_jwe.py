"""The `forged_jwe` bench row: other callers' hit latency while forged JWT webhooks flood in.

A forged token with a kid the proxy holds passes every cheap check and costs an RSA
decryption. The proxy (one process, on the server core) serves paced cache hits, first alone,
then while a separate flooder process posts such tokens (2,000 a second); the row compares the
hits' p99 (target: at most 2x the quiet p99) and counts the flood's answers (401: decrypted
and refused; 503: over the decryption bound, refused at once). A control flood of as many junk
tokens (refused by the cheap checks, no RSA) shows what the request rate alone costs.

    .venv/bin/python -m bench.forged_jwe flood <port> <seconds> <kid> <alg>   (the flooder)
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from bench.env import Env
from bench.harness import (
    API_KEY,
    AUTHORIZATION,
    BIN,
    CLIENT_CORE,
    MERCHANT,
    SERVER_CORE,
    BenchError,
    clean_env,
    free_port,
    request,
    wait_ready,
)

KID = "bench-kid-1"
HIT_ORDER = "BENCH-JWE-HIT"
HIT_CALLERS = 4  # each sends one request, waits for it, pauses HIT_GAP
HIT_GAP = 0.004
FLOOD_CONNECTIONS = 8
# Forged tokens per second (the rate the issue measured, 2,158/s, rounded): paced, so the row
# measures what the tokens cost, not how fast one Python client can send.
FLOOD_RATE = 2000
MAX_P99_RATIO = 2.0


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged_body(kid: str, alg: str = "RSA-OAEP-256") -> bytes:
    """A JWE that looks right (algorithms, a known kid, RSA-sized key) but opens with no key;
    with `alg="none"` the same size of junk, refused before any RSA work (the control)."""
    header = _b64(json.dumps({"alg": alg, "enc": "A256GCM", "kid": kid}).encode())
    parts = (os.urandom(256), os.urandom(12), os.urandom(400), os.urandom(16))
    return json.dumps({"JWT": ".".join([header, *map(_b64, parts)])}).encode()


def _keys(folder: Path) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415 - bench only
    from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: PLC0415

    paths = []
    for name in ("merchant", "juspay"):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        path = folder / f"{name}.pem"
        path.write_bytes(
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
        paths.append(path if name == "merchant" else public)
    return paths[0], paths[1]


async def _hits(port: int, seconds: float) -> list[float]:
    """Latencies (ms) of paced cache hits for `seconds`."""
    url = f"http://127.0.0.1:{port}/orders/{HIT_ORDER}"
    headers = {"Authorization": AUTHORIZATION}
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as session:

        async def caller() -> None:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                async with session.get(url, headers=headers) as resp:
                    await resp.read()
                    if resp.headers.get("X-Cache") != "HIT":
                        raise BenchError(f"expected a HIT, got {resp.status}")
                latencies.append((time.perf_counter() - started) * 1000)
                await asyncio.sleep(HIT_GAP)

        await asyncio.gather(*(caller() for _ in range(HIT_CALLERS)))
    return latencies


def _summary(latencies: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(latencies, n=100)
    return {"requests": len(latencies), "p50_ms": cuts[49], "p99_ms": cuts[98]}


def scenario_forged_jwe(env: Env) -> dict[str, Any]:
    private, public = _keys(env.tmp)
    port = free_port()
    extra = {
        "JUSPAY_BASE_URL": f"http://127.0.0.1:{env.sim_port}",
        "JUSPAY_MERCHANT_ID": MERCHANT,
        "JUSPAY_API_KEY": API_KEY,
        "JUSPAY_WEBHOOK_JWT_KID": KID,
        "JUSPAY_WEBHOOK_JWT_PRIVATE_KEY_FILE": str(private),
        "JUSPAY_WEBHOOK_JWT_PUBLIC_KEY_FILE": str(public),
        "PROXY_PORT": str(port),
        "PROXY_DRAIN_SECONDS": "1",
        "LOG_LEVEL": "warning",
    }
    argv = [str(BIN / "order-proxy"), "serve"]
    proxy = env.procs.start("proxy-jwe", argv, core=SERVER_CORE, env=clean_env(**extra))
    try:
        wait_ready(port, "/readyz", proxy)
        body = {"order_id": HIT_ORDER, "status": "CHARGED"}
        if request(env.sim_port, "/__sim/orders", method="POST", json_body=body).status != 200:
            raise BenchError("simulator refused the order")
        request(port, f"/orders/{HIT_ORDER}", headers={"Authorization": AUTHORIZATION})
        seconds = env.cfg.duration
        asyncio.run(_hits(port, env.cfg.warmup))
        quiet = _summary(asyncio.run(_hits(port, seconds)))
        flooded, counts = _flooded(env, port, seconds, "RSA-OAEP-256")
        # The control: as many junk tokens, refused by the cheap checks (no RSA at all).
        control, _ = _flooded(env, port, seconds, "none")
    finally:
        env.procs.stop(proxy)
    return {
        "quiet": quiet,
        "flooded": flooded,
        "junk_flooded": control,
        "p99_ratio": flooded["p99_ms"] / quiet["p99_ms"],
        "forged_per_second": sum(counts.values()) / (seconds + 1),
        "forged_answers": counts,
    }


def _flooded(env: Env, port: int, seconds: float, alg: str) -> tuple[dict[str, float], Any]:
    """Hit latencies while a flooder process posts tokens with `alg`; and its answer counts."""
    argv = [sys.executable, "-m", "bench.forged_jwe", "flood", str(port), str(seconds + 1)]
    flooder = env.procs.start(f"jwe-flooder-{alg}", [*argv, KID, alg], core=CLIENT_CORE)
    try:
        latencies = _summary(asyncio.run(_hits(port, seconds)))
        flooder.popen.wait(timeout=seconds + 30)
    finally:
        env.procs.stop(flooder)
    return latencies, json.loads(flooder.log_path.read_text().strip().splitlines()[-1])


def forged_jwe_row(data: dict[str, Any]) -> list[str]:
    """The report cells: req/s, p50, p99, CPU, ratio, target, verdict."""
    ratio = data["p99_ratio"]
    return [
        f"{data['forged_per_second']:.0f} forged/s",
        f"{data['flooded']['p50_ms']:.2f}",
        f"{data['flooded']['p99_ms']:.2f}",
        "-",
        f"hit p99 {ratio:.1f}x quiet ({data['quiet']['p99_ms']:.2f} ms); "
        f"junk flood {data['junk_flooded']['p99_ms']:.2f} ms",
        f"<= {MAX_P99_RATIO:g}x quiet p99",
        "PASS" if ratio <= MAX_P99_RATIO else "FALL SHORT",
    ]


async def flood(port: int, seconds: float, kid: str, alg: str) -> Counter[int]:
    """Post forged tokens at FLOOD_RATE a second on FLOOD_CONNECTIONS connections (each on
    its own schedule, catching up when late); the answers by status."""
    url = f"http://127.0.0.1:{port}/webhooks/juspay"
    statuses: Counter[int] = Counter()
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=FLOOD_CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> None:
            interval = FLOOD_CONNECTIONS / FLOOD_RATE
            due = time.monotonic()
            while due < deadline:
                async with session.post(url, data=forged_body(kid, alg)) as resp:
                    await resp.read()
                    statuses[resp.status] += 1
                due += interval
                await asyncio.sleep(max(0.0, due - time.monotonic()))

        await asyncio.gather(*(one() for _ in range(FLOOD_CONNECTIONS)))
    return statuses


if __name__ == "__main__":
    if len(sys.argv) != 6 or sys.argv[1] != "flood":
        raise SystemExit(__doc__)
    answers = asyncio.run(flood(int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]))
    print(json.dumps({str(status): count for status, count in sorted(answers.items())}))
