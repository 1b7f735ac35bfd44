"""Configuration: the settings schema, loading from env and TOML, and secrets."""

from proxy.config.errors import SettingsError
from proxy.config.load import load_settings
from proxy.config.settings import Settings

__all__ = ["Settings", "SettingsError", "load_settings"]
