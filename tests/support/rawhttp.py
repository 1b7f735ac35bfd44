"""Send a request exactly as written (no client-side URL normalisation) and read the answer."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def raw_get(
    host: str,
    port: int,
    target: str,
    headers: dict[str, str] | list[tuple[str, str]] | None = None,
    *,
    version: str = "1.1",
) -> RawResponse:
    """`headers` as a list of pairs sends a name on several lines, in that order."""
    reader, writer = await asyncio.open_connection(host, port)
    pairs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    try:
        lines = [f"GET {target} HTTP/{version}", f"Host: {host}:{port}", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in pairs]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await writer.drain()
        data = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    if parsed.get("transfer-encoding") == "chunked":
        body = _dechunk(body)
    return RawResponse(int(status_line.split()[1]), parsed, body)


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2 :]
    return out
