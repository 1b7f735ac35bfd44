"""Talking to a simulator (and proxies) running as processes: control API and order reads."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from tests.support.processes import ServiceProcess


async def control(
    http: aiohttp.ClientSession,
    sim: ServiceProcess,
    path: str,
    method: str | None = None,
    **body: Any,
) -> Any:
    """Drive the simulator's control API: GET without a body, POST with one."""
    method = method or ("POST" if body else "GET")
    kwargs = {"json": body} if method == "POST" else {}
    async with http.request(method, f"{sim.url}/__sim/{path}", **kwargs) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def get(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> tuple[int, str, str | None]:
    """(status, X-Cache, the order status in the body if it is an order)."""
    async with http.get(url, headers=headers) as resp:
        raw = await resp.read()
        try:
            status = json.loads(raw).get("status")
        except (ValueError, AttributeError):
            status = None
        return resp.status, resp.headers.get("X-Cache", ""), status
