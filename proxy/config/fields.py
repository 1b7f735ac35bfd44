"""Converting a section of settings: each given value to its type, within its Meta bounds."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from msgspec import Meta

from proxy.config.errors import SettingsError
from proxy.config.meta import extra, field_metas, field_types

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True, slots=True)
class Given:
    """A value given for a field, and the name errors call it by (variable or file key)."""

    name: str
    raw: Any
    from_env: bool


def gather(
    cls: type[Any],
    env: Mapping[str, str],
    file: Mapping[str, Any],
    metas: Mapping[str, Meta | None] | None = None,
) -> dict[str, Given]:
    """The values given for `cls`'s fields: the environment's over the file's (an empty
    variable is an unset one). `file` maps the file's dotted keys to their values."""
    given: dict[str, Given] = {}
    for name, meta in (metas or field_metas(cls)).items():
        src = extra(meta)
        env_name: str | None = src.get("env")
        toml_key: str | None = src.get("toml")
        env_value = env.get(env_name) if env_name else None
        if env_name and env_value:
            given[name] = Given(env_name, env_value, from_env=True)
            continue
        value = file.get(toml_key) if toml_key else None
        # A setting the environment can also give takes "" from the file as not given.
        if value is None or (env_name and value == ""):
            continue
        named = env_name if env_name and not src.get("named_by_source") else None
        given[name] = Given(named or f"PROXY_CONFIG_FILE {toml_key}", value, from_env=False)
    return given


def convert(
    cls: type[Any], given: Mapping[str, Given], metas: Mapping[str, Meta | None] | None = None
) -> dict[str, Any]:
    """Keyword arguments for `cls`: each given field converted and checked, in field order.
    Fields of types this does not convert (URLs, secrets) are left to the caller."""
    metas = metas or field_metas(cls)
    kinds = field_types(cls)
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for name, meta in metas.items():
        src = extra(meta)
        floor = src.get("at_least")  # another field this one may not be below
        low = None if meta is None else meta.ge
        if floor is not None:
            low = values.get(floor, defaults[floor])
        if name not in given:
            if floor is not None:
                default: Any = defaults[name]
                values[name] = max(default, low)
            continue
        value = scalar(given[name], kinds[name], low, None if meta is None else meta.le)
        if value is not _NOT_SCALAR:
            values[name] = value
    return values


_NOT_SCALAR: Any = object()


def scalar(given: Given, kind: Any, low: Any, high: Any) -> Any:
    """`given` as a `kind` (float, int, bool, str, a Literal, or one of those or None)."""
    raw, name = given.raw, given.name
    args = typing.get_args(kind)
    optional = (typing.get_origin(kind) in (typing.Union, types.UnionType)) and type(None) in args
    if optional:
        (kind,) = (a for a in args if a is not type(None))
        if given.from_env:
            raw = raw.strip()
        if raw == "":
            return None
    if kind is bool:
        return boolean(name, raw)
    if kind is float:
        return number(name, raw, low=low, high=high)
    if kind is int:
        return integer(name, raw, low=low, high=high)
    if typing.get_origin(kind) is typing.Literal:
        return choice(name, raw, typing.get_args(kind))
    if kind is str:
        return raw.strip() if given.from_env else raw
    return _NOT_SCALAR


def number(name: str, raw: str | float, *, low: float, high: float) -> float:
    return _bounded(name, raw, float, "a number", low=low, high=high)


def integer(name: str, raw: str | int, *, low: int, high: int) -> int:
    return _bounded(name, raw, int, "a whole number", low=low, high=high)


_Number = TypeVar("_Number", int, float)


def _bounded(
    name: str,
    raw: object,
    kind: Callable[[Any], _Number],
    what: str,
    *,
    low: _Number,
    high: _Number,
) -> _Number:
    """`raw` converted by `kind` and within [low, high], else a SettingsError saying so."""
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(name, f"must be {what}, got {raw!r}") from None
    if not (math.isfinite(value) and low <= value <= high):
        raise SettingsError(name, f"must be between {_shown(low)} and {_shown(high)}, got {raw!r}")
    return value


def _shown(bound: float) -> str:
    return f"{bound:g}" if isinstance(bound, float) else str(bound)


def boolean(name: str, raw: str | bool) -> bool:
    if isinstance(raw, bool):
        return raw
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise SettingsError(name, f"must be true or false, got {raw!r}")


def choice(name: str, raw: str, choices: tuple[str, ...]) -> str:
    value = raw.strip().lower()
    if value not in choices:
        raise SettingsError(name, f"must be one of {', '.join(choices)}, got {raw!r}")
    return value
