"""Who may call: client keys for internal services, and Juspay's webhook credentials and keys.

A client key is sent the way Juspay's SDKs send an API key (Basic auth, the key as username,
an empty password; some SDKs omit the colon), so an SDK pointed at the proxy needs only a new
base URL and key. Keys are stored as SHA-256 hashes and compared in constant time against
every configured client, so neither the comparison nor the lookup leaks which one matched.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, NamedTuple

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler
from aiohttp_basicauth import BasicAuthMiddleware

from proxy.appkeys import CLIENT, METRICS
from proxy.config.secrets import Secret, SecretFile
from proxy.config.settings import ClientSettings, Settings, WebhookSettings
from proxy.core.errors import Forbidden, Unauthorized
from proxy.web.errors import error_response
from proxy.web.webhook_jwt import JwtKeyring

if TYPE_CHECKING:
    from proxy.web.routes import Route


class Access(enum.Enum):
    """Who may call a route: each row of the route table (proxy.web.routes) names one."""

    CALLER = "caller"  # order reads: with clients configured, a key allowed for the merchant
    OPERATOR = "operator"  # cache purges: with clients configured, an operator's key
    WEBHOOK = "webhook"  # Juspay, with its webhook credentials (checked by the handler)
    OPEN = "open"  # anyone: the API's description, and requests that match no route
    INTERNAL = "internal"  # anyone who reaches the listener: health, readiness, metrics


# Spellings of one client key remembered as sent (with or without the colon, and so on).
KNOWN_HEADERS_PER_CLIENT = 4

# Module globals: compared on every request, and enum attribute lookups cost more.
_CALLER = Access.CALLER
_OPERATOR = Access.OPERATOR


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
    when the merchant is known); operator routes need an operator client. Routes of the other
    access classes (health, readiness, metrics, the API description, and the webhook with its
    own credentials) are not covered here.
    """

    def __init__(
        self, clients: Iterable[ClientSettings], routes: Mapping[web.AbstractRoute, Route]
    ) -> None:
        super().__init__(force=True, realm="order-proxy")
        self._clients = tuple(clients)
        # Each route's row of the route table; filled as the app's routes are registered.
        self._routes = routes
        # Accepted Authorization values, as sent, and their client: a caller's next request is
        # recognised by one dict lookup instead of base64, SHA-256 and a compare per client.
        # Only accepted values enter (a flood of wrong keys adds nothing), and only a few
        # spellings of each key exist, so it stays small; a bound holds anyway. The lookup
        # does not leak a key: str hashes are keyed per process (SipHash), and two values are
        # compared byte by byte only when their 64-bit hashes already match.
        self._known: dict[str, ClientSettings] = {}
        self._known_max = KNOWN_HEADERS_PER_CLIENT * max(1, len(self._clients))

    async def authenticate(self, request: web.Request) -> bool:
        header = request.headers.get(hdrs.AUTHORIZATION)
        if header is not None:
            known = self._known.get(header)
            if known is not None:
                request[CLIENT] = known
                return True
        if not await super().authenticate(request):
            return False
        if header is not None and len(self._known) < self._known_max:
            self._known[header] = request[CLIENT]
        return True

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
        row = self._routes.get(request.match_info.route)
        access = row.access if row is not None else None
        if access is not _CALLER and access is not _OPERATOR:
            return await handler(request)
        if not await self.authenticate(request):
            request.app[METRICS].auth_failures.labels(reason="bad_credentials").inc()
            return self.challenge()
        if access is _OPERATOR and not request[CLIENT].operator:
            request.app[METRICS].auth_failures.labels(reason="not_operator").inc()
            return error_response(Forbidden("this client may not purge the cache"))
        return await handler(request)


def _digest(value: str) -> bytes:
    """Fixed-length stand-in for a secret, so comparisons take the same time whatever its length."""
    return hashlib.sha256(value.encode()).digest()


class _BasicPair:
    """One webhook Basic pair and the merchants it speaks for; a password file is re-read."""

    __slots__ = ("_password", "_password_digest", "_username", "merchants")

    def __init__(
        self, username: str, password: Secret | SecretFile, merchants: frozenset[str]
    ) -> None:
        self._username = _digest(username)
        self._password = password
        self._password_digest: tuple[Secret, bytes] | None = None
        self.merchants = merchants

    def matches(self, username: bytes, password: bytes) -> bool:
        """Whether digests of a presented pair match; always compares both (constant time)."""
        source = self._password
        secret = source.get() if isinstance(source, SecretFile) else source
        cached = self._password_digest
        if cached is None or cached[0] is not secret:
            cached = self._password_digest = (secret, _digest(secret.reveal()))
        user_ok = hmac.compare_digest(username, self._username)
        password_ok = hmac.compare_digest(password, cached[1])
        return user_ok & password_ok

    def __repr__(self) -> str:
        return f"_BasicPair(<masked>, merchants={sorted(self.merchants)!r})"


class WebhookAuth:
    """Who may send Juspay webhooks, per merchant.

    Basic: each merchant's own pair (`webhook_username`), else the shared pair
    (JUSPAY_WEBHOOK_USERNAME/PASSWORD). A merchant with JWT keys is not covered by the shared
    pair: it takes plain webhooks only with a pair of its own (kept during a migration), since
    Juspay encrypts every webhook of a merchant once JWT webhooks are on. A presented pair is
    compared with every configured pair, always, in constant time; the answer is the set of
    merchants it speaks for, and the webhook's body must then name one of them.

    JWT: each merchant's keyring, found by the kid a token names (kids are unique across
    merchants, checked at start-up).
    """

    def __init__(self, settings: Settings) -> None:
        interval = settings.secret_refresh_seconds
        self._pairs: list[_BasicPair] = []
        self._keyrings: dict[str, JwtKeyring] = {}
        self._kid_owner: dict[str, str] = {}
        self._requires_jwt: frozenset[str] = frozenset(
            m.merchant_id for m in settings.merchants if m.jwt is not None and m.webhook is None
        )
        if settings.webhook is not None:
            shared = frozenset(
                m.merchant_id for m in settings.merchants if m.webhook is None and m.jwt is None
            )
            self._pairs.append(_pair(settings.webhook, shared, interval))
        for merchant in settings.merchants:
            if merchant.webhook is not None:
                self._pairs.append(
                    _pair(merchant.webhook, frozenset({merchant.merchant_id}), interval)
                )
            if merchant.jwt is not None:
                jwt = merchant.jwt
                self._keyrings[merchant.merchant_id] = JwtKeyring(
                    private_key_files=dict(jwt.private_key_files),
                    public_key_files=dict(jwt.public_key_files),
                    max_age_seconds=jwt.max_age_seconds,
                    check_interval=interval,
                )
                for kid, _ in jwt.private_key_files:
                    self._kid_owner[kid] = merchant.merchant_id

    @property
    def enabled(self) -> bool:
        """Whether any webhook can be accepted at all (a Basic pair or JWT keys configured)."""
        return bool(self._pairs or self._keyrings)

    @property
    def has_jwt(self) -> bool:
        return bool(self._keyrings)

    def merchants_for(self, header: str | None) -> frozenset[str]:
        """The merchants whose webhooks these Basic credentials may carry (empty: none)."""
        auth = parse_basic(header)
        if auth is None or not self._pairs:
            return frozenset()
        username, password = _digest(auth.login), _digest(auth.password)
        found: set[str] = set()
        for pair in self._pairs:  # every pair, whatever matched before
            if pair.matches(username, password):
                found |= pair.merchants
        return frozenset(found)

    def keyring_for(self, kid: str | None) -> tuple[str, JwtKeyring] | None:
        """(merchant id, keyring) for the kid a JWT webhook names; a token that names none is
        tried only when a single merchant has JWT keys."""
        if kid is None:
            if len(self._keyrings) == 1:
                return next(iter(self._keyrings.items()))
            return None
        merchant_id = self._kid_owner.get(kid)
        if merchant_id is None:
            return None
        return merchant_id, self._keyrings[merchant_id]

    def requires_jwt(self, merchant_id: str) -> bool:
        """A merchant with JWT keys and no Basic pair of its own: plain webhooks are refused."""
        return merchant_id in self._requires_jwt

    def __repr__(self) -> str:
        return f"WebhookAuth(pairs={len(self._pairs)}, jwt_merchants={sorted(self._keyrings)!r})"


def _pair(hook: WebhookSettings, merchants: frozenset[str], interval: float) -> _BasicPair:
    password: Secret | SecretFile = hook.password
    if hook.password_file is not None:
        password = SecretFile(hook.password_file, hook.password, check_interval=interval)
    return _BasicPair(hook.username, password, merchants)
