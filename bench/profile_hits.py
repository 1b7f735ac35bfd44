"""Profile the proxy's HIT paths with py-spy: where does one cache hit spend its CPU?

    .venv/bin/python -m bench.profile_hits [--layer memory redis bare miss forward] [--seconds 8]

Needs py-spy (`.venv/bin/pip install py-spy`; not a project dependency). For each layer it
starts the simulator (and redis-server), runs `order-proxy serve` pinned to core 0 exactly as
bench.run does (or, for `bare`, the bare aiohttp ceiling), primes the bench order and drives
it with wrk from core 1 while py-spy samples it twice. `miss` is the MISS path instead (never
cached PENDING_VBV orders, cycling over 256 as bench.run does), `forward` its ceiling (a plain
aiohttp app forwarding to the simulator).

1. without pausing it (--nonblocking, 500 Hz): self time per function and per package, and
   the CPU time per request over the same window, which turns every share into microseconds;
2. with --native (50 Hz, pauses it per sample): whole stacks through uvloop's C callbacks,
   for inclusive time. Paused samples over-weight syscalls; read it for the call tree's shape.

The raw native stacks go to bench/runs/profile-<layer>-<UTC stamp>.txt (collapsed format,
read by speedscope and flamegraph tools).
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import re
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from bench.env import (
    HIT_ORDER,
    PENDING_CYCLE,
    PENDING_PREFIX,
    Config,
    start_proxy,
    start_python_server,
)
from bench.harness import (
    BIN,
    CLIENT_CORE,
    BenchError,
    Pinning,
    Processes,
    cpu_seconds,
    run_wrk,
)
from bench.measure import expect
from bench.run import RESULTS, _interrupt, setup_env

# Sampling without pausing: py-spy cuts Python 3.11 coroutine stacks where C code resumes
# them, so only self time is trusted from this pass.
NONBLOCKING = ["--nonblocking", "--rate", "500"]
# Whole stacks (through uvloop's C callbacks); each sample pauses the proxy, so a low rate.
NATIVE = ["--native", "--rate", "50"]
_LINE = re.compile(r":\d+\)$")
# Leaf files grouped by what they are, for the per-package summary.
_PACKAGES = (
    ("aiohttp/", "aiohttp"),
    ("prometheus_client/", "prometheus_client"),
    ("structlog/", "structlog"),
    ("redis/", "redis-py"),
    ("asyncio/", "asyncio"),
    ("multidict/", "multidict"),
    ("yarl/", "yarl"),
    ("msgspec/", "msgspec"),
    ("contextvars", "contextvars"),
    ("uuid", "uuid"),
    ("enum", "enum"),
    ("re/", "re"),
)


def _frame(raw: str) -> str:
    """`func (path/to/file.py:12)` -> `func (to/file.py)`: lines merged, paths shortened."""
    frame = _LINE.sub(")", raw)
    name, _, where = frame.partition(" (")
    parts = where.rstrip(")").split("/")
    if "proxy" in parts[:-1]:  # the proxy's own modules keep their package: proxy/web/handlers.py
        parts = parts[len(parts) - 1 - parts[::-1].index("proxy") :]
        return f"{name} ({'/'.join(parts)})"
    if "site-packages" in parts:  # an installed package: from its top, redis/asyncio/client.py
        return f"{name} ({'/'.join(parts[parts.index('site-packages') + 1 :])})"
    return f"{name} ({'/'.join(parts[-2:])})" if where else name


def _package(frame: str) -> str:
    where = frame.partition(" (")[2]
    if where.startswith("proxy/"):
        # Per package of the proxy (proxy/web, proxy/core, ...), or "proxy" for its top modules.
        rest = where.partition("/")[2]
        return f"proxy/{rest.split('/')[0]}" if "/" in rest else "proxy"
    # Package or module names along the path: aiohttp/web.py -> aiohttp, python3.11/enum.py -> enum
    names = {part.removesuffix(".py") for part in where.rstrip(")").split("/")}
    for marker, label in _PACKAGES:
        if marker.rstrip("/") in names:
            return label
    return where.rstrip(")") or "other"


def analyse(collapsed: str, us_per_request: float) -> dict[str, Any]:
    total = 0
    self_counts: collections.Counter[str] = collections.Counter()
    incl_counts: collections.Counter[str] = collections.Counter()
    pkg_counts: collections.Counter[str] = collections.Counter()
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        # The first frames are py-spy's "process ..." and "thread (...)" labels.
        frames = [_frame(f) for f in stack.split(";") if " (" in f and not f.startswith("thread")]
        frames = [f for f in frames if not f.startswith("process ")]
        if not frames:
            continue
        total += count
        self_counts[frames[-1]] += count
        pkg_counts[_package(frames[-1])] += count
        for frame in set(frames):
            incl_counts[frame] += count

    def rows(counter: collections.Counter[str], limit: int) -> list[dict[str, Any]]:
        return [
            {
                "frame": frame,
                "share": n / total,
                "us_per_request": n / total * us_per_request,
            }
            for frame, n in counter.most_common(limit)
        ]

    return {
        "samples": total,
        "self": rows(self_counts, 30),
        "inclusive": rows(incl_counts, 60),
        "packages": rows(pkg_counts, 20),
    }


def _sample(
    pinning: Pinning,
    pid: int,
    port: int,
    path: str,
    *,
    seconds: float,
    flags: list[str],
    script_args: tuple[str, ...] = (),
) -> tuple[str, float, float]:
    """py-spy on the proxy while wrk loads it: collapsed stacks, req/s, CPU us per request."""
    with tempfile.TemporaryDirectory(prefix="order-proxy-spy-") as tmp_name:
        out = Path(tmp_name) / "stacks.txt"
        wrk_result: dict[str, Any] = {}

        def load() -> None:
            wrk_result.update(run_wrk(pinning, port, path, seconds + 2, script_args=script_args))

        before = cpu_seconds(pid)
        loader = threading.Thread(target=load)
        loader.start()
        argv = [str(BIN / "py-spy"), "record", "--pid", str(pid), "--format", "raw"]
        argv += ["--duration", str(int(seconds)), "--output", str(out), *flags]
        spy = subprocess.run(
            pinning.wrap(CLIENT_CORE, argv), capture_output=True, timeout=seconds + 30, check=False
        )
        loader.join(seconds + 40)
        spent = cpu_seconds(pid) - before
        if spy.returncode != 0 or not out.exists():
            raise BenchError(f"py-spy failed: {spy.stderr.decode()[-800:]}")
        requests = max(1, wrk_result.get("requests", 1))
        return out.read_text(), wrk_result.get("rps", 0.0), spent * 1e6 / requests


def profile_layer(
    layer: str, env_cfg: Config, pinning: Pinning, *, seconds: float, log_level: str = "info"
) -> dict[str, Any]:
    """Two passes: sampling without pausing the proxy (self time, and the CPU per request
    that scales every share), then --native (whole stacks, for inclusive time)."""
    with tempfile.TemporaryDirectory(prefix="order-proxy-profile-") as tmp_name:
        tmp = Path(tmp_name)
        procs = Processes(tmp, pinning)
        try:
            env = setup_env(env_cfg, pinning, procs, tmp)
            script_args: tuple[str, ...] = ()
            if layer == "bare":
                proc, port = start_python_server(
                    env, "ceiling_bare", "--body-file", str(env.body_file)
                )
            elif layer == "forward":
                upstream = f"http://127.0.0.1:{env.sim_port}"
                proc, port = start_python_server(env, "ceiling_forward", "--upstream", upstream)
            else:
                proc, port = start_proxy(
                    env, f"proxy-{layer}", redis=layer == "redis", log_level=log_level
                )
            if layer in ("miss", "forward"):
                path, script_args = "/", PENDING_CYCLE
                expect(port, f"/orders/{PENDING_PREFIX}0", body=None)
                run_wrk(pinning, port, path, 2.0, script_args=script_args)  # warm-up
            else:
                path = f"/orders/{HIT_ORDER}"
                expect(port, path, body=env.body)
                expect(port, path, body=env.body, x_cache=None if layer == "bare" else "HIT")
                run_wrk(pinning, port, path, 2.0)  # warm-up
            flat, rps, us_per_request = _sample(
                pinning,
                proc.pid,
                port,
                path,
                seconds=seconds,
                flags=NONBLOCKING,
                script_args=script_args,
            )
            whole, native_rps, _ = _sample(
                pinning,
                proc.pid,
                port,
                path,
                seconds=seconds,
                flags=NATIVE,
                script_args=script_args,
            )
        finally:
            procs.close()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(exist_ok=True)
    raw_path = RESULTS / f"profile-{layer}-{stamp}.txt"
    raw_path.write_text(whole)
    self_part = analyse(flat, us_per_request)
    incl_part = analyse(whole, us_per_request)
    return {
        "layer": layer,
        "rps_while_sampled": rps,
        "rps_while_sampled_native": native_rps,
        "cpu_us_per_req": us_per_request,
        "samples": self_part["samples"],
        "samples_native": incl_part["samples"],
        "packages": self_part["packages"],
        "self": self_part["self"],
        "inclusive": incl_part["inclusive"],
        "raw": str(raw_path.relative_to(RESULTS.parent.parent)),
    }


def report(result: dict[str, Any]) -> None:
    print(
        f"\n=== {result['layer']}: {result['cpu_us_per_req']:.0f} us CPU/req at "
        f"{result['rps_while_sampled']:,.0f} req/s ({result['samples']} samples, proxy not "
        f"paused); inclusive from --native ({result['samples_native']} samples, "
        f"{result['rps_while_sampled_native']:,.0f} req/s while paused per sample); "
        f"raw native stacks: {result['raw']}"
    )
    for title, key, limit in (
        ("self time by package (leaf frame's file)", "packages", 12),
        ("top self time", "self", 25),
        # ptrace-paused samples over-weight syscalls (getpid, getrandom, write): use this for
        # the shape of the call tree, and the self times above for the amounts.
        ("top inclusive time (--native samples; syscalls over-weighted)", "inclusive", 45),
    ):
        print(f"-- {title}")
        for row in result[key][:limit]:
            print(f"  {row['share'] * 100:5.1f}%  {row['us_per_request']:6.1f} us  {row['frame']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument(
        "--layer",
        nargs="+",
        choices=("memory", "redis", "bare", "miss", "forward"),
        default=["memory", "redis"],
        help="what to profile: the proxy's in-process or Redis HIT, the bare aiohttp ceiling, "
        "the MISS path or its forwarding ceiling",
    )
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument(
        "--log-level",
        default="info",
        help="the proxy's LOG_LEVEL: info (default config, one access line per request) or "
        "warning (quiet)",
    )
    args = p.parse_args(argv)
    if not (BIN / "py-spy").exists():
        print("py-spy not found: .venv/bin/pip install py-spy", file=sys.stderr)
        return 2
    pinning = Pinning.detect()
    print(f"pinning: {pinning.note}")
    pinning.pin_self()
    # Explicitly, also for SIGINT: a shell starting us in the background may ignore it.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    cfg = Config.single_server(args.seconds, warmup=2.0)
    for layer in args.layer:
        report(profile_layer(layer, cfg, pinning, seconds=args.seconds, log_level=args.log_level))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
