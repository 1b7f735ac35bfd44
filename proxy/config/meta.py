"""Reading the schema: each settings field's `msgspec.Meta` (its bounds and where it comes from)."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from msgspec import Meta

_METAS: dict[type[Any], dict[str, Meta | None]] = {}
_TYPES: dict[type[Any], dict[str, Any]] = {}


def field_metas(cls: type[Any]) -> dict[str, Meta | None]:
    """The Meta annotating each field of a settings dataclass (None for a plain field)."""
    if cls in _METAS:
        return _METAS[cls]
    hints = typing.get_type_hints(cls, include_extras=True)
    metas: dict[str, Meta | None] = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        found = None
        if typing.get_origin(hint) is typing.Annotated:
            found = next((m for m in hint.__metadata__ if isinstance(m, Meta)), None)
        metas[f.name] = found
    _METAS[cls] = metas
    return metas


def field_types(cls: type[Any]) -> dict[str, Any]:
    """Each field's type, without its Annotated wrapper."""
    if cls not in _TYPES:
        hints = typing.get_type_hints(cls)
        _TYPES[cls] = {f.name: hints[f.name] for f in dataclasses.fields(cls)}
    return _TYPES[cls]


def extra(meta: Meta | None) -> dict[str, Any]:
    """A Meta's `extra` (empty when there is none)."""
    return dict(meta.extra) if meta is not None and meta.extra else {}


def bounds(cls: type[Any], name: str) -> tuple[Any, Any]:
    """The (ge, le) bounds the schema gives a field."""
    return limits(field_metas(cls)[name])


def limits(meta: Meta | None) -> tuple[Any, Any]:
    """A Meta's (ge, le) bounds; TypeError when it has none (a mistake in the schema)."""
    if meta is None or meta.ge is None or meta.le is None:
        raise TypeError(f"{meta!r} states no bounds")
    return meta.ge, meta.le
