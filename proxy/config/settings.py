"""Settings: parsed once at start-up from the environment and an optional TOML file.

Everything is checked here, and a bad value stops start-up with one line that names the
setting. The result is a frozen tree of dataclasses that the rest of the code trusts.
Secrets are held as `Secret` objects, so printing settings never shows them.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import msgspec
from yarl import URL

from proxy.config.secrets import MASK, Secret, read_secret_file
from proxy.core import policy, validators
from proxy.core.errors import BadRequest
from proxy.upstream.circuit import CircuitSettings
from proxy.web import webhook_jwt

DEFAULT_BASE_URL = "https://api.juspay.in"
DEFAULT_API_VERSION = "2023-06-30"
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("json", "console")


class SettingsError(Exception):
    """A setting is missing or wrong; `str()` is one line naming it (never its secret value)."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting


@dataclass(frozen=True, slots=True)
class MerchantSettings:
    merchant_id: str
    api_key: Secret
    # Set when the key comes from a file, which is then re-read when it changes.
    api_key_file: Path | None = None
    # This merchant's own Basic pair for Juspay's webhooks; None: the shared pair applies.
    webhook: WebhookSettings | None = None
    # Juspay's JWT webhooks for this merchant; None: its webhooks are not JWT-encrypted.
    jwt: JwtWebhookSettings | None = None


@dataclass(frozen=True, slots=True)
class JwtWebhookSettings:
    """Key files for one merchant's JWT webhooks (checked at start-up, re-read when they change).

    Each pair is (kid, PEM file): the merchant's private keys open the JWE, whose header names
    one of their kids; Juspay's public keys verify the JWS inside, whose header names one of
    theirs. Juspay's SDKs use one kid for both. Several pairs while keys rotate.
    """

    private_key_files: tuple[tuple[str, Path], ...]
    public_key_files: tuple[tuple[str, Path], ...]
    max_age_seconds: float = webhook_jwt.DEFAULT_MAX_AGE_SECONDS


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A client's rate limit: `rate_per_second` on average, up to `burst` at once (GCRA)."""

    rate_per_second: float
    burst: int

    @property
    def interval(self) -> float:
        """Seconds one request costs (the emission interval)."""
        return 1.0 / self.rate_per_second

    @property
    def tolerance(self) -> float:
        """How far ahead of now the theoretical arrival time may run: `burst` intervals."""
        return self.burst * self.interval


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """An internal service allowed to call the proxy, identified by a client key."""

    name: str
    # SHA-256 of the client key, hex. Keys are long random tokens, so a fast hash is enough;
    # the plain key is never stored.
    key_sha256: str
    merchants: tuple[str, ...]  # merchant ids it may read; ("*",) for all
    operator: bool = False  # may purge cache entries
    # Per-client limits (see proxy/ratelimit.py): every request, and reads that call Juspay.
    rate_limit: RateLimit | None = None
    upstream_rate_limit: RateLimit | None = None

    def may_read(self, merchant_id: str) -> bool:
        return "*" in self.merchants or merchant_id in self.merchants

    def limit(self, scope: str) -> RateLimit | None:
        """The limit for a scope: "all" (every request) or "upstream" (reads calling Juspay)."""
        return self.rate_limit if scope == "all" else self.upstream_rate_limit

    def __repr__(self) -> str:
        return (
            f"ClientSettings(name={self.name!r}, merchants={self.merchants!r}, "
            f"operator={self.operator})"
        )


@dataclass(frozen=True, slots=True)
class UpstreamSettings:
    base_url: URL = field(default_factory=lambda: URL(DEFAULT_BASE_URL))
    api_version: str = DEFAULT_API_VERSION
    timeout_seconds: float = 10.0
    connect_timeout_seconds: float = 3.0
    max_body_bytes: int = 1024 * 1024
    max_connections: int = 100
    allow_insecure_http: bool = False
    # Retries of the idempotent read, all within timeout_seconds.
    max_attempts: int = 3
    attempt_timeout_seconds: float = 4.0
    backoff_base_seconds: float = 0.1
    backoff_max_seconds: float = 1.0
    # Bulkhead: concurrent upstream calls, and how many more may wait for a slot.
    max_concurrent: int = 64
    max_queue: int = 256
    circuit: CircuitSettings = field(default_factory=CircuitSettings)


@dataclass(frozen=True, slots=True)
class RedisSettings:
    url: Secret | None = None
    # "standalone" (redis://, rediss://, unix://), "cluster" (redis+cluster://host:port,...)
    # or "sentinel" (redis+sentinel://host:port,.../service_name[/db]).
    mode: str = "standalone"
    socket_timeout_seconds: float = 0.25
    connect_timeout_seconds: float = 0.25
    max_connections: int = 64
    key_prefix: str = "order-proxy"


@dataclass(frozen=True, slots=True)
class CacheSettings:
    policy: policy.CachePolicy = field(default_factory=policy.CachePolicy)
    memory_max_entries: int = 50_000
    memory_max_bytes: int = 64 * 1024 * 1024
    # How long past its TTL a final entry may still answer when Juspay fails (0: never).
    stale_if_error_seconds: int = 600
    # Cross-replica coalescing on a shared Redis: one replica calls Juspay per missed key.
    distributed_coalescing: bool = True
    # With Redis: how long a fresh entry may also be answered from this process' memory
    # (bounded by memory_max_entries/bytes, dropped on purges and webhooks; 0 turns it off).
    memory_layer_ttl_seconds: float = 30.0
    # Share of cache hits re-read from Juspay in the background and compared, to measure how
    # true the cache is (order_proxy_cache_verifications_total); 0 turns it off.
    verify_sample_rate: float = 0.001


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    # Optional listener for /metrics, /readyz and /healthz (then not on `port`); its host
    # defaults to `host`.
    internal_port: int | None = None
    internal_host: str | None = None
    drain_seconds: float = 20.0
    # After SIGTERM, keep listening (readiness already false) this long before closing.
    shutdown_delay_seconds: float = 0.0
    max_request_body_bytes: int = 256 * 1024
    max_line_size: int = 8190
    max_field_size: int = 8190


@dataclass(frozen=True, slots=True)
class WaitSettings:
    """`?wait=` on order reads: bounds and the shared polling schedule."""

    max_wait_seconds: float = 30.0
    max_waiters: int = 1000
    poll_initial_seconds: float = 1.0
    poll_max_seconds: float = 5.0
    poll_factor: float = 1.5


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    username: str
    password: Secret
    # Set when the password comes from a file, which is then re-read when it changes.
    password_file: Path | None = None


@dataclass(frozen=True, slots=True)
class LogSettings:
    level: str = "info"
    format: str = "json"


@dataclass(frozen=True, slots=True)
class Settings:
    merchants: tuple[MerchantSettings, ...]
    default_merchant: str | None
    upstream: UpstreamSettings = field(default_factory=UpstreamSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    webhook: WebhookSettings | None = None
    log: LogSettings = field(default_factory=LogSettings)
    config_file: Path | None = None
    # Callers: with clients configured every caller must present a client key; without,
    # anonymous reads are allowed only on a loopback listener or when explicitly allowed.
    clients: tuple[ClientSettings, ...] = ()
    allow_anonymous: bool = False
    # How often secret files (API keys, webhook password) are checked for rotation.
    secret_refresh_seconds: float = 1.0
    wait: WaitSettings = field(default_factory=WaitSettings)

    def merchant(self, merchant_id: str) -> MerchantSettings | None:
        for merchant in self.merchants:
            if merchant.merchant_id == merchant_id:
                return merchant
        return None

    def describe(self) -> dict[str, Any]:
        """The effective settings as plain data, secrets masked (for `check-config`)."""
        redis_url = None
        if self.redis.url is not None:
            redis_url = mask_url(self.redis.url.reveal())
        return {
            "merchants": [
                {
                    "merchant_id": m.merchant_id,
                    "api_key": MASK,
                    "api_key_source": m.api_key.source,
                    "webhook": (
                        {
                            "username": m.webhook.username,
                            "password": MASK,
                            "password_source": m.webhook.password.source,
                        }
                        if m.webhook
                        else None
                    ),
                    "jwt": (
                        {
                            "private_key_files": {k: str(f) for k, f in m.jwt.private_key_files},
                            "public_key_files": {k: str(f) for k, f in m.jwt.public_key_files},
                            "max_age_seconds": m.jwt.max_age_seconds,
                        }
                        if m.jwt
                        else None
                    ),
                }
                for m in self.merchants
            ],
            "default_merchant": self.default_merchant,
            "upstream": {
                "base_url": str(self.upstream.base_url),
                "api_version": self.upstream.api_version,
                "timeout_seconds": self.upstream.timeout_seconds,
                "connect_timeout_seconds": self.upstream.connect_timeout_seconds,
                "max_body_bytes": self.upstream.max_body_bytes,
                "max_connections": self.upstream.max_connections,
                "allow_insecure_http": self.upstream.allow_insecure_http,
                "max_attempts": self.upstream.max_attempts,
                "attempt_timeout_seconds": self.upstream.attempt_timeout_seconds,
                "max_concurrent": self.upstream.max_concurrent,
                "max_queue": self.upstream.max_queue,
                "circuit": {
                    "failure_threshold": self.upstream.circuit.failure_threshold,
                    "failure_ratio": self.upstream.circuit.failure_ratio,
                    "window": self.upstream.circuit.window,
                    "min_calls": self.upstream.circuit.min_calls,
                    "open_seconds": self.upstream.circuit.open_seconds,
                },
            },
            "redis": {
                "url": redis_url,
                "mode": self.redis.mode if redis_url else "in-process",
                "socket_timeout_seconds": self.redis.socket_timeout_seconds,
                "connect_timeout_seconds": self.redis.connect_timeout_seconds,
                "max_connections": self.redis.max_connections,
                "key_prefix": self.redis.key_prefix,
            },
            "cache": {
                "ttl_seconds": self.cache.policy.describe(),
                "memory_max_entries": self.cache.memory_max_entries,
                "memory_max_bytes": self.cache.memory_max_bytes,
                "stale_if_error_seconds": self.cache.stale_if_error_seconds,
                "distributed_coalescing": self.cache.distributed_coalescing,
                "memory_layer_ttl_seconds": self.cache.memory_layer_ttl_seconds,
                "verify_sample_rate": self.cache.verify_sample_rate,
            },
            "server": {
                "host": self.server.host,
                "port": self.server.port,
                "internal_host": self.server.internal_host or self.server.host,
                "internal_port": self.server.internal_port,
                "drain_seconds": self.server.drain_seconds,
                "shutdown_delay_seconds": self.server.shutdown_delay_seconds,
                "max_request_body_bytes": self.server.max_request_body_bytes,
            },
            "webhook": (
                {"enabled": True, "username": self.webhook.username, "password": MASK}
                if self.webhook
                else {"enabled": False}
            ),
            "log": {"level": self.log.level, "format": self.log.format},
            "config_file": str(self.config_file) if self.config_file else None,
            "auth": {
                "mode": "client keys" if self.clients else "anonymous",
                "allow_anonymous": self.allow_anonymous,
                "clients": [
                    {
                        "name": c.name,
                        "key_sha256": c.key_sha256[:8] + "…",
                        "merchants": list(c.merchants),
                        "operator": c.operator,
                        **_limits_shown(c),
                    }
                    for c in self.clients
                ],
            },
            "secret_refresh_seconds": self.secret_refresh_seconds,
            "wait": {
                "max_wait_seconds": self.wait.max_wait_seconds,
                "max_waiters": self.wait.max_waiters,
                "poll_initial_seconds": self.wait.poll_initial_seconds,
                "poll_max_seconds": self.wait.poll_max_seconds,
            },
        }


def mask_url(url: str) -> str:
    """A URL with any password replaced by the mask."""
    scheme, sep, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    userinfo, at, hosts = authority.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.partition(":")[0]
    return f"{scheme}{sep}{user}:{MASK}@{hosts}{slash}{path}"


# --- the TOML file ----------------------------------------------------------------------------
# Our own file, so unknown keys are mistakes: they are refused with the key's path.


class _MerchantToml(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    id: str
    api_key_file: str | None = None
    api_key_env: str | None = None
    # Its own Basic pair for webhooks (password from a file or an environment variable).
    webhook_username: str | None = None
    webhook_password_file: str | None = None
    webhook_password_env: str | None = None
    # JWT webhooks: kid = "path to a PEM file" tables.
    jwt_private_key_files: dict[str, str] = {}
    jwt_public_key_files: dict[str, str] = {}
    jwt_max_age_seconds: float | None = None


class _UpstreamToml(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    base_url: str | None = None
    api_version: str | None = None
    timeout_seconds: float | None = None
    connect_timeout_seconds: float | None = None
    max_body_bytes: int | None = None
    max_connections: int | None = None
    allow_insecure_http: bool | None = None
    max_attempts: int | None = None
    attempt_timeout_seconds: float | None = None
    max_concurrent: int | None = None
    max_queue: int | None = None


class _RedisToml(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    socket_timeout_seconds: float | None = None
    connect_timeout_seconds: float | None = None
    max_connections: int | None = None
    key_prefix: str | None = None


class _CacheToml(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    final_ttl_seconds: int | None = None
    failure_ttl_seconds: int | None = None
    refund_pending_ttl_seconds: int | None = None
    changing_ttl_seconds: int | None = None
    not_found_ttl_seconds: int | None = None
    status_ttl_seconds: dict[str, int] = {}
    memory_max_entries: int | None = None
    memory_max_bytes: int | None = None
    stale_if_error_seconds: int | None = None
    distributed_coalescing: bool | None = None
    memory_layer_ttl_seconds: float | None = None
    verify_sample_rate: float | None = None


class _CircuitToml(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    failure_threshold: int | None = None
    failure_ratio: float | None = None
    window: int | None = None
    min_calls: int | None = None
    open_seconds: float | None = None


class _WaitToml(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    max_wait_seconds: float | None = None
    max_waiters: int | None = None
    poll_initial_seconds: float | None = None
    poll_max_seconds: float | None = None


class _ServerToml(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    drain_seconds: float | None = None
    shutdown_delay_seconds: float | None = None
    max_request_body_bytes: int | None = None


class _ClientToml(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: str
    key_sha256: str
    merchants: list[str]  # explicit, "*" for all: no client gets every merchant by accident
    operator: bool = False
    rate_per_second: float | None = None
    burst: int | None = None
    upstream_rate_per_second: float | None = None
    upstream_burst: int | None = None


class _ConfigToml(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    default_merchant: str | None = None
    allow_anonymous: bool | None = None
    secret_refresh_seconds: float | None = None
    merchants: list[_MerchantToml] = []
    clients: list[_ClientToml] = []
    upstream: _UpstreamToml = msgspec.field(default_factory=_UpstreamToml)
    redis: _RedisToml = msgspec.field(default_factory=_RedisToml)
    cache: _CacheToml = msgspec.field(default_factory=_CacheToml)
    server: _ServerToml = msgspec.field(default_factory=_ServerToml)
    circuit: _CircuitToml = msgspec.field(default_factory=_CircuitToml)
    wait: _WaitToml = msgspec.field(default_factory=_WaitToml)


def _read_toml(path: Path) -> _ConfigToml:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SettingsError("PROXY_CONFIG_FILE", f"cannot read {path}: {exc.strerror}") from None
    try:
        return msgspec.toml.decode(raw, type=_ConfigToml)
    except msgspec.ValidationError as exc:
        setting, problem = _toml_problem(raw, str(exc))
        raise SettingsError(f"PROXY_CONFIG_FILE ({path}) {setting}", problem) from None
    except msgspec.DecodeError as exc:
        raise SettingsError(f"PROXY_CONFIG_FILE ({path})", f"not valid TOML: {exc}") from None


_TOML_KINDS = (
    # msgspec's type names, most specific first, in the words of this README.
    ("float", "a number"),
    ("int", "a whole number"),
    ("bool", "true or false"),
    ("str", "a string"),
    ("array", "a list"),
    ("object", "a table"),
)


def _toml_problem(raw: bytes, message: str) -> tuple[str, str]:
    """msgspec's wording ("Expected `float | null`, got `str` - at `$.upstream.timeout_seconds`")
    turned into ours: the setting's dotted name, and what it must be, with the value given."""
    text, _, where = message.partition(" - at `$")
    where = where.rstrip("`")
    dotted = where.lstrip(".") or "(top level)"
    unknown = re.fullmatch(r"Object contains unknown field `(.+)`", text)
    if unknown:
        name = ".".join(p for p in (where.lstrip("."), unknown.group(1)) if p)
        return name, "unknown setting (see the README for the keys the file may hold)"
    missing = re.fullmatch(r"Object missing required field `(.+)`", text)
    if missing:
        return dotted, f"missing the required key {missing.group(1)!r}"
    expected = re.fullmatch(r"Expected `([^`]+)`, got `([^`]+)`", text)
    if expected:
        wanted = expected.group(1)
        kind = next((words for name, words in _TOML_KINDS if name in wanted), wanted)
        return dotted, f"must be {kind}, got {_toml_value(raw, where)}"
    return dotted, text


def _toml_value(raw: bytes, where: str) -> str:
    """The value at a msgspec path such as `.merchants[0].id`, shown short (the file holds no
    secret values: keys are given as file paths or variable names)."""
    try:
        node: Any = msgspec.toml.decode(raw)
        for name, index in re.findall(r"\.([^.\[]+)|\[(\d+)\]", where):
            node = node[int(index)] if index else node[name]
    except (msgspec.DecodeError, KeyError, IndexError, TypeError, ValueError):
        return "another type"
    shown = repr(node)
    return shown if len(shown) <= 60 else shown[:57] + "..."


# --- field parsers ----------------------------------------------------------------------------


def _number(
    name: str, raw: str | float | None, default: float, *, low: float, high: float
) -> float:
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(name, f"must be a number, got {raw!r}") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise SettingsError(name, f"must be between {low:g} and {high:g}, got {raw!r}")
    return value


def _integer(name: str, raw: str | int | None, default: int, *, low: int, high: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(name, f"must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise SettingsError(name, f"must be between {low} and {high}, got {raw!r}")
    return value


def _boolean(name: str, raw: str | bool | None, default: bool) -> bool:
    if raw is None or raw == "":
        return default
    if isinstance(raw, bool):
        return raw
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise SettingsError(name, f"must be true or false, got {raw!r}")


def _choice(name: str, raw: str | None, default: str, choices: tuple[str, ...]) -> str:
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value not in choices:
        raise SettingsError(name, f"must be one of {', '.join(choices)}, got {raw!r}")
    return value


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _base_url(name: str, raw: str, *, allow_insecure: bool) -> URL:
    shown = _shown_url(raw.strip())
    try:
        url = URL(raw.strip())
    except (ValueError, TypeError):
        raise SettingsError(name, f"not a URL: {shown!r}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise SettingsError(
            name, f"must be an http(s) origin such as {DEFAULT_BASE_URL}, got {shown!r}"
        )
    if url.user or url.password:
        raise SettingsError(name, f"must not contain credentials, got {shown!r}")
    if url.query_string or url.fragment:
        raise SettingsError(name, f"must not contain a query or fragment, got {shown!r}")
    if url.scheme == "http" and not (allow_insecure or _is_loopback(url.host)):
        raise SettingsError(
            name,
            f"plain http is allowed only for loopback hosts, got {shown!r}; use https "
            "(or set JUSPAY_ALLOW_INSECURE_HTTP=true for a trusted internal relay)",
        )
    return url.with_path(url.path.rstrip("/"))


def _api_version(name: str, raw: str) -> str:
    try:
        return validators.api_version(raw.strip())
    except BadRequest as exc:
        raise SettingsError(name, f"{exc} (got {raw!r})") from None


def _secret_from_file(name: str, path_text: str) -> tuple[Secret, Path]:
    path = Path(path_text)
    try:
        value = read_secret_file(path)
    except OSError as exc:
        raise SettingsError(name, f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SettingsError(name, f"{path} is not UTF-8 text") from None
    _check_secret_text(name, value)
    return Secret(value, f"file:{path}"), path


def _check_secret_text(name: str, value: str) -> None:
    if not value:
        raise SettingsError(name, "is empty")
    if any(not ("\x21" <= ch <= "\x7e") for ch in value):
        raise SettingsError(name, "must be printable ASCII without spaces")


def _merchant_id(name: str, raw: str) -> str:
    try:
        return validators.merchant_id(raw.strip())
    except BadRequest:
        raise SettingsError(name, f"not a valid merchant id: {raw!r}") from None


def _env_merchant(env: Mapping[str, str]) -> MerchantSettings | None:
    merchant_id = env.get("JUSPAY_MERCHANT_ID", "").strip()
    key = env.get("JUSPAY_API_KEY", "")
    key_file = env.get("JUSPAY_API_KEY_FILE", "").strip()
    if not merchant_id:
        if key or key_file:
            raise SettingsError("JUSPAY_MERCHANT_ID", "required when JUSPAY_API_KEY is set")
        return None
    merchant_id = _merchant_id("JUSPAY_MERCHANT_ID", merchant_id)
    if key and key_file:
        raise SettingsError("JUSPAY_API_KEY", "set either JUSPAY_API_KEY or JUSPAY_API_KEY_FILE")
    if key_file:
        secret, path = _secret_from_file("JUSPAY_API_KEY_FILE", key_file)
        return MerchantSettings(merchant_id, secret, path)
    if not key:
        raise SettingsError("JUSPAY_API_KEY", "required (or JUSPAY_API_KEY_FILE)")
    key = key.strip()
    _check_secret_text("JUSPAY_API_KEY", key)
    return MerchantSettings(merchant_id, Secret(key, "env:JUSPAY_API_KEY"))


def _toml_merchant(
    index: int, item: _MerchantToml, env: Mapping[str, str], base: Path
) -> MerchantSettings:
    where = f"PROXY_CONFIG_FILE merchants[{index}]"
    merchant_id = _merchant_id(f"{where}.id", item.id)
    if (item.api_key_file is None) == (item.api_key_env is None):
        raise SettingsError(where, "set exactly one of api_key_file or api_key_env")
    if item.api_key_file is not None:
        path = Path(item.api_key_file)
        if not path.is_absolute():
            path = base / path
        secret, path = _secret_from_file(f"{where}.api_key_file", str(path))
        return MerchantSettings(merchant_id, secret, path)
    env_name = item.api_key_env or ""
    value = env.get(env_name, "").strip()
    if not value:
        raise SettingsError(f"{where}.api_key_env", f"environment variable {env_name} is not set")
    _check_secret_text(env_name, value)
    return MerchantSettings(merchant_id, Secret(value, f"env:{env_name}"))


def _merchants(
    env: Mapping[str, str],
    toml: _ConfigToml,
    base_dir: Path,
    shared_webhook: WebhookSettings | None = None,
) -> tuple[list[MerchantSettings], str | None]:
    """One merchant from the environment and/or a list from the file, and the default."""
    merchants: list[MerchantSettings] = []
    # kid -> merchant: the proxy picks a merchant's keyring by the kid a JWT webhook names.
    kid_owners: dict[str, str] = {}
    env_merchant = _env_merchant(env)
    env_jwt = _env_jwt(env)
    if env_merchant is not None:
        # With JWT keys, a merchant takes plain (Basic) webhooks only with a pair of its own;
        # for JUSPAY_MERCHANT_ID that pair is JUSPAY_WEBHOOK_USERNAME/PASSWORD (a migration
        # keeps both set; unsetting the pair leaves JWT only).
        own_pair = shared_webhook if env_jwt is not None else None
        merchants.append(replace(env_merchant, jwt=env_jwt, webhook=own_pair))
        _claim_kids(kid_owners, merchants[-1], None)
    elif env_jwt is not None:
        raise SettingsError(
            "JUSPAY_WEBHOOK_JWT_PRIVATE_KEY_FILE",
            "applies to JUSPAY_MERCHANT_ID, which is not set (list the keys under [[merchants]])",
        )
    for index, item in enumerate(toml.merchants):
        merchant = _toml_merchant(index, item, env, base_dir)
        where = f"PROXY_CONFIG_FILE merchants[{index}]"
        merchant = replace(
            merchant,
            webhook=_toml_merchant_webhook(where, item, env, base_dir),
            jwt=_toml_jwt(where, item, base_dir),
        )
        if any(m.merchant_id == merchant.merchant_id for m in merchants):
            raise SettingsError(
                f"PROXY_CONFIG_FILE merchants[{index}].id",
                f"merchant {merchant.merchant_id!r} is listed twice",
            )
        _claim_kids(kid_owners, merchant, where)
        merchants.append(merchant)
    if not merchants:
        raise SettingsError(
            "JUSPAY_MERCHANT_ID", "required (or list [[merchants]] in PROXY_CONFIG_FILE)"
        )
    default_merchant = toml.default_merchant
    if default_merchant is not None:
        if not any(m.merchant_id == default_merchant for m in merchants):
            raise SettingsError(
                "PROXY_CONFIG_FILE default_merchant",
                f"{default_merchant!r} is not a listed merchant",
            )
    elif env_merchant is not None:
        default_merchant = env_merchant.merchant_id
    elif len(merchants) == 1:
        default_merchant = merchants[0].merchant_id
    return merchants, default_merchant


def _claim_kids(owners: dict[str, str], merchant: MerchantSettings, where: str | None) -> None:
    """Record the merchant's JWT key ids; a kid another merchant already holds is refused.
    `where` names the file's merchant entry; None: the environment's merchant."""
    if merchant.jwt is None:
        return
    for kid, _ in merchant.jwt.private_key_files:
        owner = owners.setdefault(kid, merchant.merchant_id)
        if owner != merchant.merchant_id:
            raise SettingsError(
                f"{where}.jwt_private_key_files.{kid}" if where else "JUSPAY_WEBHOOK_JWT_KID",
                f"kid {kid!r} is already a key of merchant {owner!r}: JWT key ids must be "
                "unique across merchants (a webhook's kid says whose it is)",
            )


def _toml_merchant_webhook(
    where: str, item: _MerchantToml, env: Mapping[str, str], base: Path
) -> WebhookSettings | None:
    """A merchant's own Basic pair for webhooks, or None (the shared pair applies)."""
    password_file, password_env = item.webhook_password_file, item.webhook_password_env
    if item.webhook_username is None:
        if password_file is not None or password_env is not None:
            raise SettingsError(f"{where}.webhook_username", "required with a webhook password")
        return None
    username = item.webhook_username.strip()
    if not username or len(username) > 128 or any(not ("!" <= ch <= "~") for ch in username):
        raise SettingsError(
            f"{where}.webhook_username", "must be 1-128 printable ASCII characters without spaces"
        )
    if ":" in username:
        raise SettingsError(f"{where}.webhook_username", "must not contain ':'")
    if (password_file is None) == (password_env is None):
        raise SettingsError(
            where, "with webhook_username, set exactly one of webhook_password_file or _env"
        )
    if password_file is not None:
        path = Path(password_file)
        if not path.is_absolute():
            path = base / path
        secret, path = _secret_from_file(f"{where}.webhook_password_file", str(path))
        return WebhookSettings(username=username, password=secret, password_file=path)
    env_name = password_env or ""
    value = env.get(env_name, "").strip()
    if not value:
        raise SettingsError(
            f"{where}.webhook_password_env", f"environment variable {env_name} is not set"
        )
    _check_secret_text(env_name, value)
    return WebhookSettings(username=username, password=Secret(value, f"env:{env_name}"))


def _toml_jwt(where: str, item: _MerchantToml, base: Path) -> JwtWebhookSettings | None:
    private, public = item.jwt_private_key_files, item.jwt_public_key_files
    if not private and not public:
        if item.jwt_max_age_seconds is not None:
            raise SettingsError(
                f"{where}.jwt_max_age_seconds",
                "only with jwt_private_key_files and jwt_public_key_files",
            )
        return None
    for name, table, other in (
        ("jwt_private_key_files", private, "the merchant's PEM private key"),
        ("jwt_public_key_files", public, "Juspay's PEM public key"),
    ):
        if not table:
            raise SettingsError(
                f"{where}.{name}", f'required for JWT webhooks: a table of kid = "path to {other}"'
            )

    return JwtWebhookSettings(
        private_key_files=_key_files(f"{where}.jwt_private_key_files", private, base, private=True),
        public_key_files=_key_files(f"{where}.jwt_public_key_files", public, base, private=False),
        max_age_seconds=_jwt_max_age(f"{where}.jwt_max_age_seconds", item.jwt_max_age_seconds),
    )


def _key_files(
    name: str, table: dict[str, str], base: Path, *, private: bool
) -> tuple[tuple[str, Path], ...]:
    """(kid, path) pairs of a kid = "path" table; relative paths are relative to the file."""
    pairs: list[tuple[str, Path]] = []
    for kid, path_text in table.items():
        setting = f"{name}.{kid if webhook_jwt.valid_kid(kid) else repr(kid[:40])}"
        path = Path(path_text)
        path = path if path.is_absolute() else base / path
        pairs.append((_kid(setting, kid), _key_file(setting, path, private=private)))
    return tuple(pairs)


def _env_jwt(env: Mapping[str, str]) -> JwtWebhookSettings | None:
    """JWT webhooks for JUSPAY_MERCHANT_ID: one key pair, as Juspay's SDKs configure it."""
    names = (
        "JUSPAY_WEBHOOK_JWT_KID",
        "JUSPAY_WEBHOOK_JWT_PRIVATE_KEY_FILE",
        "JUSPAY_WEBHOOK_JWT_PUBLIC_KEY_FILE",
        "JUSPAY_WEBHOOK_JWT_PUBLIC_KEY_KID",
        "JUSPAY_WEBHOOK_JWT_MAX_AGE_SECONDS",
    )
    kid, private, public, public_kid, max_age = (env.get(n, "").strip() for n in names)
    if not any((kid, private, public, public_kid, max_age)):
        return None
    for name, value, what in (
        ("JUSPAY_WEBHOOK_JWT_KID", kid, "the key id (kid) of the merchant's JWT key"),
        ("JUSPAY_WEBHOOK_JWT_PRIVATE_KEY_FILE", private, "the merchant's PEM private key file"),
        ("JUSPAY_WEBHOOK_JWT_PUBLIC_KEY_FILE", public, "Juspay's PEM public key file"),
    ):
        if not value:
            raise SettingsError(name, f"required for JWT webhooks: {what}")
    kid = _kid("JUSPAY_WEBHOOK_JWT_KID", kid)
    public_kid = _kid("JUSPAY_WEBHOOK_JWT_PUBLIC_KEY_KID", public_kid) if public_kid else kid
    return JwtWebhookSettings(
        private_key_files=(
            (kid, _key_file("JUSPAY_WEBHOOK_JWT_PRIVATE_KEY_FILE", Path(private), private=True)),
        ),
        public_key_files=(
            (
                public_kid,
                _key_file("JUSPAY_WEBHOOK_JWT_PUBLIC_KEY_FILE", Path(public), private=False),
            ),
        ),
        max_age_seconds=_jwt_max_age("JUSPAY_WEBHOOK_JWT_MAX_AGE_SECONDS", max_age),
    )


def _kid(name: str, raw: str) -> str:
    if not webhook_jwt.valid_kid(raw):
        raise SettingsError(name, "a kid must be 1-128 printable ASCII characters without spaces")
    return raw


def _key_file(name: str, path: Path, *, private: bool) -> Path:
    """The path of a usable PEM RSA key file; SettingsError (never key material) otherwise."""
    try:
        if private:
            webhook_jwt.load_private_key(path)
        else:
            webhook_jwt.load_public_key(path)
    except webhook_jwt.KeyFileError as exc:
        raise SettingsError(name, str(exc)) from None
    return path


def _jwt_max_age(name: str, raw: str | float | None) -> float:
    return _number(name, raw, webhook_jwt.DEFAULT_MAX_AGE_SECONDS, low=60.0, high=7 * 24 * 3600.0)


def _cache_settings(toml: _CacheToml, verify_env: str | None = None) -> CacheSettings:
    name = "PROXY_CONFIG_FILE cache"
    defaults = policy.CachePolicy()
    week = 7 * 24 * 3600
    overrides: dict[str, int] = {}
    for status, ttl in toml.status_ttl_seconds.items():
        if status not in policy.CACHEABLE_STATUSES:
            raise SettingsError(
                f"{name}.status_ttl_seconds.{status}",
                "only final and failure statuses may be cached: "
                + ", ".join(sorted(policy.CACHEABLE_STATUSES)),
            )
        overrides[status] = _integer(
            f"{name}.status_ttl_seconds.{status}", ttl, 0, low=0, high=week
        )
    cache_policy = policy.CachePolicy(
        final_ttl=_integer(
            f"{name}.final_ttl_seconds",
            toml.final_ttl_seconds,
            defaults.final_ttl,
            low=0,
            high=week,
        ),
        failure_ttl=_integer(
            f"{name}.failure_ttl_seconds",
            toml.failure_ttl_seconds,
            defaults.failure_ttl,
            low=0,
            high=3600,
        ),
        refund_pending_ttl=_integer(
            f"{name}.refund_pending_ttl_seconds",
            toml.refund_pending_ttl_seconds,
            defaults.refund_pending_ttl,
            low=0,
            high=3600,
        ),
        changing_ttl=_integer(
            f"{name}.changing_ttl_seconds",
            toml.changing_ttl_seconds,
            defaults.changing_ttl,
            low=0,
            high=3600,
        ),
        not_found_ttl=_integer(
            f"{name}.not_found_ttl_seconds",
            toml.not_found_ttl_seconds,
            defaults.not_found_ttl,
            low=0,
            high=3600,
        ),
        status_ttls=tuple(sorted(overrides.items())),
    )
    return CacheSettings(
        policy=cache_policy,
        memory_max_entries=_integer(
            f"{name}.memory_max_entries",
            toml.memory_max_entries,
            CacheSettings().memory_max_entries,
            low=1,
            high=10_000_000,
        ),
        memory_max_bytes=_integer(
            f"{name}.memory_max_bytes",
            toml.memory_max_bytes,
            CacheSettings().memory_max_bytes,
            low=64 * 1024,
            high=64 * 1024**3,
        ),
        stale_if_error_seconds=_integer(
            f"{name}.stale_if_error_seconds",
            toml.stale_if_error_seconds,
            CacheSettings().stale_if_error_seconds,
            low=0,
            high=week,
        ),
        distributed_coalescing=_boolean(
            f"{name}.distributed_coalescing", toml.distributed_coalescing, True
        ),
        memory_layer_ttl_seconds=_number(
            f"{name}.memory_layer_ttl_seconds",
            toml.memory_layer_ttl_seconds,
            CacheSettings().memory_layer_ttl_seconds,
            low=0.0,
            high=3600.0,
        ),
        verify_sample_rate=_number(
            "PROXY_VERIFY_SAMPLE_RATE" if verify_env else f"{name}.verify_sample_rate",
            verify_env or toml.verify_sample_rate,
            CacheSettings().verify_sample_rate,
            low=0.0,
            high=1.0,
        ),
    )


def _wait_settings(toml: _WaitToml) -> WaitSettings:
    name = "PROXY_CONFIG_FILE wait"
    d = WaitSettings()
    initial = _number(
        f"{name}.poll_initial_seconds",
        toml.poll_initial_seconds,
        d.poll_initial_seconds,
        low=0.05,
        high=60.0,
    )
    return WaitSettings(
        max_wait_seconds=_number(
            f"{name}.max_wait_seconds", toml.max_wait_seconds, d.max_wait_seconds, low=1, high=60
        ),
        max_waiters=_integer(
            f"{name}.max_waiters", toml.max_waiters, d.max_waiters, low=1, high=100_000
        ),
        poll_initial_seconds=initial,
        poll_max_seconds=_number(
            f"{name}.poll_max_seconds",
            toml.poll_max_seconds,
            max(d.poll_max_seconds, initial),
            low=initial,
            high=60.0,
        ),
    )


def _circuit_settings(toml: _CircuitToml) -> CircuitSettings:
    name = "PROXY_CONFIG_FILE circuit"
    d = CircuitSettings()
    return CircuitSettings(
        failure_threshold=_integer(
            f"{name}.failure_threshold",
            toml.failure_threshold,
            d.failure_threshold,
            low=1,
            high=1000,
        ),
        failure_ratio=_number(
            f"{name}.failure_ratio", toml.failure_ratio, d.failure_ratio, low=0.01, high=1.0
        ),
        window=_integer(f"{name}.window", toml.window, d.window, low=1, high=10_000),
        min_calls=_integer(f"{name}.min_calls", toml.min_calls, d.min_calls, low=1, high=10_000),
        open_seconds=_number(
            f"{name}.open_seconds", toml.open_seconds, d.open_seconds, low=0.1, high=600.0
        ),
    )


_REDIS_SCHEMES = {
    "redis": "standalone",
    "rediss": "standalone",
    "unix": "standalone",
    "redis+cluster": "cluster",
    "rediss+cluster": "cluster",
    "redis+sentinel": "sentinel",
}


def _shown_url(url: str) -> str:
    """A URL fit for an error line: any user information (which may be a password) masked."""
    scheme, sep, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    _userinfo, at, hosts = authority.rpartition("@")
    if not at:
        return url
    return f"{scheme}{sep}{MASK}@{hosts}{slash}{path}"


def _redis_db(url: str, text: str) -> int:
    """The database number of a REDIS_URL: a whole number, never silently database 0."""
    if not text.isascii() or not text.isdigit() or int(text) > _MAX_REDIS_DB:
        raise SettingsError(
            "REDIS_URL",
            f"the database must be a number from 0 to {_MAX_REDIS_DB}, got {text!r} "
            f"in {_shown_url(url)!r}",
        )
    return int(text)


_MAX_REDIS_DB = 65535


def _internal_port(env: Mapping[str, str]) -> int | None:
    raw = (env.get("PROXY_INTERNAL_PORT") or "").strip()
    if not raw:
        return None
    port = _integer("PROXY_INTERNAL_PORT", raw, 0, low=0, high=65535)
    public = _integer("PROXY_PORT", env.get("PROXY_PORT"), 8080, low=0, high=65535)
    if port != 0 and port == public:
        raise SettingsError("PROXY_INTERNAL_PORT", f"must differ from PROXY_PORT, got {raw!r}")
    return port


def _redis_settings(env: Mapping[str, str], toml: _RedisToml) -> RedisSettings:
    redis_url_raw = env.get("REDIS_URL", "").strip()
    redis_url = None
    mode = "standalone"
    if redis_url_raw:
        scheme = redis_url_raw.partition("://")[0].lower()
        if scheme not in _REDIS_SCHEMES:
            raise SettingsError(
                "REDIS_URL",
                "must start with redis://, rediss://, unix://, redis+cluster:// or "
                f"redis+sentinel://, got {_shown_url(redis_url_raw)!r}",
            )
        mode = _REDIS_SCHEMES[scheme]
        if mode != "standalone":
            from proxy.cache.connect import parse_nodes  # noqa: PLC0415 - avoids an import cycle

            try:
                parts = parse_nodes(redis_url_raw)
            except ValueError as exc:
                raise SettingsError("REDIS_URL", str(exc)) from None
            if mode == "sentinel" and not parts.path:
                raise SettingsError(
                    "REDIS_URL",
                    f"redis+sentinel:// needs /service_name, got {_shown_url(redis_url_raw)!r}",
                )
            if mode == "sentinel" and len(parts.path) > 1:
                _redis_db(redis_url_raw, "/".join(parts.path[1:]))
        else:
            try:
                parsed = URL(redis_url_raw)
            except (ValueError, TypeError):
                raise SettingsError(
                    "REDIS_URL", f"not a URL: {_shown_url(redis_url_raw)!r}"
                ) from None
            if scheme != "unix" and parsed.path.strip("/"):
                _redis_db(redis_url_raw, parsed.path.strip("/"))
            if "db" in parsed.query:
                _redis_db(redis_url_raw, parsed.query["db"])
        redis_url = Secret(redis_url_raw, "env:REDIS_URL")
    return RedisSettings(
        url=redis_url,
        mode=mode,
        socket_timeout_seconds=_number(
            "PROXY_CONFIG_FILE redis.socket_timeout_seconds",
            toml.socket_timeout_seconds,
            RedisSettings().socket_timeout_seconds,
            low=0.01,
            high=10.0,
        ),
        connect_timeout_seconds=_number(
            "PROXY_CONFIG_FILE redis.connect_timeout_seconds",
            toml.connect_timeout_seconds,
            RedisSettings().connect_timeout_seconds,
            low=0.01,
            high=10.0,
        ),
        max_connections=_integer(
            "PROXY_CONFIG_FILE redis.max_connections",
            toml.max_connections,
            RedisSettings().max_connections,
            low=1,
            high=10_000,
        ),
        key_prefix=_key_prefix(toml.key_prefix),
    )


def load_settings(env: Mapping[str, str]) -> Settings:
    """Parse and check every setting; raise SettingsError naming the first bad one."""
    config_path_text = env.get("PROXY_CONFIG_FILE", "").strip()
    config_path = Path(config_path_text) if config_path_text else None
    toml = _read_toml(config_path) if config_path else _ConfigToml()
    base_dir = config_path.parent if config_path else Path.cwd()

    # Upstream.
    allow_insecure = _boolean(
        "JUSPAY_ALLOW_INSECURE_HTTP",
        env.get("JUSPAY_ALLOW_INSECURE_HTTP") or toml.upstream.allow_insecure_http,
        False,
    )
    base_url_name = "JUSPAY_BASE_URL"
    base_url_raw = env.get("JUSPAY_BASE_URL", "").strip()
    if not base_url_raw and toml.upstream.base_url:
        base_url_name, base_url_raw = "PROXY_CONFIG_FILE upstream.base_url", toml.upstream.base_url
    upstream = UpstreamSettings(
        base_url=_base_url(
            base_url_name, base_url_raw or DEFAULT_BASE_URL, allow_insecure=allow_insecure
        ),
        api_version=_api_version(
            "JUSPAY_API_VERSION",
            env.get("JUSPAY_API_VERSION") or toml.upstream.api_version or DEFAULT_API_VERSION,
        ),
        timeout_seconds=_number(
            "JUSPAY_TIMEOUT_SECONDS",
            env.get("JUSPAY_TIMEOUT_SECONDS") or toml.upstream.timeout_seconds,
            10.0,
            low=0.1,
            high=120.0,
        ),
        connect_timeout_seconds=_number(
            "PROXY_CONFIG_FILE upstream.connect_timeout_seconds",
            toml.upstream.connect_timeout_seconds,
            3.0,
            low=0.05,
            high=60.0,
        ),
        max_body_bytes=_integer(
            "PROXY_CONFIG_FILE upstream.max_body_bytes",
            toml.upstream.max_body_bytes,
            1024 * 1024,
            low=4096,
            high=64 * 1024 * 1024,
        ),
        max_connections=_integer(
            "PROXY_CONFIG_FILE upstream.max_connections",
            toml.upstream.max_connections,
            100,
            low=1,
            high=10_000,
        ),
        allow_insecure_http=allow_insecure,
        max_attempts=_integer(
            "PROXY_CONFIG_FILE upstream.max_attempts", toml.upstream.max_attempts, 3, low=1, high=10
        ),
        attempt_timeout_seconds=_number(
            "PROXY_CONFIG_FILE upstream.attempt_timeout_seconds",
            toml.upstream.attempt_timeout_seconds,
            4.0,
            low=0.05,
            high=120.0,
        ),
        max_concurrent=_integer(
            "PROXY_CONFIG_FILE upstream.max_concurrent",
            toml.upstream.max_concurrent,
            64,
            low=1,
            high=10_000,
        ),
        max_queue=_integer(
            "PROXY_CONFIG_FILE upstream.max_queue",
            toml.upstream.max_queue,
            256,
            low=0,
            high=100_000,
        ),
        circuit=_circuit_settings(toml.circuit),
    )

    webhook = _webhook(env)
    merchants, default_merchant = _merchants(env, toml, base_dir, webhook)

    redis = _redis_settings(env, toml.redis)

    server = ServerSettings(
        host=(env.get("PROXY_HOST") or "127.0.0.1").strip(),
        port=_integer("PROXY_PORT", env.get("PROXY_PORT"), 8080, low=0, high=65535),
        internal_port=_internal_port(env),
        internal_host=(env.get("PROXY_INTERNAL_HOST") or "").strip() or None,
        drain_seconds=_number(
            "PROXY_DRAIN_SECONDS",
            env.get("PROXY_DRAIN_SECONDS") or toml.server.drain_seconds,
            20.0,
            low=0.0,
            high=300.0,
        ),
        shutdown_delay_seconds=_number(
            "PROXY_SHUTDOWN_DELAY_SECONDS",
            env.get("PROXY_SHUTDOWN_DELAY_SECONDS") or toml.server.shutdown_delay_seconds,
            0.0,
            low=0.0,
            high=60.0,
        ),
        max_request_body_bytes=_integer(
            "PROXY_CONFIG_FILE server.max_request_body_bytes",
            toml.server.max_request_body_bytes,
            ServerSettings().max_request_body_bytes,
            low=1024,
            high=16 * 1024 * 1024,
        ),
    )

    clients = _clients(toml.clients, {m.merchant_id for m in merchants})
    allow_anonymous = _boolean(
        "PROXY_ALLOW_ANONYMOUS", env.get("PROXY_ALLOW_ANONYMOUS") or toml.allow_anonymous, False
    )
    if not clients and not allow_anonymous and not _is_loopback(server.host):
        raise SettingsError(
            "PROXY_ALLOW_ANONYMOUS",
            f"PROXY_HOST={server.host} is not loopback and no [[clients]] are configured: "
            "list client keys in PROXY_CONFIG_FILE, or set PROXY_ALLOW_ANONYMOUS=true",
        )

    return Settings(
        wait=_wait_settings(toml.wait),
        clients=clients,
        allow_anonymous=allow_anonymous,
        secret_refresh_seconds=_number(
            "PROXY_CONFIG_FILE secret_refresh_seconds",
            toml.secret_refresh_seconds,
            1.0,
            low=0.0,
            high=3600.0,
        ),
        merchants=tuple(merchants),
        default_merchant=default_merchant,
        upstream=upstream,
        redis=redis,
        cache=_cache_settings(toml.cache, env.get("PROXY_VERIFY_SAMPLE_RATE")),
        server=server,
        webhook=webhook,
        log=LogSettings(
            level=_choice("LOG_LEVEL", env.get("LOG_LEVEL"), "info", LOG_LEVELS),
            format=_choice("LOG_FORMAT", env.get("LOG_FORMAT"), "json", LOG_FORMATS),
        ),
        config_file=config_path,
    )


_SHA256_HEX = frozenset("0123456789abcdef")


def _clients(items: list[_ClientToml], merchant_ids: set[str]) -> tuple[ClientSettings, ...]:
    clients: list[ClientSettings] = []
    seen_names: set[str] = set()
    seen_hashes: set[str] = set()
    for index, item in enumerate(items):
        where = f"PROXY_CONFIG_FILE clients[{index}]"
        if not item.name or not item.name.isprintable() or len(item.name) > 64:
            raise SettingsError(f"{where}.name", "must be 1-64 printable characters")
        digest = item.key_sha256.strip().lower()
        if len(digest) != 64 or not set(digest) <= _SHA256_HEX:
            raise SettingsError(
                f"{where}.key_sha256",
                "must be the 64-hex-digit SHA-256 of the client key "
                "(`order-proxy client-key` makes a key and its hash)",
            )
        if item.name in seen_names or digest in seen_hashes:
            raise SettingsError(where, "client name and key must be unique")
        seen_names.add(item.name)
        seen_hashes.add(digest)
        for merchant in item.merchants:
            if merchant != "*" and merchant not in merchant_ids:
                raise SettingsError(f"{where}.merchants", f"{merchant!r} is not a listed merchant")
        clients.append(
            ClientSettings(
                name=item.name,
                key_sha256=digest,
                merchants=tuple(item.merchants),
                operator=item.operator,
                rate_limit=_rate_limit(where, "", item.rate_per_second, item.burst),
                upstream_rate_limit=_rate_limit(
                    where, "upstream_", item.upstream_rate_per_second, item.upstream_burst
                ),
            )
        )
    return tuple(clients)


_MIN_RATE, _MAX_RATE = 0.001, 1_000_000


def _limits_shown(client: ClientSettings) -> dict[str, str]:
    """A client's rate limits as check-config prints them (only those set)."""
    shown = {}
    for name, limit in (
        ("rate_limit", client.rate_limit),
        ("upstream_rate_limit", client.upstream_rate_limit),
    ):
        if limit is not None:
            shown[name] = f"{limit.rate_per_second:g}/s, burst {limit.burst}"
    return shown


def _rate_limit(where: str, kind: str, rate: float | None, burst: int | None) -> RateLimit | None:
    """`{kind}rate_per_second` and `{kind}burst` of one client; burst defaults to one second's
    worth of requests (at least 1)."""
    if rate is None:
        if burst is not None:
            raise SettingsError(f"{where}.{kind}burst", f"needs {kind}rate_per_second as well")
        return None
    if not _MIN_RATE <= rate <= _MAX_RATE:  # also refuses nan and inf
        raise SettingsError(
            f"{where}.{kind}rate_per_second",
            f"must be between {_MIN_RATE} and {_MAX_RATE}, got {rate}",
        )
    if burst is None:
        burst = max(1, math.ceil(rate))
    elif not 1 <= burst <= _MAX_RATE:
        raise SettingsError(f"{where}.{kind}burst", f"must be 1 to {_MAX_RATE}, got {burst}")
    return RateLimit(rate_per_second=rate, burst=burst)


def _key_prefix(raw: str | None) -> str:
    if raw is None:
        return RedisSettings().key_prefix
    if not raw or any(ch in raw for ch in "{}:| \t\r\n"):
        raise SettingsError(
            "PROXY_CONFIG_FILE redis.key_prefix",
            "must be non-empty without braces, colons or spaces",
        )
    return raw


def _webhook(env: Mapping[str, str]) -> WebhookSettings | None:
    username = env.get("JUSPAY_WEBHOOK_USERNAME", "").strip()
    password = env.get("JUSPAY_WEBHOOK_PASSWORD", "")
    password_file = env.get("JUSPAY_WEBHOOK_PASSWORD_FILE", "").strip()
    if not username:
        if password or password_file:
            raise SettingsError(
                "JUSPAY_WEBHOOK_USERNAME", "required when a webhook password is set"
            )
        return None
    if password and password_file:
        raise SettingsError(
            "JUSPAY_WEBHOOK_PASSWORD",
            "set either JUSPAY_WEBHOOK_PASSWORD or JUSPAY_WEBHOOK_PASSWORD_FILE",
        )
    path: Path | None = None
    if password_file:
        secret, path = _secret_from_file("JUSPAY_WEBHOOK_PASSWORD_FILE", password_file)
    elif password:
        _check_secret_text("JUSPAY_WEBHOOK_PASSWORD", password)
        secret = Secret(password, "env:JUSPAY_WEBHOOK_PASSWORD")
    else:
        raise SettingsError(
            "JUSPAY_WEBHOOK_PASSWORD", "required when JUSPAY_WEBHOOK_USERNAME is set (or _FILE)"
        )
    return WebhookSettings(username=username, password=secret, password_file=path)
