"""The dependency lock: CI's check passes on the repository and fails once pyproject.toml and
requirements/*.txt disagree (run offline, on a copy)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def copy_project(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "lock.py", tmp_path / "scripts" / "lock.py")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(ROOT / "requirements", tmp_path / "requirements")
    return tmp_path


def check(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(root / "scripts" / "lock.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_lock_agrees_with_pyproject_and_pins_everything_with_hashes() -> None:
    result = check(ROOT)
    assert result.returncode == 0, result.stderr
    for name in ("dev", "runtime", "build"):
        text = (ROOT / "requirements" / f"{name}.txt").read_text()
        pins = re.findall(r"^[A-Za-z0-9][\w.-]*==\S+", text, re.MULTILINE)
        assert pins
        assert text.count("--hash=sha256:") >= len(pins)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('"msgspec>=0.19,<1",', '"msgspec>=0.19,<1",\n  "orjson>=3",'),  # a new dependency
        ('"msgspec>=0.19,<1",', '"msgspec>=5",'),  # a bound the pin does not meet
        ('"ruff>=0.8",', ""),  # a dev tool removed
        ('requires = ["setuptools>=77", "wheel"]', 'requires = ["setuptools>=77", "flit_core"]'),
    ],
)
def test_the_check_fails_when_pyproject_and_the_lock_disagree(
    tmp_path: Path, old: str, new: str
) -> None:
    root = copy_project(tmp_path)
    pyproject = root / "pyproject.toml"
    text = pyproject.read_text()
    assert old in text
    pyproject.write_text(text.replace(old, new, 1))
    result = check(root)
    assert result.returncode == 1
    assert "run `make lock`" in result.stderr


def test_the_check_fails_on_a_pin_without_hashes(tmp_path: Path) -> None:
    root = copy_project(tmp_path)
    runtime = root / "requirements" / "runtime.txt"
    lines = runtime.read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith("msgspec=="))
    lines[index] = lines[index].removesuffix(" \\")
    end = next(i for i in range(index + 1, len(lines)) if not lines[i].startswith("    --hash"))
    runtime.write_text("\n".join(lines[: index + 1] + lines[end:]) + "\n")
    result = check(root)
    assert result.returncode == 1
    assert "without hashes" in result.stderr
