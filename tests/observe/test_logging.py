"""The logs: one JSON line per request with the agreed fields, stdlib loggers in the same JSON
shape, and no secret or customer data anywhere in what is written.

Each test configures logging into its own io.StringIO with
proxy.observe.logs.configure_logging, and the fixture puts structlog and the root logger back
afterwards.
"""

from __future__ import annotations

import base64
import json
import logging

import structlog
from aiohttp.http_exceptions import BadHttpMessage

from proxy.config.secrets import MASK
from proxy.devtools.simulator import Fault, SimulatorState
from proxy.observe.logs import redact
from tests.conftest import API_KEY, MERCHANT, ProxyFactory
from tests.monitoring.exposition import BAD_ORDER_ID, SAMPLE_ORDERS, UNKNOWN_ORDER, expect
from tests.support.logcapture import Captured

ORDER = SAMPLE_ORDERS[0]  # JP1636474794, from Juspay's card sample
REQUEST_FIELDS = {
    "request_id",
    "route",
    "status",
    "cache",
    "merchant_id",
    "order_id",
    "upstream_status",
    "upstream_ms",
    "duration_ms",
}
# Every line, from structlog or the standard library, has at least these.
COMMON_FIELDS = {"event", "level", "timestamp"}
CALLER_AUTHORIZATION = "Basic " + base64.b64encode(b"caller-secret-key:").decode()
UPSTREAM_AUTHORIZATION = "Basic " + base64.b64encode(f"{API_KEY}:".encode()).decode()


async def test_one_json_line_per_request_with_the_agreed_fields(
    logs: Captured, make_proxy: ProxyFactory
) -> None:
    proxy = await make_proxy()
    ids = []
    for cache in ("MISS", "HIT"):
        resp = await proxy.get(f"/orders/{ORDER}")
        await resp.read()
        assert resp.status == 200
        assert resp.headers["X-Cache"] == cache
        ids.append(resp.headers["X-Request-Id"])
    await expect(proxy.get("/healthz"), 200)  # an operator endpoint: debug only

    miss, hit = logs.requests()
    assert [miss["request_id"], hit["request_id"]] == ids
    assert set(miss) >= REQUEST_FIELDS
    assert miss["route"] == "order"
    assert miss["status"] == 200
    assert miss["cache"] == "miss"
    assert miss["merchant_id"] == MERCHANT
    assert miss["order_id"] == ORDER
    assert miss["upstream_status"] == 200
    assert isinstance(miss["upstream_ms"], float)
    assert isinstance(miss["duration_ms"], float)
    assert miss["level"] == "info"
    # A hit made no upstream call, so it carries no upstream fields.
    assert REQUEST_FIELDS - {"upstream_status", "upstream_ms"} <= set(hit)
    assert hit["cache"] == "hit"
    assert "upstream_status" not in hit
    assert "upstream_ms" not in hit


async def test_the_callers_request_id_is_logged(logs: Captured, make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy()
    resp = await proxy.get(f"/orders/{ORDER}", headers={"X-Request-Id": "trace-abc.123"})
    await resp.read()
    assert resp.headers["X-Request-Id"] == "trace-abc.123"
    (line,) = logs.requests()
    assert line["request_id"] == "trace-abc.123"


async def test_secrets_and_customer_data_never_reach_the_logs(
    logs: Captured, make_proxy: ProxyFactory, simulator_state: SimulatorState
) -> None:
    body = simulator_state.orders[(MERCHANT, ORDER)].current()
    email, phone = body["customer_email"], body["customer_phone"]
    assert email == "test@gmail.com"
    proxy = await make_proxy()
    headers = {"Authorization": CALLER_AUTHORIZATION}
    await expect(proxy.get(f"/orders/{ORDER}", headers=headers), 200, "MISS")
    await expect(proxy.get(f"/orders/{ORDER}", headers=headers), 200, "HIT")
    await expect(proxy.get("/order/status", params={"order_id": ORDER}), 200, "HIT")
    await expect(proxy.get(f"/orders/{BAD_ORDER_ID}", headers=headers), 400)
    await expect(proxy.get(f"/orders/{UNKNOWN_ORDER}"), 400, "MISS")
    simulator_state.add_fault(Fault(kind="status", status=500, order_id=SAMPLE_ORDERS[1]))
    await expect(proxy.get(f"/orders/{SAMPLE_ORDERS[1]}"), 502)
    simulator_state.add_fault(Fault(kind="malformed", order_id=SAMPLE_ORDERS[2]))
    await expect(proxy.get(f"/orders/{SAMPLE_ORDERS[2]}"), 502)
    # Juspay refusing the proxy's key: the error path that is about credentials.
    simulator_state.merchants[MERCHANT] = "rotated-key"
    await expect(proxy.get(f"/orders/{SAMPLE_ORDERS[3]}"), 502)

    assert len(logs.requests()) == 8
    text = logs.text
    for secret in (API_KEY, UPSTREAM_AUTHORIZATION, CALLER_AUTHORIZATION, email, phone):
        assert secret not in text
    # Nor in their escaped or base64 forms.
    assert base64.b64encode(API_KEY.encode()).decode().rstrip("=") not in text
    assert json.dumps(email)[1:-1] not in text


def test_stdlib_loggers_come_out_as_json_of_the_same_shape(logs: Captured) -> None:
    structlog.get_logger("proxy.test").warning("from_structlog", detail="a")
    logging.getLogger("aiohttp.server").warning("from %s", "aiohttp")
    logging.getLogger("aiohttp.access").info("filtered: our own line replaces it")
    native, foreign = logs.lines()
    assert set(native) >= COMMON_FIELDS
    assert set(foreign) >= COMMON_FIELDS
    assert native["event"] == "from_structlog"
    assert foreign["event"] == "from aiohttp"
    assert foreign["level"] == native["level"] == "warning"
    assert foreign["logger"] == "aiohttp.server"
    assert foreign["timestamp"].endswith("Z")
    assert native["timestamp"].endswith("Z")


def test_stdlib_exceptions_are_rendered_into_the_json_line(logs: Captured) -> None:
    try:
        raise ValueError("boom")  # noqa: TRY301 - a real traceback to render
    except ValueError:
        logging.getLogger("asyncio").exception("task failed")
    (line,) = logs.lines()
    assert line["event"] == "task failed"
    assert line["level"] == "error"
    assert "ValueError: boom" in line["exception"]


def test_redact_masks_fields_named_for_secrets() -> None:
    event = {
        "event": "x",
        "authorization": "Basic abc",
        "Authorization": "Basic def",
        "api_key": API_KEY,
        "password": "hunter2",
        "customer_email": "test@gmail.com",
        "order_id": ORDER,
    }
    assert redact(None, "info", event) == {
        "event": "x",
        "authorization": MASK,
        "Authorization": MASK,
        "api_key": MASK,
        "password": MASK,
        "customer_email": MASK,
        "order_id": ORDER,
    }


def test_redaction_applies_to_what_is_written(logs: Captured) -> None:
    structlog.get_logger("proxy.test").info(
        "leaky",
        authorization=UPSTREAM_AUTHORIZATION,
        api_key=API_KEY,
        password="hunter2",
        customer_email="test@gmail.com",
        order_id=ORDER,
    )
    (line,) = logs.lines()
    assert line["authorization"] == MASK
    assert line["api_key"] == MASK
    assert line["password"] == MASK
    assert line["customer_email"] == MASK
    assert line["order_id"] == ORDER
    for secret in (UPSTREAM_AUTHORIZATION, API_KEY, "hunter2", "test@gmail.com"):
        assert secret not in logs.text


def test_an_http_parser_error_is_logged_by_its_kind_without_the_bytes_it_quotes(
    logs: Captured,
) -> None:
    quoted = "Authorization: Basic b3BrX3NlY3JldDo="
    error = BadHttpMessage(f"Invalid header value char:\n\n  {quoted!r}\n  ^")
    logging.getLogger("aiohttp.server").error(
        "Error handling request from %s", "1.2.3.4", exc_info=error
    )
    (line,) = logs.lines()
    assert line["event"] == "Error handling request from 1.2.3.4: BadHttpMessage"
    assert "b3BrX3NlY3JldDo" not in logs.text
    assert "exception" not in line
