"""A benchmark run leaves the tree clean, and its servers bind port 0 and are found by the port
they really took."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.request import urlopen

import pytest

from bench import harness, run

ROOT = Path(__file__).resolve().parent.parent


def test_runs_are_written_where_git_ignores_them_and_the_reference_is_tracked() -> None:
    assert run.RESULTS == ROOT / "bench" / "runs"
    for path in ("bench/runs/20990101T000000Z.json", "bench/runs/latest.json"):
        ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT, check=False)
        assert ignored.returncode == 0, path
    tracked = subprocess.run(
        ["git", "ls-files", "--error-unmatch", "bench/results/latest.json"],
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    assert tracked.returncode == 0


def test_a_server_started_on_port_0_is_found_on_the_port_it_bound(tmp_path: Path) -> None:
    body = tmp_path / "body.json"
    body.write_bytes(b"{}")
    procs = harness.Processes(tmp_path, harness.Pinning(enabled=False, note="test"))
    try:
        argv = [sys.executable, "-m", "bench.ceiling_bare", "--port", "0", "--body-file", str(body)]
        proc = procs.start("bare", argv, core=None)
        port = harness.listening_port(proc)
        assert port != 0
        with urlopen(f"http://127.0.0.1:{port}/orders/X", timeout=10) as answer:
            assert answer.read() == b"{}"
    finally:
        procs.close()


def test_a_server_that_never_listens_is_reported_not_waited_for_forever() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        procs = harness.Processes(Path(tmp), harness.Pinning(enabled=False, note="test"))
        try:
            proc = procs.start("exits", [sys.executable, "-c", "pass"], core=None)
            with pytest.raises(harness.BenchError, match="not listening"):
                harness.listening_port(proc, timeout=10)
        finally:
            procs.close()
