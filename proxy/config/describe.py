"""`describe(settings)`: every setting as plain data, generated from the schema, secrets masked."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yarl import URL

from proxy.config.meta import extra, field_metas
from proxy.config.secrets import MASK, Secret, SecretFile, mask_url

if TYPE_CHECKING:
    from proxy.config.settings import Settings


def describe(settings: Settings) -> dict[str, Any]:
    """Every field of the settings (what `order-proxy check-config` prints). Secrets show as
    the mask and where they came from; a URL holding one shows with its password masked."""
    out = section(settings)
    # The shapes check-config has always printed, kept for whoever reads them.
    redis = out["redis"]
    mode = settings.redis.mode if settings.redis.url is not None else "in-process"
    out["redis"] = {"url": redis.pop("url"), "mode": mode, **redis}
    out["server"]["internal_host"] = settings.server.internal_host or settings.server.host
    out["webhook"] = (
        {"enabled": True, **out["webhook"]} if settings.webhook is not None else {"enabled": False}
    )
    for client in out["clients"]:
        client["key_sha256"] = client["key_sha256"][:8] + "…"  # enough to tell them apart
    auth = {
        "mode": "client keys" if settings.clients else "anonymous",
        "allow_anonymous": out.pop("allow_anonymous"),
        "clients": out["clients"],
    }
    # The callers' part shows as one "auth" table, where `clients` stands in the schema.
    return {
        ("auth" if key == "clients" else key): (auth if key == "clients" else value)
        for key, value in out.items()
    }


def section(obj: Any) -> dict[str, Any]:
    """A settings dataclass as a dict of its fields (derived, non-init fields left out)."""
    metas = field_metas(type(obj))
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        if not f.init:
            continue
        value = getattr(obj, f.name)
        shown = extra(metas[f.name])
        name = shown.get("describe_as", f.name)
        if isinstance(value, Secret) and shown.get("url"):
            out[name] = mask_url(value.reveal())
        elif isinstance(value, Secret):
            out[name] = MASK
            out[f"{name}_source"] = value.source
        else:
            out[name] = _value(value)
    return out


def _value(value: Any) -> Any:
    if isinstance(value, (Secret, SecretFile)):
        return MASK
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (Path, URL)):
        return str(value)
    if callable(getattr(value, "describe", None)):
        return value.describe()  # values that say how they are shown (TTL policy, rate limits)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return section(value)
    if isinstance(value, tuple):
        if value and all(isinstance(item, tuple) and len(item) == 2 for item in value):
            return {str(key): _value(item) for key, item in value}  # (kid, key file) pairs
        return [_value(item) for item in value]
    # A type nobody has said how to show could be a secret: refuse rather than print it.
    raise TypeError(f"describe() does not know how to show a {type(value).__name__}")
