"""Validators for everything a caller sends: order ids, headers and query values."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import re

from proxy.core.errors import BadRequest

# Juspay order ids are short alphanumeric strings (the docs say < 21 characters; published
# samples reach 24). We allow a little more, but only characters that can never form a path
# separator, an encoded byte, a dot-segment (the first character must be alphanumeric) or a
# control character, so the id is safe to put in an upstream URL and in a cache key.
ORDER_ID_MAX_LENGTH = 64
_ORDER_ID = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{ORDER_ID_MAX_LENGTH - 1}}}")
_MERCHANT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# txn_uuid names one payment attempt (Juspay's samples: "eulwh5QbZSBvw35eWnH"); it goes into
# the upstream query and the cache key, so it gets the order id's rules.
TXN_UUID_MAX_LENGTH = 64
_TXN_UUID = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{TXN_UUID_MAX_LENGTH - 1}}}")
_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}")
# x-routing-id is free text chosen by the caller (a customer id); printable ASCII only.
_ROUTING_ID = re.compile(r"[\x21-\x7e][\x20-\x7e]{0,127}")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_TRUE = frozenset({"true", "1"})
_FALSE = frozenset({"false", "0"})


def order_id(value: str | None) -> str:
    """The order id if it is safe and well-formed, else BadRequest."""
    if value is None or value == "":
        raise BadRequest("order_id is required")
    if _ORDER_ID.fullmatch(value) is None:
        # Never echo the raw value: it may hold control characters or be huge.
        raise BadRequest(
            "order_id must be 1-64 characters of A-Z a-z 0-9 . _ - starting with a letter or digit"
        )
    return value


def txn_uuid(value: str) -> str:
    """A `txn_uuid` query value if it is safe and well-formed, else BadRequest."""
    if _TXN_UUID.fullmatch(value) is None:
        raise BadRequest(
            "txn_uuid must be 1-64 characters of A-Z a-z 0-9 . _ - starting with a letter or digit"
        )
    return value


def is_merchant_id(value: str) -> bool:
    """Whether `value` is a well-formed merchant id (pure: settings check ids with it too)."""
    return _MERCHANT_ID.fullmatch(value) is not None


def merchant_id(value: str) -> str:
    if not is_merchant_id(value):
        raise BadRequest("x-merchantid is not a valid merchant id")
    return value


def api_version_problem(value: str) -> str | None:
    """Why `value` is not an API version (a real date written YYYY-MM-DD); None when it is."""
    if _VERSION.fullmatch(value) is None:
        return "version must be a date written YYYY-MM-DD"
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        return "version must be a real calendar date"
    return None


def api_version(value: str) -> str:
    """A `version` header: a real calendar date written YYYY-MM-DD."""
    problem = api_version_problem(value)
    if problem is not None:
        raise BadRequest(problem)
    return value


def routing_id(value: str) -> str:
    if _ROUTING_ID.fullmatch(value) is None:
        raise BadRequest("x-routing-id must be 1-128 printable ASCII characters")
    return value


def flag(name: str, value: str) -> bool:
    """A boolean query value as Juspay reads it: `true` (any case) or `1` is on; `false` (any
    case) or `0` is off; anything else is a BadRequest naming the parameter."""
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise BadRequest(f"{name} must be true or false")


# Fresh request ids: a random per-process prefix and a counter; unique without a syscall
# per request (uuid4 costs a getrandom call each time).
_ID_PREFIX = os.urandom(8).hex()
_ID_COUNTER = itertools.count(1)


def request_id(value: str | None) -> str:
    """The caller's X-Request-Id when it is sane, else a fresh one."""
    if value is not None and _REQUEST_ID.fullmatch(value) is not None:
        return value
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"
