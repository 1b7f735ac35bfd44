"""The TOML file (PROXY_CONFIG_FILE): its keys generated from the schema, decoded and checked.

Our own file, so unknown keys are mistakes: they are refused with the key's path, and type
errors are said in the words of docs/configuration.md.
"""

from __future__ import annotations

import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from msgspec import Meta

from proxy.config.errors import SettingsError
from proxy.config.meta import extra, field_metas, field_types
from proxy.config.settings import (
    CIRCUIT_FIELDS,
    POLICY_FIELDS,
    CacheSettings,
    RedisSettings,
    ServerSettings,
    Settings,
    UpstreamSettings,
    WaitSettings,
)
from proxy.core.policy import CachePolicy
from proxy.upstream.circuit import CircuitSettings


class MerchantToml(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
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


class ClientToml(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: str
    key_sha256: str
    merchants: list[str]  # explicit, "*" for all: no client gets every merchant by accident
    operator: bool = False
    rate_per_second: float | None = None
    burst: int | None = None
    upstream_rate_per_second: float | None = None
    upstream_burst: int | None = None


@dataclass(frozen=True, slots=True)
class FileConfig:
    """What the file says: the schema's keys (dotted, e.g. "upstream.timeout_seconds"; absent
    keys are None) and the lists and tables that are not single settings."""

    values: dict[str, Any] = field(default_factory=dict)
    default_merchant: str | None = None
    merchants: list[MerchantToml] = field(default_factory=list)
    clients: list[ClientToml] = field(default_factory=list)
    status_ttl_seconds: dict[str, int] = field(default_factory=dict)


def _file_keys() -> dict[str, Any]:
    """Each file key of the schema and the TOML type it takes, in the schema's order."""
    keys: dict[str, Any] = {}
    sections: list[tuple[type[Any], dict[str, Meta | None]]] = [
        (Settings, field_metas(Settings)),
        (UpstreamSettings, field_metas(UpstreamSettings)),
        (CircuitSettings, dict(CIRCUIT_FIELDS)),
        (RedisSettings, field_metas(RedisSettings)),
        (CachePolicy, dict(POLICY_FIELDS)),
        (CacheSettings, field_metas(CacheSettings)),
        (ServerSettings, field_metas(ServerSettings)),
        (WaitSettings, field_metas(WaitSettings)),
    ]
    for cls, metas in sections:
        kinds = field_types(cls)
        for name, meta in metas.items():
            key = extra(meta).get("toml")
            if key:
                keys[key] = _toml_type(kinds[name])
    return keys


def _toml_type(kind: Any) -> Any:
    """The type a file value must have: the field's own scalar type; text for anything else
    (URLs are parsed and checked by the loader)."""
    args = typing.get_args(kind)
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        (kind,) = (a for a in args if a is not type(None))
    return kind if kind in (bool, int, float) else str


def _define() -> type[msgspec.Struct]:
    by_section: dict[str, list[tuple[str, Any, Any]]] = {}
    top: list[tuple[str, Any, Any]] = [("default_merchant", str | None, None)]
    for key, kind in _file_keys().items():
        section, dot, name = key.rpartition(".")
        (by_section.setdefault(section, []) if dot else top).append(
            (name if dot else key, kind | None, None)
        )
    by_section["cache"].append(
        ("status_ttl_seconds", dict[str, int], msgspec.field(default_factory=dict))
    )
    top += [
        ("merchants", list[MerchantToml], msgspec.field(default_factory=list)),
        ("clients", list[ClientToml], msgspec.field(default_factory=list)),
    ]
    for section, fields in by_section.items():
        struct = msgspec.defstruct(
            f"{section.title()}Toml", fields, kw_only=True, forbid_unknown_fields=True
        )
        top.append((section, struct, msgspec.field(default_factory=struct)))
    return msgspec.defstruct("ConfigToml", top, kw_only=True, forbid_unknown_fields=True)


_CONFIG_TOML = _define()


def read_file(path: Path) -> FileConfig:
    """The file at `path`, decoded and checked against the schema's keys, or SettingsError."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SettingsError("PROXY_CONFIG_FILE", f"cannot read {path}: {exc.strerror}") from None
    try:
        decoded: Any = msgspec.toml.decode(raw, type=_CONFIG_TOML)
    except msgspec.ValidationError as exc:
        setting, problem = _toml_problem(raw, str(exc))
        raise SettingsError(f"PROXY_CONFIG_FILE ({path}) {setting}", problem) from None
    except msgspec.DecodeError as exc:
        raise SettingsError(f"PROXY_CONFIG_FILE ({path})", f"not valid TOML: {exc}") from None
    values: dict[str, Any] = {}
    for key in _file_keys():
        node = decoded
        for part in key.split("."):
            node = getattr(node, part)
        values[key] = node
    return FileConfig(
        values=values,
        default_merchant=decoded.default_merchant,
        merchants=decoded.merchants,
        clients=decoded.clients,
        status_ttl_seconds=decoded.cache.status_ttl_seconds,
    )


_TOML_KINDS = (
    # msgspec's type names, most specific first, in the words of docs/configuration.md.
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
        return name, "unknown setting (see docs/configuration.md for the keys the file may hold)"
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
