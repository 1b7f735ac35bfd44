"""SettingsError: a setting is missing or wrong, said in one line that names it."""

from __future__ import annotations


class SettingsError(Exception):
    """A setting is missing or wrong; `str()` is one line naming it (never its secret value)."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting
