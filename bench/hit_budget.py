"""The per-hit budget: what each step of an in-process cache hit costs, measured one by one.

    .venv/bin/python -m bench.hit_budget [--requests 5000] [--rounds 5]

In one process (uvloop, logs as `serve` writes them, to a temporary file): the simulator as
upstream, the proxy app started as `serve` starts it (default settings, no client keys, the
in-process layer), one order read once so that every later read is a hit. Then each step of a
hit is timed alone over `--requests` fresh requests (aiohttp's `make_mocked_request`: a real
request object, parsed headers and query, no socket), the median of `--rounds`:

  lane        FastLane: route resolved, the app's middlewares and handler (no response write)
  application web.Application._handle for the same request (what the fast lane replaces)
  resolve     the router's resolve alone
  handler     get_order alone (the request record set, as the middleware sets it)
  parse       parse_order_query: headers and query read, every field validated
  lookup      OrderService.lookup of the parsed query (a fresh in-memory entry)
  respond     order_response: X-Cache, Cache-Status, ETag, Age, the web.Response
  metrics     Metrics.observe_request (the request counter and histogram, children cached)
  line        one access line, encoded and written through the sink

What aiohttp itself costs per request (parser, Request, response head, transport) is what the
ceilings of `make bench` measure; the budget in docs/performance.md puts the two together.
Prints one JSON object: microseconds per step.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict
from yarl import URL

from bench._serve import install_uvloop
from proxy.app import create_app
from proxy.appkeys import METRICS, ORDER_SERVICE, RECORD, RequestRecord
from proxy.config.secrets import Secret
from proxy.config.settings import CacheSettings, MerchantSettings, Settings, UpstreamSettings
from proxy.devtools.simulator import SimulatorState, create_simulator_app
from proxy.observe import accesslog
from proxy.observe.logs import configure_logging
from proxy.web import handlers
from proxy.web.fastlane import FAST_LANE
from proxy.web.middlewares import _write_request_line

MERCHANT = "bench_merchant"
API_KEY = "bench_api_key_0123456789"
ORDER = "JP1636474794"  # one of the simulator's seeded samples
PATH = f"/orders/{ORDER}"


def _settings(upstream: URL) -> Settings:
    return Settings(
        merchants=(MerchantSettings(MERCHANT, Secret(API_KEY, "bench")),),
        default_merchant=MERCHANT,
        upstream=UpstreamSettings(base_url=upstream, timeout_seconds=5.0),
        cache=CacheSettings(verify_sample_rate=0.0),
    )


def _request(app: web.Application) -> web.Request:
    headers = CIMultiDict({"Host": "proxy", "User-Agent": "wrk", "Accept": "*/*"})
    return make_mocked_request("GET", PATH, headers=headers, app=app)


async def _per_request(
    app: web.Application,
    step: Callable[[web.Request], Awaitable[object] | object],
    requests: int,
    rounds: int,
    prepare: Callable[[web.Request], None] | None = None,
) -> float:
    """Median over `rounds` of the µs one call of `step` takes, on fresh requests."""
    results = []
    for _ in range(rounds):
        batch = [_request(app) for _ in range(requests)]
        if prepare is not None:
            for request in batch:
                prepare(request)
        started = time.perf_counter()
        for request in batch:
            result = step(request)
            if asyncio.iscoroutine(result):
                await result
        results.append((time.perf_counter() - started) / requests * 1e6)
    return round(statistics.median(results), 2)


async def measure(requests: int, rounds: int) -> dict[str, Any]:
    state = SimulatorState({MERCHANT: API_KEY})
    state.seed_samples()
    sim = web.AppRunner(create_simulator_app(state), access_log=None)
    await sim.setup()
    site = web.TCPSite(sim, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    app = create_app(_settings(URL(f"http://127.0.0.1:{port}")))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()  # starts the app's resources, as `serve` does
    try:
        lane = app[FAST_LANE]
        first = await lane(_request(app))
        assert first.status == 200, first.status
        service, metrics = app[ORDER_SERVICE], app[METRICS]
        query = handlers.parse_order_query(_with_record(_request(app)), ORDER)
        answer = await service.lookup(query)
        assert not isinstance(answer, handlers.Miss), "the bench order is not cached"

        async def resolve(request: web.Request) -> object:
            return await app.router.resolve(request)

        async def handler(request: web.Request) -> object:
            match_info = await app.router.resolve(request)
            match_info.add_app(app)
            request._match_info = match_info
            request[RECORD] = RequestRecord(request_id="x", route="order")
            return await handlers.get_order(request)

        def line(request: web.Request) -> None:
            record = RequestRecord(request_id="x", route="order", cache="hit")
            record.merchant_id, record.order_id, record.order_status = MERCHANT, ORDER, "CHARGED"
            _write_request_line(request, record, 200, 0.0004, True)

        out: dict[str, Any] = {
            "lane_us": await _per_request(app, lane, requests, rounds),
            "application_us": await _per_request(app, app._handle, requests, rounds),
            "resolve_us": await _per_request(app, resolve, requests, rounds),
            "handler_with_resolve_us": await _per_request(app, handler, requests, rounds),
            "parse_us": await _per_request(
                app,
                lambda r: handlers.parse_order_query(r, ORDER),
                requests,
                rounds,
                _with_record,
            ),
            "lookup_us": await _per_request(app, lambda _: service.lookup(query), requests, rounds),
            "respond_us": await _per_request(
                app, lambda r: handlers.order_response(r, answer), requests, rounds, _with_record
            ),
            "metrics_us": await _per_request(
                app,
                lambda _: metrics.observe_request("order", 200, "hit", 0.0004),
                requests,
                rounds,
            ),
            "line_us": await _per_request(app, line, requests, rounds),
            "requests": requests,
            "rounds": rounds,
        }
        return out
    finally:
        await runner.cleanup()
        await sim.cleanup()


def _with_record(request: web.Request) -> web.Request:
    request[RECORD] = RequestRecord(request_id="x", route="order")
    return request


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--requests", type=int, default=5000)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    install_uvloop()
    with tempfile.TemporaryFile("w") as logfile:
        configure_logging("info", "json", stream=logfile)
        result = asyncio.run(measure(args.requests, args.rounds))
        sink = accesslog.sink()
        if sink is not None:
            sink.flush()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
