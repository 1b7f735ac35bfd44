"""The one error tree of the proxy: each error's HTTP status, code and messages as data.

    ProxyError                      500  (status, error_code, category; never carries a secret)
    ├── BadRequest                  400  bad order id, header, query or body
    ├── Unauthorized                401  caller or webhook credentials missing or wrong
    ├── Forbidden                   403  merchant (or operation) not allowed for this caller
    ├── NotFoundError               404  no such route
    ├── MethodNotAllowed            405  the route exists, not with this method
    ├── RequestTimeout              408  the request body did not arrive in time
    ├── PayloadTooLarge             413  request body over its bound
    ├── RateLimited                 429  this client is over its rate limit; Retry-After
    ├── Overloaded                  503  shed load (upstream queue full, too many waiters);
    │                                    Retry-After
    ├── CacheUnavailableError       503  an invalidation (purge, webhook) was not confirmed
    └── UpstreamError               502  anything wrong with Juspay's answer
        ├── UpstreamAuthFailed      502  Juspay refused our key (401/403)
        ├── UpstreamBadBody         502  not JSON, not the order asked for, too large, odd status
        ├── UpstreamConnectionError 502  refused, reset, DNS, TLS
        ├── UpstreamServerError     502  Juspay answered 5xx
        ├── UpstreamRateLimited     503  Juspay answered 429; Retry-After
        ├── CircuitOpen             503  we stopped calling Juspay for a while; Retry-After
        └── UpstreamTimeout         504  the deadline for one read (retries included) passed

Low-level exceptions (aiohttp, redis, msgspec) are translated once, where they happen, with
`raise Specific(...) from exc`; Redis trouble becomes the cache's CacheUnavailable, which a
read absorbs (it asks Juspay) and an invalidation turns into CacheUnavailableError.
`proxy.web.errors` is the one place an error becomes an HTTP answer.
"""

from __future__ import annotations


class ProxyError(Exception):
    """An answer the proxy itself produces; `str()` is the developer message."""

    status: int = 500
    error_code: str = "internal_error"
    category: str = "SERVER_ERROR"
    user_message: str = "Something went wrong. Please try again."
    # The `outcome` label value recorded for an upstream call that ended in this error.
    outcome: str = "error"

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    @property
    def developer_message(self) -> str:
        return str(self)


class BadRequest(ProxyError):
    status = 400
    error_code = "invalid_request"
    category = "USER_ERROR"
    user_message = "Invalid request."


class Unauthorized(ProxyError):
    status = 401
    error_code = "access_denied"
    category = "USER_ERROR"
    user_message = "Unauthorized."


class Forbidden(ProxyError):
    status = 403
    error_code = "merchant_not_allowed"
    category = "USER_ERROR"
    user_message = "Forbidden."


class NotFoundError(ProxyError):
    status = 404
    error_code = "route_not_found"
    category = "USER_ERROR"
    user_message = "Not found."


class MethodNotAllowed(ProxyError):
    status = 405
    error_code = "method_not_allowed"
    category = "USER_ERROR"
    user_message = "Method not allowed."


class RequestTimeout(ProxyError):
    status = 408
    error_code = "request_timeout"
    category = "USER_ERROR"
    user_message = "The request did not arrive in time."


class PayloadTooLarge(ProxyError):
    status = 413
    error_code = "payload_too_large"
    category = "USER_ERROR"
    user_message = "Request body too large."


class RateLimited(ProxyError):
    status = 429
    error_code = "rate_limited"
    category = "USER_ERROR"
    user_message = "Too many requests. Please retry after the time given in Retry-After."
    outcome = "rate_limited"


class Overloaded(ProxyError):
    status = 503
    error_code = "overloaded"
    category = "SERVER_ERROR"
    user_message = "Service busy. Please retry shortly."
    outcome = "shed"


class CacheUnavailableError(ProxyError):
    status = 503
    error_code = "cache_unavailable"
    category = "SERVER_ERROR"
    user_message = "The cache could not be reached. Please retry."


class UpstreamError(ProxyError):
    status = 502
    error_code = "upstream_error"
    category = "UPSTREAM_ERROR"
    user_message = "The payment service gave an unusable answer. Please retry."


class UpstreamAuthFailed(UpstreamError):
    error_code = "upstream_auth_failed"
    outcome = "auth_failed"


class UpstreamBadBody(UpstreamError):
    error_code = "upstream_bad_body"
    outcome = "bad_body"


class UpstreamConnectionError(UpstreamError):
    error_code = "upstream_unavailable"
    outcome = "connection_error"
    user_message = "The payment service could not be reached. Please retry."


class UpstreamServerError(UpstreamError):
    error_code = "upstream_server_error"
    outcome = "server_error"

    def __init__(self, message: str, *, upstream_status: int) -> None:
        super().__init__(message)
        self.upstream_status = upstream_status


class UpstreamRateLimited(UpstreamError):
    status = 503
    error_code = "upstream_rate_limited"
    outcome = "rate_limited"
    user_message = "The payment service is busy. Please retry shortly."


class CircuitOpen(UpstreamError):
    status = 503
    error_code = "upstream_circuit_open"
    outcome = "circuit_open"
    user_message = "The payment service is failing; retry shortly."


class UpstreamTimeout(UpstreamError):
    status = 504
    error_code = "upstream_timeout"
    outcome = "timeout"
    user_message = "The payment service did not answer in time. Please retry."
