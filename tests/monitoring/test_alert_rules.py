"""promtool accepts rules.yaml and its unit tests in rules_test.yaml pass."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool not found on PATH: the alert rules cannot be checked. "
            "Install Prometheus' tools (Debian/Ubuntu: apt-get install prometheus)."
        )
    return path


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def test_promtool_check_rules(promtool: str, monitoring_dir: Path) -> None:
    result = _run(promtool, "check", "rules", "rules.yaml", cwd=monitoring_dir)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_test_rules(promtool: str, monitoring_dir: Path) -> None:
    result = _run(promtool, "test", "rules", "rules_test.yaml", cwd=monitoring_dir)
    assert result.returncode == 0, result.stdout + result.stderr
