"""docs/configuration.md is generated from the settings schema and cannot drift from it."""

from __future__ import annotations

import dataclasses
import re
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import pytest
from msgspec import Meta

from proxy.config import reference
from proxy.config.settings import sources
from proxy.config.tomlfile import _file_keys

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "configuration.md"


def test_the_page_holds_exactly_what_the_schema_generates() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_config_docs.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_regenerating_the_page_undoes_a_hand_edit_of_its_tables() -> None:
    rendered = runpy.run_path(str(ROOT / "scripts" / "gen_config_docs.py"))["rendered"]
    page = PAGE.read_text(encoding="utf-8")
    edited = page.replace("| `JUSPAY_TIMEOUT_SECONDS` |", "| `JUSPAY_TIMEOUT` |", 1)
    assert edited != page
    assert rendered(edited) == page  # regenerating undoes the hand edit


def test_every_file_key_the_loader_accepts_is_on_the_page() -> None:
    page = PAGE.read_text(encoding="utf-8")
    for key in _file_keys():
        assert f"| `{key}` |" in page, key
    for key in ("default_merchant", "cache.status_ttl_seconds.STATUS"):
        assert f"| `{key}` |" in page, key


def test_every_variable_the_config_package_reads_is_on_the_page() -> None:
    page = PAGE.read_text(encoding="utf-8")
    named = set()
    for path in (ROOT / "proxy" / "config").glob("*.py"):
        named |= set(re.findall(r'"((?:JUSPAY|PROXY|REDIS|LOG)_[A-Z_]+)"', path.read_text()))
    assert named, "no variable names found: the scan is broken"
    for name in sorted(named):
        assert f"`{name}`" in page, name


def test_defaults_and_bounds_come_from_the_schema() -> None:
    rows = {row.toml or row.env: row for row in reference.schema_rows()}
    timeout = rows["upstream.timeout_seconds"]
    assert (timeout.env, timeout.default, timeout.allowed) == (
        "JUSPAY_TIMEOUT_SECONDS",
        "`10`",
        "0.1 to 120",
    )
    assert rows["circuit.open_seconds"].default == "`5`"  # declared apart, next to the breaker
    assert rows["cache.final_ttl_seconds"].default == "`86400`"
    assert rows["LOG_FORMAT"].kind == "one of `json`, `console`"


def test_a_setting_without_a_meaning_cannot_reach_the_page() -> None:
    @dataclasses.dataclass(frozen=True)
    class NewSection:
        knob: Annotated[int, Meta(ge=1, le=2, extra=sources(toml="new.knob"))] = 1

    with pytest.raises(LookupError, match=r"new_section\.knob has no meaning"):
        list(reference._walk(NewSection, "new_section.", reference.field_metas(NewSection)))


def test_a_meta_description_is_the_meaning() -> None:
    @dataclasses.dataclass(frozen=True)
    class NewSection:
        knob: Annotated[
            int, Meta(ge=1, le=2, description="turns it", extra=sources(env="PROXY_KNOB"))
        ] = 1

    (row,) = reference._walk(NewSection, "new_section.", reference.field_metas(NewSection))
    assert (row.env, row.meaning, row.allowed) == ("PROXY_KNOB", "turns it", "1 to 2")
