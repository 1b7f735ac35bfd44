"""The configuration reference (docs/configuration.md's tables), generated from the schema.

Rows come from walking the settings dataclasses: every field whose Meta names an environment
variable or a file key, with its default, its bounds and a one-line meaning (the Meta's
`description`, else `MEANINGS` below). Credentials and the `[[merchants]]` / `[[clients]]`
tables are built by their own loaders, so their rows come from `CREDENTIAL_ROWS` and the
TOML structs' fields. A field without a meaning is an error, so a new setting cannot reach the
page undocumented; tests/config/test_reference.py fails when the page and the schema disagree.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import msgspec
from msgspec import Meta
from yarl import URL

from proxy.config.keyfiles import DEFAULT_MAX_AGE_SECONDS
from proxy.config.meta import extra, field_metas, field_types
from proxy.config.secrets import Secret
from proxy.config.settings import (
    CIRCUIT_FIELDS,
    POLICY_FIELDS,
    STATUS_TTL,
    JwtWebhookSettings,
    Settings,
)
from proxy.config.tomlfile import ClientToml, MerchantToml
from proxy.core.policy import CachePolicy
from proxy.upstream.circuit import CircuitSettings

# Sections whose dataclass lives with the code that uses it: their Meta is declared apart.
_DECLARED_APART: Final[Mapping[type[Any], Mapping[str, Meta]]] = {
    CircuitSettings: CIRCUIT_FIELDS,
    CachePolicy: POLICY_FIELDS,
}

# One line per setting, keyed by its path in Settings (a Meta `description` wins).
MEANINGS: Final[Mapping[str, str]] = {
    "upstream.base_url": "Juspay's origin (may carry a path prefix); `http://` only for "
    "loopback unless `JUSPAY_ALLOW_INSECURE_HTTP`",
    "upstream.api_version": "`version` header sent when the caller sends none",
    "upstream.timeout_seconds": "overall deadline for one upstream read, retries included",
    "upstream.connect_timeout_seconds": "deadline to open a connection to Juspay",
    "upstream.max_body_bytes": "larger upstream bodies are refused (502 `upstream_bad_body`)",
    "upstream.max_connections": "upstream connection pool size",
    "upstream.allow_insecure_http": "allow an `http://` upstream that is not loopback "
    "(a trusted relay)",
    "upstream.max_attempts": "attempts per read: connection errors, timeouts, 502/503/504 "
    "and 429 are retried",
    "upstream.attempt_timeout_seconds": "deadline of each attempt (all share `timeout_seconds`)",
    "upstream.max_concurrent": "bulkhead: upstream calls at once",
    "upstream.max_queue": "calls waiting for a bulkhead slot; beyond: 503 `overloaded`",
    "upstream.circuit.failure_threshold": "consecutive failed reads that open the circuit "
    "(one read: a caller's request, retries included)",
    "upstream.circuit.failure_ratio": "or this share of failures over the last `window` calls",
    "upstream.circuit.window": "calls the failure ratio is taken over",
    "upstream.circuit.min_calls": "calls the window must hold before the ratio counts",
    "upstream.circuit.open_seconds": "how long an open circuit fails fast "
    "(503 `upstream_circuit_open`) before probing",
    "upstream.https_proxy": "forward proxy for Juspay only (never Redis); its credentials "
    "go on the CONNECT only and are masked everywhere",
    "upstream.no_proxy": "hosts that bypass `HTTPS_PROXY` (curl's rules)",
    "upstream.ca_file": "CA bundle Juspay's certificate is verified against (a private CA); "
    "checked at start-up",
    "server.worker_restart_seconds": "`--workers`: first backoff before a dead worker is "
    "replaced (doubling, up to 30 s)",
    "server.worker_crash_limit": "`--workers`: worker deaths within a minute that end the "
    "parent (exit 1) so the orchestrator restarts the pod",
    "tracing.exporter": "`otlp` turns tracing on (`none` or unset: off unless an endpoint is set)",
    "tracing.endpoint": "OTLP/HTTP traces endpoint, as given",
    "tracing.base_endpoint": "OTLP/HTTP base endpoint (`/v1/traces` is added)",
    "tracing.protocol": "only `http/protobuf` is spoken",
    "tracing.sampler": "head sampler: `parentbased_always_on`, `traceidratio`, ... (the "
    "standard names)",
    "tracing.sampler_arg": "the ratio for the ratio samplers",
    "tracing.service_name": "the `service.name` resource attribute",
    "tracing.sdk_disabled": "`true` turns tracing off whatever else is set",
    "redis.url": "shared cache and invalidation bus: `redis://[:pw@]host:port/db`, "
    "`rediss://…`, `unix://…`, `redis+cluster://h:p[,h:p…]`, "
    "`redis+sentinel://h:p[,…]/service[/db]`; unset: an in-process cache for one process",
    "redis.socket_timeout_seconds": "deadline of one Redis round trip (a slow cache is worse "
    "than none)",
    "redis.connect_timeout_seconds": "deadline to connect to Redis",
    "redis.max_connections": "Redis connection pool size",
    "redis.key_prefix": "prefix of every Redis key and channel (no braces, colons or spaces)",
    "redis.ack_replicas": "replicas a webhook's or purge's invalidation must reach (`WAIT`) "
    "before it is acknowledged; -1: one if the primary has a replica, else none",
    "redis.ack_timeout_seconds": "how long an acknowledgement waits for them; not reached: "
    "503 with `Retry-After`, so Juspay retries",
    "cache.policy.final_ttl": "`CHARGED`, `AUTO_REFUNDED`, `VOIDED` with every refund settled",
    "cache.policy.failure_ttl": "failure statuses (`AUTHENTICATION_FAILED`, "
    "`AUTHORIZATION_FAILED`, `JUSPAY_DECLINED`, `CAPTURE_FAILED`, `VOID_FAILED`)",
    "cache.policy.refund_pending_ttl": "a final status with a refund still pending",
    "cache.policy.changing_ttl": "a final status with a live mandate or an open chargeback",
    "cache.policy.not_found_ttl": "Juspay's `NOT_FOUND` answer (0: never cached)",
    "cache.memory_max_entries": "in-process cache bound, in entries",
    "cache.memory_max_bytes": "in-process cache bound, in bytes",
    "cache.stale_if_error_seconds": "how long past its TTL a final entry may answer "
    "(`X-Cache: STALE`) when Juspay fails (0: never)",
    "cache.distributed_coalescing": "replicas sharing Redis make one upstream call per missed key",
    "cache.memory_layer_ttl_seconds": "with Redis: how long a fresh entry is also answered "
    "from this process' memory (0: off)",
    "cache.outage_grace_seconds": "while Redis or the bus is down: how long an answer read "
    "from Juspay is kept in memory, from when its read started (0: not kept)",
    "cache.verify_sample_rate": "share of cache hits re-read from Juspay in the background "
    "and compared (0: off)",
    "server.host": "listen address of the API",
    "server.port": "listen port of the API (0: any free port; the `listening` line says which)",
    "server.internal_port": "a second listener for `/metrics`, `/readyz` and `/healthz`, "
    "which then are not served on `PROXY_PORT`; must differ from it",
    "server.internal_host": "the internal listener's address (default: `PROXY_HOST`)",
    "server.fast_lane": "answer GET/HEAD order reads on aiohttp's low-level server (the same "
    "middlewares and handlers, without the Application's per-request routing); off: all "
    "requests through web.Application",
    "server.drain_seconds": "on SIGTERM, how long in-flight requests may take to finish",
    "server.shutdown_delay_seconds": "on SIGTERM, keep listening (already unready) this long "
    "before closing",
    "server.max_request_body_bytes": "largest request body (webhooks, batchGet)",
    "server.max_header_bytes": "total bytes of one request's headers; over it: 431 and the "
    "connection closes",
    "server.header_timeout_seconds": "time to finish a request's headers, from its first byte; "
    "then 408 and closed",
    "server.body_timeout_seconds": "time to finish a request body once its headers are in; "
    "then 408 `request_timeout`",
    "server.keepalive_seconds": "idle keep-alive of a caller's connection",
    "server.max_connections": "open connections per listener per process; beyond: a fixed "
    "503 and closed",
    "server.max_unauthenticated_bodies": "webhook bodies read at once before their sender is "
    "known (JWT webhooks); beyond: 503",
    "server.jwt_max_concurrent": "JWT webhook decryptions running at once",
    "server.jwt_max_queue": "JWT webhook decryptions waiting for a slot; beyond: 503",
    "server.jwt_max_per_second": "JWT webhook decryptions started per second; beyond: 503",
    "server.operator_refresh_seconds": "`/metrics` renders and `/readyz` checks Redis at most "
    "once per this many seconds (0: every time)",
    "log.level": "log level",
    "log.format": "`json` (one object per line) or `console` (for a terminal)",
    "allow_anonymous": "allow callers without a client key on a non-loopback listener",
    "secret_refresh_seconds": "how often secret files are checked for rotation",
    "wait.max_wait_seconds": "the largest N accepted in `?wait=N`",
    "wait.max_waiters": "callers waiting at once per process, shared fairly between clients; "
    "beyond: 503 `overloaded`",
    "wait.poll_initial_seconds": "first poll of Juspay for waiters, then x1.5 each time",
    "wait.poll_max_seconds": "longest interval between polls (at least `poll_initial_seconds`)",
}


@dataclass(frozen=True, slots=True)
class Row:
    """One setting as the reference shows it."""

    env: str = ""
    toml: str = ""
    kind: str = ""
    default: str = ""
    allowed: str = ""
    meaning: str = ""


def _allowed_bounds(meta: Meta | None) -> str:
    if meta is None or meta.ge is None or meta.le is None:
        return ""
    return f"{_number(meta.ge)} to {_number(meta.le)}"


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) and not value.is_integer() else str(int(value))


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _shown(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"`{_number(value)}`"
    if isinstance(value, (str, URL)):
        return f"`{value}`"
    return f"`{value!r}`"


def _kind(kind: Any) -> str:
    args = typing.get_args(kind)
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        (kind,) = (a for a in args if a is not type(None))
        args = typing.get_args(kind)
    if typing.get_origin(kind) is Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    names = {bool: "boolean", int: "integer", float: "number", str: "string", URL: "URL"}
    if kind is Secret:
        return "secret URL"
    containers = {dict: "table", list: "list"}
    return names.get(kind) or containers.get(typing.get_origin(kind) or kind, str(kind))


# Settings that proxy.config.credentials reads itself (merchants, secrets, webhooks).
CREDENTIAL_ROWS: Final = (
    Row("PROXY_CONFIG_FILE", "", "path", "unset", "", "the optional TOML file described below"),
    Row(
        "JUSPAY_MERCHANT_ID",
        "",
        "string",
        "unset",
        "",
        "merchant id sent as `x-merchantid`; required unless the file lists `[[merchants]]`",
    ),
    Row(
        "JUSPAY_API_KEY / JUSPAY_API_KEY_FILE",
        "",
        "secret",
        "unset",
        "",
        "that merchant's API key, or a file holding it (re-read when it changes); "
        "required with `JUSPAY_MERCHANT_ID`",
    ),
    Row(
        "",
        "default_merchant",
        "string",
        "unset",
        "",
        "merchant used when a caller sends no `x-merchantid` (default: the only one)",
    ),
    Row(
        "JUSPAY_WEBHOOK_USERNAME",
        "",
        "string",
        "unset",
        "",
        "the shared Basic user Juspay's webhooks carry (merchants without a pair of their own "
        "and without JWT keys); unset, with no other webhook credentials: endpoint off",
    ),
    Row(
        "JUSPAY_WEBHOOK_PASSWORD / JUSPAY_WEBHOOK_PASSWORD_FILE",
        "",
        "secret",
        "unset",
        "",
        "the shared Basic password, or a file holding it (re-read when it changes)",
    ),
    Row(
        "JUSPAY_WEBHOOK_JWT_KID",
        "",
        "string",
        "unset",
        "1-128 printable characters",
        "JWT webhooks for `JUSPAY_MERCHANT_ID`: the kid of the merchant's JWT key",
    ),
    Row(
        "JUSPAY_WEBHOOK_JWT_PRIVATE_KEY_FILE",
        "",
        "path",
        "unset",
        "PEM RSA ≥ 2048 bits",
        "the merchant's private key (decrypts the JWE); re-read when it changes",
    ),
    Row(
        "JUSPAY_WEBHOOK_JWT_PUBLIC_KEY_FILE",
        "",
        "path",
        "unset",
        "PEM RSA ≥ 2048 bits",
        "Juspay's public key (verifies the JWS); re-read when it changes",
    ),
    Row(
        "JUSPAY_WEBHOOK_JWT_PUBLIC_KEY_KID",
        "",
        "string",
        "`JUSPAY_WEBHOOK_JWT_KID`",
        "",
        "the kid Juspay's signature names, when it differs",
    ),
    Row(
        "JUSPAY_WEBHOOK_JWT_MAX_AGE_SECONDS",
        "",
        "number",
        _shown(DEFAULT_MAX_AGE_SECONDS),
        _allowed_bounds(field_metas(JwtWebhookSettings)["max_age_seconds"]),
        "oldest JWT webhook accepted (its `iat`, else the event's `date_created`)",
    ),
)

STATUS_TTL_ROW: Final = Row(
    "",
    "cache.status_ttl_seconds.STATUS",
    "integer",
    "",
    _allowed_bounds(STATUS_TTL),
    "per-status TTL override (final and failure statuses only)",
)

MERCHANT_MEANINGS: Final[Mapping[str, str]] = {
    "id": "the merchant id (sent as `x-merchantid`)",
    "api_key_file": "file holding its API key (relative paths: relative to the TOML file)",
    "api_key_env": "or the name of an environment variable holding it",
    "webhook_username": "its own Basic user for webhooks (else the shared pair)",
    "webhook_password_file": "file holding its webhook password",
    "webhook_password_env": "or the name of an environment variable holding it",
    "jwt_private_key_files": 'JWT webhooks: `{ kid = "PEM file" }`, the merchant\'s private '
    "keys (two while a key rotates)",
    "jwt_public_key_files": '`{ kid = "PEM file" }`, Juspay\'s public keys',
    "jwt_max_age_seconds": "oldest JWT webhook accepted (60 to 604800; default 90000)",
}
CLIENT_MEANINGS: Final[Mapping[str, str]] = {
    "name": "the calling service (a metric label: `order_proxy_rate_limited_total{client}`)",
    "key_sha256": "SHA-256 of its client key, hex (`order-proxy client-key` prints the entry)",
    "merchants": 'merchant ids it may read, or `["*"]`; others are a 403',
    "operator": "may `DELETE /cache/orders/{id}`",
    "rate_per_second": "rate limit on all its requests, hits included (shared by replicas)",
    "burst": "how many at once (default: one second's worth)",
    "upstream_rate_per_second": "tighter limit on its reads that call Juspay",
    "upstream_burst": "burst of that limit",
}


def _walk(cls: type[Any], prefix: str, metas: Mapping[str, Meta | None]) -> Iterator[Row]:
    kinds = field_types(cls)
    for f in dataclasses.fields(cls):
        path = f"{prefix}{f.name}"
        meta = metas.get(f.name)
        src = extra(meta)
        if src.get("env") or src.get("toml"):
            meaning = (meta.description if meta is not None else None) or MEANINGS.get(path)
            if not meaning:
                raise LookupError(f"setting {path} has no meaning: add it to MEANINGS")
            yield Row(
                env=src.get("env") or "",
                toml=src.get("toml") or "",
                kind=_kind(kinds[f.name]),
                default=_shown(_default(f)),
                allowed=_allowed_bounds(meta),
                meaning=meaning,
            )
            continue
        nested = kinds[f.name]
        if dataclasses.is_dataclass(nested) and isinstance(nested, type):
            apart = _DECLARED_APART.get(nested)
            yield from _walk(
                nested, f"{path}.", apart if apart is not None else field_metas(nested)
            )


def schema_rows() -> list[Row]:
    """Every setting the generic loader reads, in the schema's order."""
    return list(_walk(Settings, "", field_metas(Settings)))


def _struct_rows(struct: type[msgspec.Struct], meanings: Mapping[str, str]) -> list[Row]:
    rows = []
    for f in msgspec.structs.fields(struct):
        if f.name not in meanings:
            raise LookupError(f"{struct.__name__}.{f.name} has no meaning")
        required = f.required
        default = (
            "required"
            if required
            else _shown(f.default if f.default is not msgspec.NODEFAULT else None)
        )
        rows.append(Row(toml=f.name, kind=_kind(f.type), default=default, meaning=meanings[f.name]))
    return rows


def _cell(text: str) -> str:
    return text.replace("|", "\\|") if text else ""


def _table(header: tuple[str, ...], lines: list[tuple[str, ...]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_cell(c) for c in line) + " |" for line in lines]
    return out


def _code(text: str) -> str:
    return " / ".join(f"`{part.strip()}`" for part in text.split("/")) if text else ""


def markdown() -> str:
    """The generated part of docs/configuration.md."""
    rows = schema_rows()
    env_rows = [r for r in (*CREDENTIAL_ROWS, *rows) if r.env]
    lines = ["### Environment variables", ""]
    lines += _table(
        ("variable", "file key", "type", "default", "allowed", "meaning"),
        [(_code(r.env), _code(r.toml), r.kind, r.default, r.allowed, r.meaning) for r in env_rows],
    )
    lines += ["", "### File keys", ""]
    file_rows = [r for r in (*CREDENTIAL_ROWS, *rows, STATUS_TTL_ROW) if r.toml]
    lines += _table(
        ("file key", "variable (wins)", "type", "default", "allowed", "meaning"),
        [(_code(r.toml), _code(r.env), r.kind, r.default, r.allowed, r.meaning) for r in file_rows],
    )
    for title, struct, meanings in (
        ("`[[merchants]]` entries", MerchantToml, MERCHANT_MEANINGS),
        ("`[[clients]]` entries", ClientToml, CLIENT_MEANINGS),
    ):
        lines += ["", f"### {title}", ""]
        lines += _table(
            ("key", "type", "default", "meaning"),
            [(_code(r.toml), r.kind, r.default, r.meaning) for r in _struct_rows(struct, meanings)],
        )
    return "\n".join(lines) + "\n"
