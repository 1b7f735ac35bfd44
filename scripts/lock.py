"""The dependency locks: hashed requirements files made from pyproject.toml, and their check.

    requirements/dev.txt       runtime + `speed` + `dev` extras: what `make venv` installs
    requirements/runtime.txt   runtime + `speed`: what the Docker image installs
    requirements/build.txt     pip and the build backend ([build-system] requires)

Each pins every package, direct or not, with the sha256 of every file PyPI has for that version
(`pip install --require-hashes` refuses anything else), and holds one resolution for every
platform and Python >= 3.11 (uv's `--universal`: environment markers, not the machine that ran
the lock, decide what applies). runtime.txt and build.txt are resolved within dev.txt, so the
versions tested are the versions shipped.

    python scripts/lock.py            # (make lock) re-resolve; kept pins stay unless they must
    python scripts/lock.py --upgrade  # (make lock LOCK_ARGS=--upgrade) newest allowed versions
    python scripts/lock.py --check    # (CI) offline: do pyproject.toml and the locks agree?

Locking needs uv (the Makefile installs a pinned one); the check needs only `packaging`. Each
file records a digest of the requirements it was made from, so the check fails on any change
to them (a new, removed or re-marked dependency, a changed bound) until `make lock` is run, and
it also checks that every pin satisfies its requirement (catches hand edits).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LOCK_DIR = ROOT / "requirements"
PYTHON_VERSION = "3.11"  # the lowest supported (requires-python); the lock covers every later one
DIGEST_PREFIX = "# inputs-sha256: "
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def _requirements() -> dict[str, list[str]]:
    """What each lock file is made from, read from pyproject.toml (normalized)."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = data["project"]
    extras = project.get("optional-dependencies", {})
    runtime = [*project["dependencies"], *extras.get("speed", [])]
    dev = [*runtime, *extras.get("dev", [])]
    build = [*data["build-system"]["requires"], "pip"]

    def norm(items: list[str]) -> list[str]:
        return sorted({str(Requirement(item)) for item in items})

    return {"dev": norm(dev), "runtime": norm(runtime), "build": norm(build)}


def _digest(requirements: list[str]) -> str:
    return hashlib.sha256(json.dumps(requirements).encode()).hexdigest()


def _pins(text: str) -> dict[str, str]:
    return {
        canonicalize_name(m.group(1)): m.group(2)
        for m in (_PIN.match(line) for line in text.splitlines())
        if m
    }


def _uv() -> str:
    for candidate in (Path(sys.executable).parent / "uv", shutil.which("uv")):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    sys.exit("scripts/lock.py: uv is needed to lock (`make lock` installs it)")


def lock(upgrade: bool) -> None:
    requirements = _requirements()
    LOCK_DIR.mkdir(exist_ok=True)
    uv = _uv()
    env = {**os.environ, "UV_CUSTOM_COMPILE_COMMAND": "make lock"}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("dev", "runtime", "build"):
            out = LOCK_DIR / f"{name}.txt"
            # A stable input file name, so the "# via" annotations do not change between runs.
            source = Path(tmp) / f"{name}.in"
            source.write_text("\n".join(requirements[name]) + "\n")
            command = [
                uv, "pip", "compile", str(source), "--output-file", str(out),
                "--universal", "--python-version", PYTHON_VERSION, "--generate-hashes",
                "--no-strip-markers", "--quiet", "--annotation-style", "line",
            ]  # fmt: skip
            if upgrade:
                command.append("--upgrade")
            if name != "dev":
                command += ["--constraint", str(LOCK_DIR / "dev.txt")]
            subprocess.run(command, check=True, env=env, cwd=tmp)
            text = out.read_text().replace(f"-r {source.name}", "pyproject.toml")
            text = text.replace(str(LOCK_DIR / "dev.txt"), "requirements/dev.txt")
            lines = text.splitlines()
            start = next((i for i, line in enumerate(lines) if not line.startswith("#")), 0)
            digest = f"{DIGEST_PREFIX}{_digest(requirements[name])} (see scripts/lock.py)"
            out.write_text("\n".join([*lines[:start], digest, "", *lines[start:]]) + "\n")
            print(f"locked {out.relative_to(ROOT)}: {len(_pins(text))} packages")


def check() -> int:
    problems: list[str] = []
    for name, wanted in _requirements().items():
        path = LOCK_DIR / f"{name}.txt"
        if not path.is_file():
            problems.append(f"{path.relative_to(ROOT)} is missing")
            continue
        text = path.read_text()
        recorded = next(
            (line[len(DIGEST_PREFIX) :].split()[0] for line in text.splitlines()
             if line.startswith(DIGEST_PREFIX)),
            None,
        )  # fmt: skip
        if recorded != _digest(wanted):
            problems.append(
                f"{path.relative_to(ROOT)} was not made from the current pyproject.toml"
            )
        pins = _pins(text)
        for item in wanted:
            req = Requirement(item)
            version = pins.get(canonicalize_name(req.name))
            if version is None:
                problems.append(f"{path.relative_to(ROOT)} does not pin {req.name}")
            elif not req.specifier.contains(version, prereleases=True):
                problems.append(f"{path.relative_to(ROOT)} pins {req.name}=={version}: not {req}")
        # A pin with hashes continues onto its --hash lines.
        if any(_PIN.match(line) and not line.endswith("\\") for line in text.splitlines()):
            problems.append(f"{path.relative_to(ROOT)} has a pin without hashes")
    for problem in problems:
        print(f"lock: {problem}", file=sys.stderr)
    if problems:
        print("lock: pyproject.toml and the lock disagree: run `make lock`", file=sys.stderr)
        return 1
    print("lock: requirements/*.txt agree with pyproject.toml")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="offline agreement check (CI)")
    parser.add_argument("--upgrade", action="store_true", help="newest allowed versions")
    args = parser.parse_args()
    if args.check:
        return check()
    lock(upgrade=args.upgrade)
    return check()


if __name__ == "__main__":
    sys.exit(main())
