"""Reading a proxy app's own metrics in tests (the registry, not a scrape)."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient

from proxy.appkeys import METRICS

Client = TestClient[web.Request, web.Application]


def metric(client: Client, name: str, **labels: str) -> float:
    """A sample's value in the proxy's registry (0 when it has not been recorded yet)."""
    return float(client.app[METRICS].registry.get_sample_value(name, labels) or 0.0)
