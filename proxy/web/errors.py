"""The one place a ProxyError becomes an HTTP answer, in Juspay's error shape."""

from __future__ import annotations

import msgspec
from aiohttp import web

from proxy.core.errors import ProxyError
from proxy.core.models import ErrorBody, ErrorInfo

_ERROR_ENCODER = msgspec.json.Encoder()


def error_body(err: ProxyError) -> bytes:
    """Juspay's error shape, so SDKs that parse Juspay errors parse ours too."""
    body = ErrorBody(
        status="error",
        error_code=err.error_code,
        error_message=err.developer_message,
        error_info=ErrorInfo(
            code=err.error_code.upper(),
            category=err.category,
            user_message=err.user_message,
            developer_message=err.developer_message,
        ),
    )
    return _ERROR_ENCODER.encode(body)


def error_response(err: ProxyError, headers: dict[str, str] | None = None) -> web.Response:
    """The single place where a ProxyError becomes an HTTP answer."""
    out = dict(headers or {})
    if err.retry_after is not None:
        out["Retry-After"] = str(err.retry_after)
    out["Cache-Control"] = "no-store"
    return web.Response(
        status=err.status, body=error_body(err), content_type="application/json", headers=out
    )
