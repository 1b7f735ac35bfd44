"""JSON log lines captured in memory: what tests read back of what the proxy logged."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from proxy.observe.logs import configure_logging


class Captured:
    def __init__(self) -> None:
        self.buffer = io.StringIO()

    @property
    def text(self) -> str:
        return self.buffer.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        """Every line written, each parsed as one JSON object (fails on any other line)."""
        out = []
        for line in self.text.splitlines():
            parsed = json.loads(line)
            assert isinstance(parsed, dict), line
            out.append(parsed)
        return out

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("event") == name]

    def requests(self) -> list[dict[str, Any]]:
        return self.events("request")


@pytest.fixture
def logs() -> Iterator[Captured]:
    """Logging configured as `serve` does (info, JSON) into a buffer; put back afterwards."""
    root = logging.getLogger()
    access = logging.getLogger("aiohttp.access")
    saved = (list(root.handlers), root.level, access.level)
    captured = Captured()
    configure_logging("info", "json", stream=captured.buffer)
    yield captured
    structlog.reset_defaults()
    root.handlers, level, access_level = saved
    root.setLevel(level)
    access.setLevel(access_level)
    logging.captureWarnings(False)  # configure_logging turned it on
