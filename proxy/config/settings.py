"""The settings schema: frozen typed settings, each default stated once, bounds and sources as Meta.

A configurable field is annotated `Annotated[T, Meta(ge=..., le=..., extra=sources(...))]`:
the bounds it must lie in, and where its value may come from (an environment variable, a key
of the TOML file, or both; the environment wins). `proxy.config.load` reads these to build
and check the settings, and `proxy.config.describe` walks the same fields, so what is shown
cannot drift from the schema. A field without sources is not read by that generic loader:
either its default applies, or `proxy.config.credentials` / `clients` build it (merchants,
secrets, JWT key files, webhook pairs, client keys and their rate limits), within the same
declared bounds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from msgspec import Meta
from yarl import URL

from proxy.config.describe import describe
from proxy.config.keyfiles import DEFAULT_MAX_AGE_SECONDS
from proxy.config.redis_url import RedisTarget, parse_redis_url
from proxy.config.secrets import Secret
from proxy.core.policy import CachePolicy
from proxy.upstream.circuit import CircuitSettings

DEFAULT_BASE_URL: Final = "https://api.juspay.in"
DEFAULT_API_VERSION: Final = "2023-06-30"
LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["json", "console"]
WEEK: Final = 7 * 24 * 3600


def sources(
    *, env: str | None = None, toml: str | None = None, named_by_source: bool = False
) -> dict[str, Any]:
    """Where a field's value comes from, for Meta's `extra`. Errors name the environment
    variable when the field has one (even for a value from the file), unless
    `named_by_source`: then they name whichever gave the value."""
    return {"env": env, "toml": toml, "named_by_source": named_by_source}


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
    max_age_seconds: Annotated[float, Meta(ge=60.0, le=float(WEEK))] = DEFAULT_MAX_AGE_SECONDS


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A client's rate limit: `rate_per_second` on average, up to `burst` at once (GCRA)."""

    rate_per_second: Annotated[float, Meta(ge=0.001, le=1_000_000)]
    burst: Annotated[int, Meta(ge=1, le=1_000_000)]

    @property
    def interval(self) -> float:
        """Seconds one request costs (the emission interval)."""
        return 1.0 / self.rate_per_second

    @property
    def tolerance(self) -> float:
        """How far ahead of now the theoretical arrival time may run: `burst` intervals."""
        return self.burst * self.interval

    def describe(self) -> str:
        return f"{self.rate_per_second:g}/s, burst {self.burst}"


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """An internal service allowed to call the proxy, identified by a client key."""

    name: str
    # SHA-256 of the client key, hex. Keys are long random tokens, so a fast hash is enough;
    # the plain key is never stored.
    key_sha256: str
    merchants: tuple[str, ...]  # merchant ids it may read; ("*",) for all
    operator: bool = False  # may purge cache entries
    # Per-client limits (see proxy/web/ratelimit.py): every request, and reads calling Juspay.
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
    base_url: Annotated[
        URL,
        Meta(extra=sources(env="JUSPAY_BASE_URL", toml="upstream.base_url", named_by_source=True)),
    ] = field(default_factory=lambda: URL(DEFAULT_BASE_URL))
    api_version: Annotated[
        str, Meta(extra=sources(env="JUSPAY_API_VERSION", toml="upstream.api_version"))
    ] = DEFAULT_API_VERSION
    timeout_seconds: Annotated[
        float,
        Meta(
            ge=0.1,
            le=120.0,
            extra=sources(env="JUSPAY_TIMEOUT_SECONDS", toml="upstream.timeout_seconds"),
        ),
    ] = 10.0
    connect_timeout_seconds: Annotated[
        float, Meta(ge=0.05, le=60.0, extra=sources(toml="upstream.connect_timeout_seconds"))
    ] = 3.0
    max_body_bytes: Annotated[
        int, Meta(ge=4096, le=64 * 1024 * 1024, extra=sources(toml="upstream.max_body_bytes"))
    ] = 1024 * 1024
    max_connections: Annotated[
        int, Meta(ge=1, le=10_000, extra=sources(toml="upstream.max_connections"))
    ] = 100
    allow_insecure_http: Annotated[
        bool,
        Meta(extra=sources(env="JUSPAY_ALLOW_INSECURE_HTTP", toml="upstream.allow_insecure_http")),
    ] = False
    # Retries of the idempotent read, all within timeout_seconds.
    max_attempts: Annotated[int, Meta(ge=1, le=10, extra=sources(toml="upstream.max_attempts"))] = 3
    attempt_timeout_seconds: Annotated[
        float, Meta(ge=0.05, le=120.0, extra=sources(toml="upstream.attempt_timeout_seconds"))
    ] = 4.0
    backoff_base_seconds: float = 0.1
    backoff_max_seconds: float = 1.0
    # Bulkhead: concurrent upstream calls, and how many more may wait for a slot.
    max_concurrent: Annotated[
        int, Meta(ge=1, le=10_000, extra=sources(toml="upstream.max_concurrent"))
    ] = 64
    max_queue: Annotated[int, Meta(ge=0, le=100_000, extra=sources(toml="upstream.max_queue"))] = (
        256
    )
    circuit: CircuitSettings = field(default_factory=CircuitSettings)
    # Egress to Juspay only (never Redis): a forward proxy for an https upstream, the hosts
    # that bypass it (curl's NO_PROXY rules), and the CA bundle Juspay's certificate (or a
    # TLS-inspecting proxy's) is verified with instead of the system's.
    https_proxy: Annotated[
        Secret | None,
        Meta(extra={**sources(env="HTTPS_PROXY", toml="upstream.https_proxy"), "url": True}),
    ] = None
    no_proxy: Annotated[str, Meta(extra=sources(env="NO_PROXY", toml="upstream.no_proxy"))] = ""
    ca_file: Annotated[
        Path | None, Meta(extra=sources(env="JUSPAY_CA_FILE", toml="upstream.ca_file"))
    ] = None


# CircuitSettings and CachePolicy live with the code that uses them, and so do their defaults;
# their bounds and file keys are declared here.
CIRCUIT_FIELDS: Final = {
    "failure_threshold": Meta(ge=1, le=1000, extra=sources(toml="circuit.failure_threshold")),
    "failure_ratio": Meta(ge=0.01, le=1.0, extra=sources(toml="circuit.failure_ratio")),
    "window": Meta(ge=1, le=10_000, extra=sources(toml="circuit.window")),
    "min_calls": Meta(ge=1, le=10_000, extra=sources(toml="circuit.min_calls")),
    "open_seconds": Meta(ge=0.1, le=600.0, extra=sources(toml="circuit.open_seconds")),
}
POLICY_FIELDS: Final = {
    "final_ttl": Meta(ge=0, le=WEEK, extra=sources(toml="cache.final_ttl_seconds")),
    "failure_ttl": Meta(ge=0, le=3600, extra=sources(toml="cache.failure_ttl_seconds")),
    "refund_pending_ttl": Meta(
        ge=0, le=3600, extra=sources(toml="cache.refund_pending_ttl_seconds")
    ),
    "changing_ttl": Meta(ge=0, le=3600, extra=sources(toml="cache.changing_ttl_seconds")),
    "not_found_ttl": Meta(ge=0, le=3600, extra=sources(toml="cache.not_found_ttl_seconds")),
}
# Per-status TTL overrides ([cache.status_ttl_seconds]): each within these bounds.
STATUS_TTL: Final = Meta(ge=0, le=WEEK)


@dataclass(frozen=True, slots=True)
class RedisSettings:
    # redis://, rediss://, unix:// (standalone), redis+cluster://host:port,... (Cluster) or
    # redis+sentinel://host:port,.../service_name[/db] (Sentinel); None: in-process cache only.
    url: Annotated[Secret | None, Meta(extra={**sources(env="REDIS_URL"), "url": True})] = None
    socket_timeout_seconds: Annotated[
        float, Meta(ge=0.01, le=10.0, extra=sources(toml="redis.socket_timeout_seconds"))
    ] = 0.25
    connect_timeout_seconds: Annotated[
        float, Meta(ge=0.01, le=10.0, extra=sources(toml="redis.connect_timeout_seconds"))
    ] = 0.25
    max_connections: Annotated[
        int, Meta(ge=1, le=10_000, extra=sources(toml="redis.max_connections"))
    ] = 64
    key_prefix: Annotated[str, Meta(extra=sources(toml="redis.key_prefix"))] = "order-proxy"
    # Replicas a webhook's or purge's invalidation must reach (Redis WAIT) before it is
    # acknowledged; -1: one when the primary has any replica, else none. Not reached in
    # ack_timeout_seconds: 503 with Retry-After, so Juspay retries.
    ack_replicas: Annotated[
        int,
        Meta(ge=-1, le=16, extra=sources(env="REDIS_ACK_REPLICAS", toml="redis.ack_replicas")),
    ] = -1
    ack_timeout_seconds: Annotated[
        float,
        Meta(
            ge=0.01,
            le=10.0,
            extra=sources(env="REDIS_ACK_TIMEOUT_SECONDS", toml="redis.ack_timeout_seconds"),
        ),
    ] = 0.5
    # REDIS_URL taken apart once, here (RedisUrlError when it is unusable); the client is
    # built from this.
    target: RedisTarget | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        target = parse_redis_url(self.url.reveal()) if self.url is not None else None
        object.__setattr__(self, "target", target)

    @property
    def mode(self) -> str:
        """The URL's kind: standalone, cluster or sentinel (standalone when there is none)."""
        return self.target.mode if self.target is not None else "standalone"


@dataclass(frozen=True, slots=True)
class CacheSettings:
    policy: Annotated[CachePolicy, Meta(extra={"describe_as": "ttl_seconds"})] = field(
        default_factory=CachePolicy
    )
    memory_max_entries: Annotated[
        int, Meta(ge=1, le=10_000_000, extra=sources(toml="cache.memory_max_entries"))
    ] = 50_000
    memory_max_bytes: Annotated[
        int, Meta(ge=64 * 1024, le=64 * 1024**3, extra=sources(toml="cache.memory_max_bytes"))
    ] = 64 * 1024 * 1024
    # How long past its TTL a final entry may still answer when Juspay fails (0: never).
    stale_if_error_seconds: Annotated[
        int, Meta(ge=0, le=WEEK, extra=sources(toml="cache.stale_if_error_seconds"))
    ] = 600
    # Cross-replica coalescing on a shared Redis: one replica calls Juspay per missed key.
    distributed_coalescing: Annotated[
        bool, Meta(extra=sources(toml="cache.distributed_coalescing"))
    ] = True
    # With Redis: how long a fresh entry may also be answered from this process' memory
    # (bounded by memory_max_entries/bytes, dropped on purges and webhooks; 0 turns it off).
    memory_layer_ttl_seconds: Annotated[
        float, Meta(ge=0.0, le=3600.0, extra=sources(toml="cache.memory_layer_ttl_seconds"))
    ] = 30.0
    # While the invalidation bus (or Redis) is down: memory answers whose read started at most
    # this long ago are still served, and Juspay's answers are kept this long (0: none).
    outage_grace_seconds: Annotated[
        float, Meta(ge=0.0, le=5.0, extra=sources(toml="cache.outage_grace_seconds"))
    ] = 2.0
    # Share of cache hits re-read from Juspay in the background and compared, to measure how
    # true the cache is (order_proxy_cache_verifications_total); 0 turns it off.
    verify_sample_rate: Annotated[
        float,
        Meta(
            ge=0.0,
            le=1.0,
            extra=sources(
                env="PROXY_VERIFY_SAMPLE_RATE",
                toml="cache.verify_sample_rate",
                named_by_source=True,
            ),
        ),
    ] = 0.001


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: Annotated[str, Meta(extra=sources(env="PROXY_HOST"))] = "127.0.0.1"
    port: Annotated[int, Meta(ge=0, le=65535, extra=sources(env="PROXY_PORT"))] = 8080
    # Optional listener for /metrics, /readyz and /healthz (then not on `port`); its host
    # defaults to `host`.
    internal_port: Annotated[
        int | None, Meta(ge=0, le=65535, extra=sources(env="PROXY_INTERNAL_PORT"))
    ] = None
    internal_host: Annotated[str | None, Meta(extra=sources(env="PROXY_INTERNAL_HOST"))] = None
    drain_seconds: Annotated[
        float,
        Meta(
            ge=0.0,
            le=300.0,
            extra=sources(env="PROXY_DRAIN_SECONDS", toml="server.drain_seconds"),
        ),
    ] = 20.0
    # After SIGTERM, keep listening (readiness already false) this long before closing.
    shutdown_delay_seconds: Annotated[
        float,
        Meta(
            ge=0.0,
            le=60.0,
            extra=sources(env="PROXY_SHUTDOWN_DELAY_SECONDS", toml="server.shutdown_delay_seconds"),
        ),
    ] = 0.0
    max_request_body_bytes: Annotated[
        int,
        Meta(ge=1024, le=16 * 1024 * 1024, extra=sources(toml="server.max_request_body_bytes")),
    ] = 256 * 1024
    max_line_size: int = 8190
    max_field_size: int = 8190
    # Order reads served on aiohttp's low-level server with the app's own middlewares and
    # handlers, past the Application's per-request routing machinery (proxy/web/fastlane.py).
    fast_lane: Annotated[
        bool, Meta(extra=sources(env="PROXY_FAST_LANE", toml="server.fast_lane"))
    ] = True
    # Bounds that hold without a key (proxy/web/bounds.py; docs/security.md, "Bounds").
    # aiohttp bounds each header line and their count, not their total: this is the total.
    max_header_bytes: Annotated[
        int, Meta(ge=4096, le=1024 * 1024, extra=sources(toml="server.max_header_bytes"))
    ] = 32 * 1024
    header_timeout_seconds: Annotated[
        float, Meta(ge=0.5, le=300.0, extra=sources(toml="server.header_timeout_seconds"))
    ] = 10.0
    body_timeout_seconds: Annotated[
        float, Meta(ge=0.5, le=600.0, extra=sources(toml="server.body_timeout_seconds"))
    ] = 10.0
    # Idle keep-alive, as nginx and Envoy (aiohttp's own default is an hour).
    keepalive_seconds: Annotated[
        float, Meta(ge=1.0, le=3600.0, extra=sources(toml="server.keepalive_seconds"))
    ] = 75.0
    # Open connections per process, per listener; more are answered 503 and closed at once.
    # With max_header_bytes, at worst about 2,000 x 32 KiB of headers held: ~64 MiB.
    max_connections: Annotated[
        int,
        Meta(
            ge=16,
            le=100_000,
            extra=sources(env="PROXY_MAX_CONNECTIONS", toml="server.max_connections"),
        ),
    ] = 2000
    # Webhook bodies read before their sender is known (JWT webhooks: the token is the
    # credential); more at once are answered 503.
    max_unauthenticated_bodies: Annotated[
        int, Meta(ge=1, le=10_000, extra=sources(toml="server.max_unauthenticated_bodies"))
    ] = 16
    # JWT webhook decryptions (RSA, about a millisecond of CPU each) at once, and waiting.
    jwt_max_concurrent: Annotated[
        int, Meta(ge=1, le=64, extra=sources(toml="server.jwt_max_concurrent"))
    ] = 1
    jwt_max_queue: Annotated[
        int, Meta(ge=0, le=10_000, extra=sources(toml="server.jwt_max_queue"))
    ] = 8
    # ...and per second (a busy slot can still take a core): a flood gets 503s, not the CPU.
    jwt_max_per_second: Annotated[
        float, Meta(ge=1.0, le=100_000.0, extra=sources(toml="server.jwt_max_per_second"))
    ] = 50.0
    # /metrics renders and /readyz checks Redis at most once per this many seconds.
    operator_refresh_seconds: Annotated[
        float, Meta(ge=0.0, le=60.0, extra=sources(toml="server.operator_refresh_seconds"))
    ] = 1.0
    # `serve --workers N`: a worker that dies is replaced after this delay, doubled for each
    # death in a row (capped at 30 s); this many deaths within a minute end the parent (exit 1).
    worker_restart_seconds: Annotated[
        float, Meta(ge=0.0, le=30.0, extra=sources(toml="server.worker_restart_seconds"))
    ] = 0.5
    worker_crash_limit: Annotated[
        int, Meta(ge=1, le=1000, extra=sources(toml="server.worker_crash_limit"))
    ] = 5


@dataclass(frozen=True, slots=True)
class WaitSettings:
    """`?wait=` on order reads: bounds and the shared polling schedule."""

    max_wait_seconds: Annotated[
        float, Meta(ge=1.0, le=60.0, extra=sources(toml="wait.max_wait_seconds"))
    ] = 30.0
    max_waiters: Annotated[int, Meta(ge=1, le=100_000, extra=sources(toml="wait.max_waiters"))] = (
        1000
    )
    poll_initial_seconds: Annotated[
        float, Meta(ge=0.05, le=60.0, extra=sources(toml="wait.poll_initial_seconds"))
    ] = 1.0
    # At least poll_initial_seconds; by default raised to it.
    poll_max_seconds: Annotated[
        float,
        Meta(
            ge=0.05,
            le=60.0,
            extra={**sources(toml="wait.poll_max_seconds"), "at_least": "poll_initial_seconds"},
        ),
    ] = 5.0
    poll_factor: float = 1.5


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    username: str
    password: Secret
    # Set when the password comes from a file, which is then re-read when it changes.
    password_file: Path | None = None


@dataclass(frozen=True, slots=True)
class LogSettings:
    level: Annotated[LogLevel, Meta(extra=sources(env="LOG_LEVEL"))] = "info"
    format: Annotated[LogFormat, Meta(extra=sources(env="LOG_FORMAT"))] = "json"


TraceSampler = Literal[
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
]


@dataclass(frozen=True, slots=True)
class TracingSettings:
    """OpenTelemetry tracing, from the standard OTEL_* variables. Off unless an exporter is set
    (OTEL_TRACES_EXPORTER=otlp, or an OTLP endpoint); only OTLP over HTTP/protobuf is spoken.
    Headers, timeouts and batching (OTEL_EXPORTER_OTLP_HEADERS, OTEL_BSP_*) are read by the
    SDK itself, so a collector token in the headers never passes through these settings."""

    exporter: Annotated[str, Meta(extra=sources(env="OTEL_TRACES_EXPORTER"))] = ""
    # Where spans go: the traces endpoint as given, else the base endpoint + /v1/traces.
    endpoint: Annotated[
        str | None, Meta(extra=sources(env="OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
    ] = None
    base_endpoint: Annotated[str | None, Meta(extra=sources(env="OTEL_EXPORTER_OTLP_ENDPOINT"))] = (
        None
    )
    protocol: Annotated[str, Meta(extra=sources(env="OTEL_EXPORTER_OTLP_PROTOCOL"))] = (
        "http/protobuf"
    )
    sampler: Annotated[TraceSampler, Meta(extra=sources(env="OTEL_TRACES_SAMPLER"))] = (
        "parentbased_always_on"
    )
    sampler_arg: Annotated[
        float, Meta(ge=0.0, le=1.0, extra=sources(env="OTEL_TRACES_SAMPLER_ARG"))
    ] = 1.0
    service_name: Annotated[str, Meta(extra=sources(env="OTEL_SERVICE_NAME"))] = "order-proxy"
    sdk_disabled: Annotated[bool, Meta(extra=sources(env="OTEL_SDK_DISABLED"))] = False

    @property
    def enabled(self) -> bool:
        if self.sdk_disabled or self.exporter == "none":
            return False
        return self.exporter == "otlp" or bool(self.endpoint or self.base_endpoint)

    @property
    def traces_url(self) -> str:
        if self.endpoint:
            return self.endpoint
        base = (self.base_endpoint or "http://localhost:4318").rstrip("/")
        return base + "/v1/traces"


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
    allow_anonymous: Annotated[
        bool, Meta(extra=sources(env="PROXY_ALLOW_ANONYMOUS", toml="allow_anonymous"))
    ] = False
    # How often secret files (API keys, webhook password) are checked for rotation.
    secret_refresh_seconds: Annotated[
        float, Meta(ge=0.0, le=3600.0, extra=sources(toml="secret_refresh_seconds"))
    ] = 1.0
    wait: WaitSettings = field(default_factory=WaitSettings)
    tracing: TracingSettings = field(default_factory=TracingSettings)

    def merchant(self, merchant_id: str) -> MerchantSettings | None:
        for merchant in self.merchants:
            if merchant.merchant_id == merchant_id:
                return merchant
        return None

    def describe(self) -> dict[str, Any]:
        """The effective settings as plain data, secrets masked (for `check-config`)."""
        return describe(self)
