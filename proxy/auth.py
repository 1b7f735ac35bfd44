"""Who may call: client keys for internal services, and Juspay's webhook credentials.

A client key is sent the way Juspay's SDKs send an API key (Basic auth, the key as username,
an empty password; some SDKs omit the colon), so an SDK pointed at the proxy needs only a new
base URL and key. Keys are stored as SHA-256 hashes and compared in constant time against
every configured client, so neither the comparison nor the lookup leaks which one matched.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from typing import NamedTuple

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler
from aiohttp_basicauth import BasicAuthMiddleware

from proxy.errors import Forbidden, Unauthorized, error_response
from proxy.keys import CLIENT, METRICS, RECORD
from proxy.secrets import Secret, SecretFile
from proxy.settings import ClientSettings

CALLER_ROUTES = frozenset({"order", "order_status", "batch"})
OPERATOR_ROUTES = frozenset({"purge"})


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_client_key() -> str:
    """A random client key: 32 bytes of entropy, URL-safe."""
    return "opk_" + secrets.token_urlsafe(32)


class BasicCredentials(NamedTuple):
    """What aiohttp-basicauth reads from a parsed header (`login`, `password`)."""

    login: str
    password: str


def parse_basic(header: str | None) -> BasicCredentials | None:
    """Basic credentials as SDKs send them: `key:`, `key:password`, or a bare `key`."""
    if not header:
        return None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    login, _, password = decoded.partition(":")
    return BasicCredentials(login, password)


class ClientKeyAuth(BasicAuthMiddleware):  # type: ignore[misc]
    """aiohttp-basicauth with many users, hashed keys and a constant-time check.

    Installed only when clients are configured (otherwise callers are anonymous and nobody may
    purge). Caller routes need any client allowed for the merchant asked for (checked later,
    when the merchant is known); operator routes need an operator client. Health, readiness,
    metrics and the webhook (its own credentials) are not covered here.
    """

    def __init__(self, clients: Iterable[ClientSettings]) -> None:
        super().__init__(force=True, realm="order-proxy")
        self._clients = tuple(clients)

    def parse_auth_header(self, request: web.Request) -> BasicCredentials | None:
        return parse_basic(request.headers.get(hdrs.AUTHORIZATION))

    async def check_credentials(self, username: str, password: str, request: web.Request) -> bool:
        presented = hash_key(username)
        found: ClientSettings | None = None
        # Compare against every client, always, so timing does not tell which one matched.
        for client in self._clients:
            if hmac.compare_digest(presented, client.key_sha256):
                found = client
        if found is None or password:
            return False
        request[CLIENT] = found
        return True

    def challenge(self) -> web.Response:
        return error_response(
            Unauthorized("a valid client key is required (Basic auth, key as username)"),
            {hdrs.WWW_AUTHENTICATE: f'Basic realm="{self.realm}"'},
        )

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request[RECORD].route
        if route not in CALLER_ROUTES and route not in OPERATOR_ROUTES:
            return await handler(request)
        if not await self.authenticate(request):
            request.app[METRICS].auth_failures.labels(reason="bad_credentials").inc()
            return self.challenge()
        if route in OPERATOR_ROUTES and not request[CLIENT].operator:
            request.app[METRICS].auth_failures.labels(reason="not_operator").inc()
            return error_response(Forbidden("this client may not purge the cache"))
        return await handler(request)


class WebhookCredentials:
    """Juspay's webhook Basic credentials; the password file (if any) is re-read on change."""

    def __init__(self, username: str, password: Secret | SecretFile) -> None:
        self._username = username.encode()
        self._password = password

    def check(self, header: str | None) -> bool:
        auth = parse_basic(header)
        if auth is None:
            return False
        secret = self._password.get() if isinstance(self._password, SecretFile) else self._password
        user_ok = hmac.compare_digest(auth.login.encode(), self._username)
        password_ok = hmac.compare_digest(auth.password.encode(), secret.reveal().encode())
        return user_ok and password_ok

    def __repr__(self) -> str:
        return "WebhookCredentials(<masked>)"
