"""POST /__sim/webhooks and /__sim/jwt/{merchant_id}: fire Juspay's webhooks at a proxy, with
Basic credentials or as JWT webhooks, and manage the keys those are made with."""

from __future__ import annotations

import base64
import json
from typing import Any

import aiohttp
from aiohttp import web

from proxy.config.keyfiles import valid_kid
from proxy.core.models import family_of
from proxy.devtools.simulator.errors import ControlError
from proxy.devtools.simulator.events import check_name, default_event, event
from proxy.devtools.simulator.parsing import known_merchant, order_key, read_object, reply
from proxy.devtools.simulator.state import SIMULATOR_STATE

AUTH_MODES = ("basic", "jwt", "none")
_TIMEOUT = aiohttp.ClientTimeout(total=10)


async def fire_webhook(request: web.Request) -> web.Response:
    """Send the event Juspay would send for one order (its body as it is now) to `url` (a
    proxy's /webhooks/juspay); answer with what the proxy said."""
    state = request.app[SIMULATOR_STATE]
    data = await read_object(
        request,
        {"merchant_id", "order_id", "url", "event_name", "auth", "username", "password"},
    )
    merchant_id, order_id = order_key(state, data)
    order = state.order(merchant_id, order_id).current(read=False)
    url = data.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ControlError("'url' must be the proxy's webhook URL (http:// or https://)")
    name = check_name(data["event_name"]) if "event_name" in data else default_event(order)
    payload = json.dumps(event(name, merchant_id, order)).encode()
    auth = _auth_mode(state.jwt.has_recipient(merchant_id), data)
    headers = {"Content-Type": "application/json"}
    if data.get("username") is not None:
        pair = f"{data['username']}:{data.get('password', '')}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
    elif auth == "basic":
        raise ControlError("auth 'basic' needs 'username' (and 'password')")
    body = payload
    if auth == "jwt":
        body = json.dumps({"JWT": state.jwt.token(merchant_id, payload)}).encode()
    try:
        async with (
            aiohttp.ClientSession(timeout=_TIMEOUT) as session,
            session.post(url, data=body, headers=headers) as resp,
        ):
            answer, status = await resp.text(), resp.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ControlError(f"could not reach {url}: {type(exc).__name__}", status=502) from None
    return reply(
        {
            "event_name": name,
            "family": family_of(name),
            "auth": auth,
            "status": status,
            "answer": answer,
        }
    )


def _auth_mode(has_jwt_key: bool, data: dict[str, Any]) -> str:
    mode = data.get("auth")
    if mode is None:
        # As Juspay: a merchant with JWT webhooks gets every webhook encrypted.
        if data.get("username") is not None:
            return "basic"
        return "jwt" if has_jwt_key else "none"
    if mode not in AUTH_MODES:
        raise ControlError(f"'auth' must be one of {list(AUTH_MODES)}, not {mode!r}")
    return str(mode)


async def show_jwt(request: web.Request) -> web.Response:
    """What the merchant would read off Juspay's dashboard: Juspay's public key and the kid."""
    state = request.app[SIMULATOR_STATE]
    merchant_id = known_merchant(state, request.match_info["merchant_id"])
    return reply(state.jwt.describe(merchant_id))


async def put_jwt(request: web.Request) -> web.Response:
    """Upload the merchant's public key (and its kid): JWT webhooks are encrypted to it."""
    state = request.app[SIMULATOR_STATE]
    merchant_id = known_merchant(state, request.match_info["merchant_id"])
    data = await read_object(request, {"kid", "public_key_pem"})
    kid = data.get("kid")
    if not isinstance(kid, str) or not valid_kid(kid):
        raise ControlError("'kid' must be 1-128 printable ASCII characters without spaces")
    pem = data.get("public_key_pem")
    if not isinstance(pem, str):
        raise ControlError("'public_key_pem' must be the merchant's PEM RSA public key")
    state.jwt.set_recipient(merchant_id, kid, pem)
    return reply(state.jwt.describe(merchant_id))
