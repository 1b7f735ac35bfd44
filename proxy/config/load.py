"""`load_settings(env)`: the file read, the environment merged over it, every setting converted
and checked against the schema, then the checks that span settings."""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from msgspec import Meta
from yarl import URL

from proxy.config.clients import clients_from
from proxy.config.credentials import merchants_from, webhook_from_env
from proxy.config.errors import SettingsError
from proxy.config.fields import Given, convert, gather, integer
from proxy.config.meta import limits
from proxy.config.redis_url import RedisUrlError
from proxy.config.secrets import Secret, shown_url
from proxy.config.settings import (
    CIRCUIT_FIELDS,
    DEFAULT_BASE_URL,
    POLICY_FIELDS,
    STATUS_TTL,
    CacheSettings,
    LogSettings,
    RedisSettings,
    ServerSettings,
    Settings,
    TracingSettings,
    UpstreamSettings,
    WaitSettings,
)
from proxy.config.tomlfile import FileConfig, read_file
from proxy.core import policy, validators
from proxy.upstream.circuit import CircuitSettings
from proxy.upstream.egress import ca_context

T = TypeVar("T")


def load_settings(env: Mapping[str, str]) -> Settings:
    """Parse and check every setting; raise SettingsError naming the first bad one."""
    config_path_text = env.get("PROXY_CONFIG_FILE", "").strip()
    config_path = Path(config_path_text) if config_path_text else None
    file = read_file(config_path) if config_path else FileConfig()
    base_dir = config_path.parent if config_path else Path.cwd()
    values = file.values

    upstream = _egress(_upstream(_proxy_aliases(env), values), _proxy_aliases(env), values)
    webhook = webhook_from_env(env)
    merchants, default_merchant = merchants_from(env, file, base_dir, webhook)
    redis = _redis(env, values)
    server = _server(env, values)
    clients = clients_from(file.clients, {m.merchant_id for m in merchants})
    settings = Settings(
        merchants=tuple(merchants),
        default_merchant=default_merchant,
        upstream=upstream,
        redis=redis,
        cache=_cache(env, file),
        server=server,
        webhook=webhook,
        log=_section(LogSettings, env, values),
        config_file=config_path,
        clients=clients,
        wait=_section(WaitSettings, env, values),
        tracing=_tracing(env, values),
        **convert(Settings, gather(Settings, env, values)),
    )
    if not clients and not settings.allow_anonymous and not _is_loopback(server.host):
        raise SettingsError(
            "PROXY_ALLOW_ANONYMOUS",
            f"PROXY_HOST={server.host} is not loopback and no [[clients]] are configured: "
            "list client keys in PROXY_CONFIG_FILE, or set PROXY_ALLOW_ANONYMOUS=true",
        )
    return settings


def _section(
    cls: type[T],
    env: Mapping[str, str],
    values: Mapping[str, Any],
    metas: Mapping[str, Meta | None] | None = None,
) -> T:
    """A section whose fields all convert by their type and bounds alone."""
    return cls(**convert(cls, gather(cls, env, values, metas), metas))


def _upstream(env: Mapping[str, str], values: Mapping[str, Any]) -> UpstreamSettings:
    given = gather(UpstreamSettings, env, values)
    version = given.get("api_version")
    if version is not None:
        problem = validators.api_version_problem(version.raw.strip())
        if problem is not None:
            raise SettingsError(version.name, f"{problem} (got {version.raw!r})")
    upstream = UpstreamSettings(
        **convert(UpstreamSettings, given),
        circuit=_section(CircuitSettings, env, values, CIRCUIT_FIELDS),
    )
    if version is not None:
        # Stored as checked: it is sent upstream and is part of every cache key.
        upstream = replace(upstream, api_version=version.raw.strip())
    base_url = given.get("base_url")
    if base_url is None:
        return upstream
    return replace(
        upstream,
        base_url=_base_url(base_url, allow_insecure=upstream.allow_insecure_http),
    )


def _proxy_aliases(env: Mapping[str, str]) -> Mapping[str, str]:
    """The lower-case spellings curl and most tools also read, where the upper-case is unset."""
    extra = {
        upper: env[lower]
        for upper, lower in (("HTTPS_PROXY", "https_proxy"), ("NO_PROXY", "no_proxy"))
        if not env.get(upper) and env.get(lower)
    }
    return {**env, **extra} if extra else env


def _egress(
    upstream: UpstreamSettings, env: Mapping[str, str], values: Mapping[str, Any]
) -> UpstreamSettings:
    """HTTPS_PROXY (a URL, its password kept secret), NO_PROXY and JUSPAY_CA_FILE, checked."""
    given = gather(UpstreamSettings, env, values)
    changes: dict[str, Any] = {}
    proxy = given.get("https_proxy")
    if proxy is not None and str(proxy.raw).strip():
        raw = str(proxy.raw).strip()
        shown = shown_url(raw)
        try:
            url = URL(raw)
        except (ValueError, TypeError):
            raise SettingsError(proxy.name, f"not a URL: {shown!r}") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise SettingsError(
                proxy.name, f"must be an http(s) URL such as http://proxy:3128, got {shown!r}"
            )
        changes["https_proxy"] = Secret(raw, f"env:{proxy.name}" if proxy.from_env else "file")
    no_proxy = given.get("no_proxy")
    if no_proxy is not None:
        changes["no_proxy"] = str(no_proxy.raw).strip()
    ca = given.get("ca_file")
    if ca is not None and str(ca.raw).strip():
        path = Path(str(ca.raw).strip())
        try:
            ca_context(path)
        except (OSError, ssl.SSLError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise SettingsError(
                ca.name, f"cannot load a CA bundle from {str(path)!r}: {reason}"
            ) from None
        changes["ca_file"] = path
    return replace(upstream, **changes) if changes else upstream


def _base_url(given: Given, *, allow_insecure: bool) -> URL:
    name, raw = given.name, given.raw
    shown = shown_url(raw.strip())
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


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _redis(env: Mapping[str, str], values: Mapping[str, Any]) -> RedisSettings:
    given = gather(RedisSettings, env, values)
    url_given = given.get("url")
    url_text = url_given.raw.strip() if url_given is not None else ""
    url = Secret(url_text, "env:REDIS_URL") if url_text else None
    prefix = given.get("key_prefix")
    if prefix is not None and (not prefix.raw or any(ch in prefix.raw for ch in "{}:| \t\r\n")):
        raise SettingsError(prefix.name, "must be non-empty without braces, colons or spaces")
    kwargs = convert(RedisSettings, given)
    kwargs.pop("url", None)
    try:
        return RedisSettings(url=url, **kwargs)
    except RedisUrlError as exc:
        raise SettingsError("REDIS_URL", str(exc)) from None


def _tracing(env: Mapping[str, str], values: Mapping[str, Any]) -> TracingSettings:
    tracing = _section(TracingSettings, env, values)
    # The traces-specific protocol variable wins over the general one, as the spec says.
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "").strip() or tracing.protocol
    name = (
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
        if env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "").strip()
        else "OTEL_EXPORTER_OTLP_PROTOCOL"
    )
    if tracing.enabled and protocol != "http/protobuf":
        raise SettingsError(name, f"only http/protobuf is supported, got {protocol!r}")
    exporter = tracing.exporter.strip().lower()
    if exporter not in ("", "none", "otlp"):
        raise SettingsError("OTEL_TRACES_EXPORTER", f"must be otlp or none, got {exporter!r}")
    for field_name, variable in (
        ("endpoint", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
        ("base_endpoint", "OTEL_EXPORTER_OTLP_ENDPOINT"),
    ):
        value = getattr(tracing, field_name)
        if value is not None and URL(value).scheme not in ("http", "https"):
            raise SettingsError(variable, f"must be an http(s) URL, got {shown_url(value)!r}")
    return replace(tracing, exporter=exporter, protocol=protocol)


def _server(env: Mapping[str, str], values: Mapping[str, Any]) -> ServerSettings:
    given = gather(ServerSettings, env, values)
    server = ServerSettings(**convert(ServerSettings, given))
    if server.internal_port and server.internal_port == server.port:
        raw = given["internal_port"].raw.strip()
        raise SettingsError("PROXY_INTERNAL_PORT", f"must differ from PROXY_PORT, got {raw!r}")
    return server


def _cache(env: Mapping[str, str], file: FileConfig) -> CacheSettings:
    name = "PROXY_CONFIG_FILE cache.status_ttl_seconds"
    overrides: dict[str, int] = {}
    low, high = limits(STATUS_TTL)
    for status, ttl in file.status_ttl_seconds.items():
        if status not in policy.CACHEABLE_STATUSES:
            raise SettingsError(
                f"{name}.{status}",
                "only final and failure statuses may be cached: "
                + ", ".join(sorted(policy.CACHEABLE_STATUSES)),
            )
        overrides[status] = integer(f"{name}.{status}", ttl, low=low, high=high)
    values = file.values
    ttls = convert(
        policy.CachePolicy, gather(policy.CachePolicy, env, values, POLICY_FIELDS), POLICY_FIELDS
    )
    return CacheSettings(
        policy=policy.CachePolicy(**ttls, status_ttls=tuple(sorted(overrides.items()))),
        **convert(CacheSettings, gather(CacheSettings, env, values)),
    )
