"""Interleaved A/B: bare aiohttp, the proxy's in-process HIT in the default configuration and
with quiet logs, all running at once and measured in turn, round after round.

    .venv/bin/python -m bench.ab [--rounds 7] [--seconds 3] [--baseline DIR]

On a machine shared with other work, the load changes from one minute to the next; measuring
the three servers back to back in every round, and comparing them round by round, cancels most
of that drift. Each server is pinned to core 0 and wrk to core 1, as in bench.run. Reports, per
server, the median req/s, p99 and CPU us per request, and the per-round ratios' medians
(default/bare, quiet/bare) and the access line's cost (default minus quiet CPU us per request).
With `--baseline DIR` (another checkout, e.g. `git worktree add /tmp/base <commit>`), that
code runs as a fourth server in the default configuration, and the default proxy is compared
with it round by round: how a change moved the hit path, measured against the same drift.
Writes bench/runs/ab-<UTC stamp>.json (ignored by git).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench.env import HIT_ORDER, Config, start_proxy, start_python_server
from bench.harness import Pinning, Processes, cpu_seconds, run_wrk
from bench.measure import expect
from bench.run import RESULTS, setup_env


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="a checkout whose proxy/ runs as the 'baseline' server (default configuration)",
    )
    args = p.parse_args(argv)
    pinning = Pinning.detect()
    pinning.pin_self()
    cfg = Config.single_server(args.seconds, warmup=1.0)
    path = f"/orders/{HIT_ORDER}"
    rounds: list[dict[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory(prefix="order-proxy-ab-") as tmp_name:
        tmp = Path(tmp_name)
        procs = Processes(tmp, pinning)
        try:
            env = setup_env(cfg, pinning, procs, tmp)
            servers = {
                "bare": start_python_server(env, "ceiling_bare", "--body-file", str(env.body_file)),
                "default": start_proxy(env, "proxy-default", log_level="info"),
                "quiet": start_proxy(env, "proxy-quiet", log_level="warning"),
            }
            if args.baseline is not None:
                servers["baseline"] = start_proxy(
                    env, "proxy-baseline", log_level="info", source=args.baseline.resolve()
                )
            for _name, (_proc, port) in servers.items():
                expect(port, path, body=env.body)
                expect(port, path, body=env.body)
                run_wrk(pinning, port, path, 1.0)  # warm-up
            for i in range(args.rounds):
                this: dict[str, dict[str, float]] = {}
                order = list(servers) if i % 2 == 0 else list(reversed(servers))
                for name in order:
                    proc, port = servers[name]
                    before = cpu_seconds(proc.pid)
                    result = run_wrk(pinning, port, path, args.seconds)
                    spent = cpu_seconds(proc.pid) - before
                    this[name] = {
                        "rps": result["rps"],
                        "p99_ms": result["p99_ms"],
                        "cpu_us_per_req": spent * 1e6 / max(1, result["requests"]),
                        "util": spent / result["seconds"],
                    }
                rounds.append(this)
                print(
                    f"round {i + 1}: "
                    + ", ".join(
                        f"{n} {v['rps']:,.0f} req/s {v['cpu_us_per_req']:.0f} us "
                        f"({v['util'] * 100:.0f}%)"
                        for n, v in this.items()
                    ),
                    flush=True,
                )
        finally:
            procs.close()

    def med(name: str, key: str) -> float:
        return statistics.median(r[name][key] for r in rounds)

    def ratio(a: str, b: str, key: str) -> float:
        return statistics.median(r[a][key] / r[b][key] for r in rounds)

    summary: dict[str, Any] = {
        name: {key: med(name, key) for key in ("rps", "p99_ms", "cpu_us_per_req", "util")}
        for name in servers
    }
    summary["ratios"] = {
        "default_vs_bare_rps": ratio("default", "bare", "rps"),
        "default_vs_bare_p99": ratio("default", "bare", "p99_ms"),
        "quiet_vs_bare_rps": ratio("quiet", "bare", "rps"),
        "default_vs_bare_cpu_per_req": ratio("bare", "default", "cpu_us_per_req"),
        "quiet_vs_bare_cpu_per_req": ratio("bare", "quiet", "cpu_us_per_req"),
        "access_line_us_per_req": statistics.median(
            r["default"]["cpu_us_per_req"] - r["quiet"]["cpu_us_per_req"] for r in rounds
        ),
    }
    if "baseline" in servers:
        summary["ratios"]["default_vs_baseline_rps"] = ratio("default", "baseline", "rps")
        summary["ratios"]["default_minus_baseline_cpu_us_per_req"] = statistics.median(
            r["default"]["cpu_us_per_req"] - r["baseline"]["cpu_us_per_req"] for r in rounds
        )
        summary["baseline_source"] = str(args.baseline)
    print(json.dumps(summary, indent=2))
    RESULTS.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"ab-{stamp}.json"
    out.write_text(json.dumps({"rounds": rounds, "summary": summary}, indent=2))
    print(f"raw: {out.relative_to(RESULTS.parent.parent)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
