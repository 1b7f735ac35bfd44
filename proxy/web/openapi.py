"""The service's own OpenAPI description, served at /openapi.json (built once per app)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from proxy import __version__
from proxy.appkeys import OPENAPI
from proxy.core.validators import ORDER_ID_MAX_LENGTH, TXN_UUID_MAX_LENGTH

ORDER_ID_PATTERN = rf"^[A-Za-z0-9][A-Za-z0-9._-]{{0,{ORDER_ID_MAX_LENGTH - 1}}}$"
TXN_UUID_PATTERN = rf"^[A-Za-z0-9][A-Za-z0-9._-]{{0,{TXN_UUID_MAX_LENGTH - 1}}}$"
_ERROR = {"$ref": "#/components/schemas/JuspayError"}
_JSON_ERROR = {"application/json": {"schema": _ERROR}}
_REQUEST_ID = {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}}


def _error(description: str, *, retry_after: bool = False) -> dict[str, Any]:
    headers: dict[str, Any] = dict(_REQUEST_ID)
    if retry_after:
        headers["Retry-After"] = {"schema": {"type": "integer", "minimum": 1}, "required": True}
    return {"description": description, "headers": headers, "content": _JSON_ERROR}


_ORDER_ERRORS: dict[str, Any] = {
    "400": {
        "description": "Bad order id, header or query; or Juspay's own 400 (NOT_FOUND) passed on",
        "headers": _REQUEST_ID,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Status"}}},
    },
    "401": _error("Caller credentials missing or wrong (when client keys are configured)"),
    "403": _error("The caller may not read this merchant's orders"),
    "404": _error("No such route"),
    "429": _error("This client is over its rate limit", retry_after=True),
    "502": _error("Juspay refused the proxy's key, sent an unusable body, or was unreachable"),
    "503": _error("Load shed, circuit open or Juspay rate limiting", retry_after=True),
    "504": _error("Juspay did not answer within the deadline"),
}
_CACHE_HEADERS = {
    **_REQUEST_ID,
    "X-Cache": {"schema": {"type": "string", "enum": ["HIT", "MISS", "BYPASS", "STALE"]}},
    # RFC 9211: "order-proxy; hit; ttl=N", or "order-proxy; fwd=miss|request|stale[; stored]".
    "Cache-Status": {"schema": {"type": "string", "pattern": "^order-proxy; (hit|fwd=)"}},
    "ETag": {"schema": {"type": "string"}},
    "Age": {"schema": {"type": "integer", "minimum": 0}},
}
_ORDER_OK = {
    "200": {
        "description": "Juspay's order, byte for byte",
        "headers": _CACHE_HEADERS,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Order"}}},
    },
    "304": {"description": "Not modified (If-None-Match matched)", "headers": _CACHE_HEADERS},
}
_ORDER_HEADERS = [
    {"$ref": "#/components/parameters/version"},
    {"$ref": "#/components/parameters/x-merchantid"},
    {"$ref": "#/components/parameters/x-routing-id"},
    {
        "name": "Cache-Control",
        "in": "header",
        "description": "no-cache (any line or list member, any case) reads Juspay now: "
        "X-Cache BYPASS",
        "schema": {"type": "string", "maxLength": 200},
    },
    {
        "name": "Pragma",
        "in": "header",
        "description": "no-cache (HTTP/1.0) does the same, even beside Cache-Control",
        "schema": {"type": "string", "maxLength": 200},
    },
    # W3C trace context: continued to Juspay (an invalid one is ignored, never refused).
    {"name": "traceparent", "in": "header", "schema": {"type": "string", "maxLength": 512}},
    {"name": "tracestate", "in": "header", "schema": {"type": "string", "maxLength": 512}},
]


_FULL_GATEWAY_RESPONSE = {
    "name": "options.add_full_gateway_response",
    "in": "query",
    "description": "true or 1 (any case) adds the gateway's full response; every spelling "
    "shares one cache entry",
    "schema": {"type": "string", "pattern": "^([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]|1|0)$"},
}
_TXN_UUID = {
    "name": "txn_uuid",
    "in": "query",
    "description": "One payment attempt: forwarded to Juspay and part of the cache key",
    "schema": {"type": "string", "pattern": TXN_UUID_PATTERN},
}


async def openapi_json(request: web.Request) -> web.Response:
    """GET /openapi.json: the description, encoded once when the app was built."""
    return web.Response(body=request.app[OPENAPI], content_type="application/json")


def build_openapi() -> dict[str, Any]:
    order_id_param = {
        "name": "order_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": ORDER_ID_PATTERN},
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "order-proxy",
            "version": __version__,
            "description": "Read-through caching proxy in front of Juspay's Order Status API.",
        },
        "security": [{"clientKey": []}, {}],
        "paths": {
            "/orders/{order_id}": {
                "get": {
                    "operationId": "getOrder",
                    "summary": "Juspay's order status (cached when final)",
                    "parameters": [
                        order_id_param,
                        *_ORDER_HEADERS,
                        _FULL_GATEWAY_RESPONSE,
                        _TXN_UUID,
                        {
                            "name": "wait",
                            "in": "query",
                            "description": "Hold the answer up to this many seconds until the "
                            "order leaves the in-progress statuses (X-Wait: final | timeout)",
                            "schema": {
                                "type": "number",
                                "exclusiveMinimum": True,
                                "minimum": 0,
                                "maximum": 30,
                            },
                        },
                    ],
                    "responses": {**_ORDER_OK, **_ORDER_ERRORS},
                }
            },
            "/orders:batchGet": {
                "post": {
                    "operationId": "batchGetOrders",
                    "summary": "Many orders in one call, answered item by item",
                    "parameters": _ORDER_HEADERS,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["order_ids"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "order_ids": {
                                            "type": "array",
                                            "minItems": 1,
                                            "maxItems": 100,
                                            "items": {"type": "string"},
                                        }
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "One item per requested id, in order",
                            "headers": _REQUEST_ID,
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/BatchResult"}
                                }
                            },
                        },
                        **{k: v for k, v in _ORDER_ERRORS.items() if k != "502"},
                        "413": _error("Body too large"),
                    },
                }
            },
            "/order/status": {
                "get": {
                    "operationId": "getOrderStatusLegacy",
                    "summary": "The path older Juspay SDKs call",
                    "parameters": [
                        {
                            "name": "order_id",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "string", "pattern": ORDER_ID_PATTERN},
                        },
                        *_ORDER_HEADERS,
                        _FULL_GATEWAY_RESPONSE,
                        _TXN_UUID,
                    ],
                    "responses": {**_ORDER_OK, **_ORDER_ERRORS},
                }
            },
            "/cache/orders/{order_id}": {
                "delete": {
                    "operationId": "purgeOrder",
                    "summary": "Drop every cached variant of an order (operator clients)",
                    "parameters": [
                        order_id_param,
                        {"$ref": "#/components/parameters/x-merchantid"},
                    ],
                    "responses": {
                        "200": {
                            "description": "Purged",
                            "headers": _REQUEST_ID,
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Purged"}
                                }
                            },
                        },
                        "400": _error("Bad order id or header"),
                        "401": _error("Credentials missing or wrong"),
                        "403": _error("Not an operator client, or merchant not allowed"),
                        "404": _error("No such route"),
                        "429": _error("This client is over its rate limit", retry_after=True),
                        "503": _error("The cache could not be reached"),
                    },
                }
            },
            "/webhooks/juspay": {
                "post": {
                    "operationId": "juspayWebhook",
                    "summary": "Juspay's webhooks: a signal that an order changed",
                    "description": "Either a plain event with HTTP Basic credentials (the "
                    "merchant's own pair, or the shared one), or Juspay's JWT webhook "
                    '{"JWT": "<compact JWE>"} (RSA-OAEP or RSA-OAEP-256 + A256GCM around an '
                    "RS256 JWS; the key is chosen by the kid in the JWE header), which needs "
                    "no Basic credentials. The event's order is invalidated and re-read from "
                    "Juspay; the webhook's own copy is never served.",
                    "security": [{"webhookBasic": []}, {}],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        {"$ref": "#/components/schemas/WebhookEvent"},
                                        {"$ref": "#/components/schemas/JwtWebhook"},
                                    ]
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "Taken: the order was invalidated, or there was "
                            "nothing to do (an event naming no order, a merchant not served, "
                            "a JWT webhook already handled)",
                            "headers": _REQUEST_ID,
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/WebhookResult"}
                                }
                            },
                        },
                        "400": _error("Malformed, hostile or oversized body; nothing changed"),
                        "401": _error(
                            "Webhook credentials missing or wrong, webhooks not configured, "
                            "or a JWT webhook that does not decrypt, verify or is too old; "
                            "nothing changed"
                        ),
                        "403": _error(
                            "The credentials are valid, but not for the merchant the event "
                            "names (or that merchant only takes JWT webhooks); nothing changed"
                        ),
                        "404": _error("No such route"),
                        "413": _error("Body too large"),
                        "503": _error(
                            "The invalidation could not be confirmed; Juspay retries",
                            retry_after=True,
                        ),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "healthz",
                    "security": [],
                    "responses": {"200": {"description": "Alive", "headers": _REQUEST_ID}},
                }
            },
            "/readyz": {
                "get": {
                    "operationId": "readyz",
                    "security": [],
                    "responses": {
                        "200": {"description": "Ready", "headers": _REQUEST_ID},
                        "503": {"description": "Starting or draining", "headers": _REQUEST_ID},
                    },
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "Prometheus text format",
                            "headers": _REQUEST_ID,
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {
                "clientKey": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "The client key as username and an empty password, "
                    "as Juspay SDKs send an API key",
                },
                "webhookBasic": {"type": "http", "scheme": "basic"},
            },
            "parameters": {
                "version": {
                    "name": "version",
                    "in": "header",
                    "schema": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$"},
                },
                "x-merchantid": {
                    "name": "x-merchantid",
                    "in": "header",
                    "schema": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"},
                },
                "x-routing-id": {
                    "name": "x-routing-id",
                    "in": "header",
                    "schema": {"type": "string", "pattern": r"^[\x21-\x7e][\x20-\x7e]{0,127}$"},
                },
            },
            "headers": {
                "X-Request-Id": {"schema": {"type": "string"}, "required": True},
            },
            "schemas": {
                "JuspayError": {
                    "type": "object",
                    "required": ["status", "error_code", "error_message", "error_info"],
                    "properties": {
                        "status": {"type": "string", "enum": ["error"]},
                        "error_code": {"type": "string"},
                        "error_message": {"type": "string"},
                        "error_info": {
                            "type": "object",
                            "required": ["code", "category", "user_message", "developer_message"],
                            "properties": {
                                "code": {"type": "string"},
                                "category": {"type": "string"},
                                "user_message": {"type": "string"},
                                "developer_message": {"type": "string"},
                            },
                        },
                    },
                },
                "Status": {
                    "type": "object",
                    "required": ["status"],
                    "properties": {"status": {"type": "string"}},
                },
                "Order": {
                    "type": "object",
                    "description": "Juspay's order-status response; unknown fields may appear",
                    "required": ["order_id", "status"],
                    "properties": {
                        "order_id": {"type": "string"},
                        "status": {"type": "string"},
                        "status_id": {"type": "integer"},
                        "merchant_id": {"type": "string"},
                        "amount": {"type": "number"},
                        "refunds": {"type": "array", "items": {"type": "object"}},
                    },
                },
                "Purged": {
                    "type": "object",
                    "required": ["status", "merchant_id", "order_id", "entries"],
                    "properties": {
                        "status": {"type": "string", "enum": ["purged"]},
                        "merchant_id": {"type": "string"},
                        "order_id": {"type": "string"},
                        "entries": {"type": "integer", "minimum": 0},
                    },
                },
                "WebhookEvent": {
                    "type": "object",
                    "description": "A plain webhook (HTTP Basic). Order, refund and TXN_* "
                    "events carry the order; MANDATE_* and CHARGEBACK_* events a mandate or "
                    "chargeback object, searched for an order_id (and merchant_id). Unknown "
                    "events are acknowledged and counted.",
                    "properties": {
                        "id": {"type": "string"},
                        "event_name": {"type": "string"},
                        "date_created": {"type": "string"},
                        "content": {
                            "type": "object",
                            "properties": {
                                "order": {"$ref": "#/components/schemas/Order"},
                                "mandate": {"type": "object"},
                                "chargeback": {"type": "object"},
                                "txn": {"type": "object"},
                            },
                        },
                    },
                },
                "JwtWebhook": {
                    "type": "object",
                    "description": "Juspay's JWT webhook: the event, signed by Juspay (JWS "
                    "RS256) and encrypted to the merchant's key (JWE RSA-OAEP or RSA-OAEP-256, "
                    "A256GCM); compact, or as Juspay's SDKs spell the five parts",
                    "required": ["JWT"],
                    "properties": {
                        "JWT": {
                            "oneOf": [
                                {"type": "string", "description": "a compact JWE"},
                                {
                                    "type": "object",
                                    "required": [
                                        "header",
                                        "encryptedKey",
                                        "iv",
                                        "encryptedPayload",
                                        "tag",
                                    ],
                                    "properties": {
                                        "header": {"type": "string"},
                                        "encryptedKey": {"type": "string"},
                                        "iv": {"type": "string"},
                                        "encryptedPayload": {"type": "string"},
                                        "tag": {"type": "string"},
                                    },
                                },
                            ]
                        }
                    },
                },
                "BatchResult": {
                    "type": "object",
                    "required": ["orders"],
                    "properties": {
                        "orders": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["order_id", "http_status", "cache", "body"],
                                "properties": {
                                    "order_id": {"type": "string"},
                                    "http_status": {"type": "integer"},
                                    # NONE: refused before the cache was asked.
                                    "cache": {
                                        "type": "string",
                                        "enum": ["HIT", "MISS", "BYPASS", "STALE", "NONE"],
                                    },
                                    "body": {},
                                },
                            },
                        }
                    },
                },
                "WebhookResult": {
                    "type": "object",
                    "required": ["status", "result"],
                    "properties": {
                        "status": {"type": "string", "enum": ["ok"]},
                        "result": {
                            "type": "string",
                            "enum": ["invalidated", "ignored", "duplicate", "unknown_merchant"],
                        },
                    },
                },
            },
        },
    }
