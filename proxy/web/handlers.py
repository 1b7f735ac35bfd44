"""Caller-facing handlers: parse and validate the request, ask the order service, answer."""

from __future__ import annotations

import asyncio

import msgspec
from aiohttp import web

from proxy.appkeys import CLIENT, DECODERS, METRICS, ORDER_SERVICE, RECORD, SETTINGS, WAITS
from proxy.core import validators
from proxy.core.errors import BadRequest, Forbidden, ProxyError
from proxy.core.orders import Miss, OrderAnswer, OrderQuery
from proxy.core.waits import is_settled
from proxy.observe import accesslog
from proxy.web.cachecontrol import wants_fresh
from proxy.web.cachestatus import cache_status
from proxy.web.errors import error_body
from proxy.web.ratelimit import upstream_admit

FULL_GATEWAY_RESPONSE = "options.add_full_gateway_response"
TXN_UUID = "txn_uuid"


def _single(request: web.Request, name: str) -> str | None:
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise BadRequest(f"{name} given more than once")
    return values[0] if values else None


def _header(request: web.Request, name: str) -> str | None:
    values = request.headers.getall(name, [])
    if len(values) > 1:
        raise BadRequest(f"{name} header given more than once")
    return values[0] if values else None


def select_merchant(request: web.Request) -> str:
    """The merchant this request is for, checked against what the caller may see."""
    settings = request.app[SETTINGS]
    merchant_header = _header(request, "x-merchantid")
    if merchant_header is None:
        if settings.default_merchant is None:
            raise BadRequest("x-merchantid is required: several merchants are configured")
        merchant_id = settings.default_merchant
    else:
        merchant_id = validators.merchant_id(merchant_header.strip())
    client = request.get(CLIENT)
    record = request[RECORD]
    if client is not None:
        record.client = client.name
    reads_all = client is None or "*" in client.merchants
    allowed = client is None or client.may_read(merchant_id)
    if settings.merchant(merchant_id) is None or not allowed:
        request.app[METRICS].auth_failures.labels(reason="merchant_not_allowed").inc()
        if reads_all:
            # The caller may read every merchant: the only thing wrong is the merchant id.
            raise Forbidden("x-merchantid names a merchant this proxy does not serve")
        # A caller limited to some merchants learns nothing about which others are configured.
        raise Forbidden("this caller may not read orders of that merchant")
    record.merchant_id = merchant_id
    return merchant_id


def parse_order_query(request: web.Request, raw_order_id: str | None) -> OrderQuery:
    """Everything the caller may say about an order read, validated; the rest is ignored."""
    order_id = validators.order_id(raw_order_id)
    request[RECORD].order_id = order_id
    query = read_options(request, order_id)
    # One payment attempt: forwarded and keyed (a batch names many orders, so not there).
    txn_uuid = _single(request, TXN_UUID)
    if txn_uuid is not None:
        query = msgspec.structs.replace(query, txn_uuid=validators.txn_uuid(txn_uuid))
    return query


def read_options(request: web.Request, order_id: str) -> OrderQuery:
    """Merchant, version, routing id and options of a read, from headers and query."""
    settings = request.app[SETTINGS]
    merchant_id = select_merchant(request)

    version_header = _header(request, "version")
    version = (
        validators.api_version(version_header.strip())
        if version_header is not None
        else settings.upstream.api_version
    )
    routing_header = _header(request, "x-routing-id")
    routing_id = validators.routing_id(routing_header) if routing_header is not None else None

    full = _single(request, FULL_GATEWAY_RESPONSE)
    no_cache = wants_fresh(request.headers)
    return OrderQuery(
        merchant_id=merchant_id,
        order_id=order_id,
        version=version,
        full_gateway_response=validators.flag(FULL_GATEWAY_RESPONSE, full) if full else False,
        routing_id=routing_id,
        no_cache=no_cache,
        # "What is it now?": only a read that starts from here on may answer.
        not_before=asyncio.get_running_loop().time() if no_cache else None,
    )


async def _missed(request: web.Request, miss: Miss) -> OrderAnswer:
    """A read the cache did not answer: recorded as such before the upstream call (so a miss
    whose call then fails is still recorded as a miss), then answered from Juspay."""
    request[RECORD].cache = miss.cache.value
    # The caller's upstream rate limit is charged only if a read is made for it.
    return await request.app[ORDER_SERVICE].fetch(miss, upstream_admit(request))


def _etag_matches(request: web.Request, etag: str) -> bool:
    header = request.headers.get("If-None-Match")
    if not header:
        return False
    candidates = {c.strip().removeprefix("W/") for c in header.split(",")}
    return "*" in candidates or etag in candidates


def order_response(
    request: web.Request, answer: OrderAnswer, extra: dict[str, str] | None = None
) -> web.Response:
    entry = answer.entry
    record = request[RECORD]
    record.cache = answer.cache.value
    record.order_status = entry.order_status or None
    record.coalesced = answer.coalesced
    if answer.upstream_status is not None:
        record.upstream_status = answer.upstream_status
    if answer.upstream_elapsed is not None:
        record.upstream_ms = accesslog.milliseconds(answer.upstream_elapsed)
    headers = {
        "X-Cache": answer.cache.header,
        "Cache-Status": cache_status(answer),
        "ETag": entry.etag,
        # Callers may keep it but must revalidate: a payment status is never assumed fresh.
        "Cache-Control": "private, no-cache",
    }
    if answer.age is not None:
        headers["Age"] = str(answer.age)
    if extra:
        headers.update(extra)
    if entry.status_code == 200 and _etag_matches(request, entry.etag):
        return web.Response(status=304, headers=headers)
    headers["Content-Type"] = entry.content_type
    return web.Response(status=entry.status_code, body=entry.body, headers=headers)


def _wait_seconds(request: web.Request) -> float | None:
    raw = _single(request, "wait")
    if raw is None:
        return None
    limit = request.app[WAITS].settings.max_wait_seconds
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= limit:  # also refuses nan and inf
        raise BadRequest(f"wait must be a number of seconds above 0 and at most {limit:g}")
    return seconds


async def get_order(request: web.Request) -> web.Response:
    """GET /orders/{order_id}[?wait=N] — Juspay's order-status path."""
    raw_id = request.match_info["order_id"]
    query_id = _single(request, "order_id")
    if query_id is not None and query_id != raw_id:
        raise BadRequest("order_id in the query differs from the one in the path")
    query = parse_order_query(request, raw_id)
    wait = _wait_seconds(request)
    # The hot path: a hit is answered without recording or admitting anything more.
    found = await request.app[ORDER_SERVICE].lookup(query)
    answer = found if isinstance(found, OrderAnswer) else await _missed(request, found)
    if wait is None:
        return order_response(request, answer)
    if is_settled(answer):
        return order_response(request, answer, {"X-Wait": "final"})
    client = request.get(CLIENT)
    answer, settled = await request.app[WAITS].wait(
        query,
        answer,
        wait,
        client=client.name if client is not None else "",
        admit=upstream_admit(request),  # its polls count against the caller's limit
    )
    return order_response(request, answer, {"X-Wait": "final" if settled else "timeout"})


async def get_order_status(request: web.Request) -> web.Response:
    """GET /order/status?order_id=… — the path older Juspay SDKs call."""
    query = parse_order_query(request, _single(request, "order_id"))
    # The hot path: a hit is answered without recording or admitting anything more.
    found = await request.app[ORDER_SERVICE].lookup(query)
    answer = found if isinstance(found, OrderAnswer) else await _missed(request, found)
    return order_response(request, answer)


async def purge_order(request: web.Request) -> web.Response:
    """DELETE /cache/orders/{order_id} — drop every cached variant (operator clients only)."""
    if CLIENT not in request:
        # Anonymous mode (no client keys configured): there is no operator to trust.
        raise Forbidden("purging needs an operator client key; none are configured")
    order_id = validators.order_id(request.match_info["order_id"])
    request[RECORD].order_id = order_id
    merchant_id = select_merchant(request)
    removed = await request.app[ORDER_SERVICE].invalidate(merchant_id, order_id, "purge")
    return web.json_response(
        {"status": "purged", "merchant_id": merchant_id, "order_id": order_id, "entries": removed}
    )


MAX_BATCH = 100


_encode = msgspec.json.encode


def _batch_item(order_id: str, status: int, cache: str, body: bytes, *, is_json: bool) -> bytes:
    """One result, with the body spliced in as it is (no re-encoding). The proxy's own errors
    are known JSON; any other body is checked, and spliced in as a string if it is not JSON,
    so one odd body can never break the whole answer."""
    if not is_json:
        try:
            msgspec.json.decode(body, type=msgspec.Raw)
        except (msgspec.DecodeError, RecursionError):
            body = _encode(body.decode("utf-8", "replace"))
    return (
        b'{"order_id":'
        + _encode(order_id)
        + b',"http_status":'
        + str(status).encode()
        + b',"cache":'
        + _encode(cache)
        + b',"body":'
        + body
        + b"}"
    )


async def batch_get(request: web.Request) -> web.Response:
    """POST /orders:batchGet {"order_ids": [...]} — many orders, answered item by item."""
    try:
        wanted = request.app[DECODERS].batch_request.decode(await request.read())
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
        raise BadRequest(f'the body must be {{"order_ids": [...]}}: {exc}') from None
    if not 1 <= len(wanted.order_ids) <= MAX_BATCH:
        raise BadRequest(f"order_ids must hold 1 to {MAX_BATCH} ids")
    request.app[METRICS].batch_size.observe(len(wanted.order_ids))
    template = read_options(request, "")  # merchant, version and options, once
    service = request.app[ORDER_SERVICE]
    admit = upstream_admit(request)

    async def one(raw_id: str) -> bytes:
        # As the request metric says it: NONE until the cache is asked, then how it answered.
        cache = "NONE"
        try:
            order_id = validators.order_id(raw_id)
            found = await service.lookup(msgspec.structs.replace(template, order_id=order_id))
            if isinstance(found, OrderAnswer):
                answer = found
            else:
                cache = found.cache.header
                answer = await service.fetch(found, admit)
        except ProxyError as err:
            return _batch_item(raw_id[:80], err.status, cache, error_body(err), is_json=True)
        entry = answer.entry
        return _batch_item(
            order_id, entry.status_code, answer.cache.header, entry.body, is_json=False
        )

    # Issued together, the cache lookups travel to Redis in one round trip, and misses are
    # fetched concurrently (bulkheaded and coalesced like single reads).
    unique = list(dict.fromkeys(wanted.order_ids))
    items = dict(zip(unique, await asyncio.gather(*(one(i) for i in unique)), strict=True))
    body = b'{"orders":[' + b",".join(items[i] for i in wanted.order_ids) + b"]}"
    request[RECORD].cache = "bypass"
    return web.Response(body=body, content_type="application/json")
