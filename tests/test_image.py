"""`make image`: builds with OCI labels where a Docker engine runs, says plainly when none does."""

from __future__ import annotations

import re
import stat
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def make_image(docker: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "-s", "image", f"DOCKER={docker}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def version() -> str:
    text = (ROOT / "pyproject.toml").read_text()
    match = re.search(r'^version = "(.+)"$', text, re.MULTILINE)
    assert match
    return match.group(1)


def test_without_a_docker_engine_it_lints_and_says_the_image_is_not_built() -> None:
    result = make_image("no-such-docker-binary")
    assert result.returncode == 0, result.stderr
    assert "the image is NOT built" in result.stdout
    assert "hadolint found nothing" in result.stdout


def test_with_a_docker_engine_it_builds_with_version_revision_and_source(tmp_path: Path) -> None:
    # A stand-in for the docker CLI that records what it is asked to do.
    log = tmp_path / "calls"
    docker = tmp_path / "docker"
    docker.write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    docker.chmod(docker.stat().st_mode | stat.S_IXUSR)
    revision = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    result = make_image(str(docker))
    assert result.returncode == 0, result.stderr
    info, build = log.read_text().splitlines()
    assert info == "info"
    assert f"--build-arg VERSION={version()}" in build
    assert f"--build-arg REVISION={revision}" in build
    assert "--build-arg SOURCE=" in build
    assert build.endswith(f"-t order-proxy:{version()} .")


def test_the_dockerfile_turns_the_build_args_into_oci_labels() -> None:
    runtime = (ROOT / "Dockerfile").read_text().split(" AS runtime", 1)[1]
    for arg, label in (("VERSION", "version"), ("REVISION", "revision"), ("SOURCE", "source")):
        assert f"ARG {arg}=" in runtime
        assert f'org.opencontainers.image.{label}="${{{arg}}}"' in runtime
