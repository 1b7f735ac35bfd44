"""`make check-history`: many seeded histories against real processes, every answer checked.

Seeds take turns over the Redis topologies (standalone, rdb, aof, sentinel): for each, Redis
in that shape, one simulator and proxies A (`--workers 2`) and B are started (once per
topology; a sentinel cluster fails over once, so it is started anew for each of its seeds).
Each seed drives its own orders (distinct ids) through Juspay lifecycles with webhooks,
purges, slow upstream reads, Redis pauses, and per topology: cuts of B's Redis link and Redis
outages (standalone), crashes and restarts from the RDB snapshot or the AOF, a failover to a
lagging replica (sentinel); it records every answer, and the checker in
tests/history/checker.py judges them. Prints one line per seed, a full report for each
failing seed, and exits 1 if any seed failed.

    python scripts/check_history.py --seeds 200                          # seeds 1..200
    python scripts/check_history.py --first 17 --seeds 1                 # replay seed 17
    python scripts/check_history.py --topologies sentinel --seeds 20     # one topology
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.history.checker import check, report, summary
from tests.history.driver import TOPOLOGIES, Cluster, Schedule, open_cluster, run_seed


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=200, help="how many seeds (default 200)")
    parser.add_argument("--first", type=int, default=1, help="the first seed (default 1)")
    parser.add_argument("--seconds", type=float, default=2.0, help="schedule length per seed")
    parser.add_argument("--orders", type=int, default=5, help="orders per seed")
    parser.add_argument("--settle", type=float, default=0.5, help="quiet time before final reads")
    parser.add_argument(
        "--ms-stamps",
        action="store_true",
        help="webhook date_created with milliseconds (Juspay's have seconds only)",
    )
    parser.add_argument(
        "--topologies",
        default=",".join(TOPOLOGIES),
        help=f"comma-separated, taken in turn by the seeds (default {','.join(TOPOLOGIES)})",
    )
    parser.add_argument("--workers", type=int, default=2, help="proxy A's --workers (default 2)")
    parser.add_argument("--limit", type=int, default=4, help="violations shown per failing seed")
    parser.add_argument("-x", "--exitfirst", action="store_true", help="stop at the first failure")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each seed's summary")
    return parser.parse_args(argv)


def topology_of(seed: int, topologies: list[str]) -> str:
    """The topology a seed runs on: they take turns, so a replayed seed runs on the same."""
    return topologies[(seed - 1) % len(topologies)]


def _dead(cluster: Cluster) -> str | None:
    for name, proc in {"simulator": cluster.sim, **cluster.proxies}.items():
        if proc.proc is None or proc.proc.poll() is not None:
            tail = proc.output()[-2000:].decode(errors="replace")
            return f"{name} exited; its last output:\n{tail}"
    return None


async def _main(args: argparse.Namespace) -> int:
    schedule = Schedule(
        seconds=args.seconds,
        orders=args.orders,
        settle_seconds=args.settle,
        ms_stamps=args.ms_stamps,
    )
    seeds = range(args.first, args.first + args.seeds)
    topologies = [t.strip() for t in args.topologies.split(",") if t.strip()]
    unknown = sorted(set(topologies) - set(TOPOLOGIES))
    if unknown or not topologies:
        print(f"check-history: unknown topologies {unknown}; known: {TOPOLOGIES}")
        return 2
    failed: list[int] = []
    rules: Counter[str] = Counter()
    began = time.monotonic()
    print(f"check-history: {len(seeds)} seeds from {args.first} over {topologies}, {schedule}")
    done = 0
    for topology in topologies:
        mine = [seed for seed in seeds if topology_of(seed, topologies) == topology]
        # A sentinel cluster fails over once: a fresh one for each seed.
        groups = [[seed] for seed in mine] if topology == "sentinel" else [mine]
        for group in groups:
            if not group:
                continue
            async with open_cluster(topology, workers=args.workers) as cluster:
                for seed in group:
                    dead = _dead(cluster)
                    if dead is not None:
                        print(f"check-history: cannot go on: {dead}", flush=True)
                        return 2
                    done += 1
                    started = time.monotonic()
                    history = await run_seed(cluster, seed, schedule)
                    violations = check(history)
                    took = time.monotonic() - started
                    verdict = "ok" if not violations else f"FAIL {len(violations)} violation(s)"
                    print(
                        f"[{done:4d}/{len(seeds)}] seed {seed} ({topology}): {verdict} "
                        f"({len(history.answers)} answers, {took:.1f}s)",
                        flush=True,
                    )
                    if args.verbose:
                        print("    " + summary(history), flush=True)
                    if violations:
                        failed.append(seed)
                        rules.update(v.rule for v in violations)
                        replay = (
                            f"scripts/check_history.py --first {seed} --seeds 1 "
                            f"--topologies {topology} --seconds {args.seconds:g} "
                            f"--orders {args.orders} --settle {args.settle:g}"
                            + (" --ms-stamps" if args.ms_stamps else "")
                        )
                        print(
                            report(history, violations, limit=args.limit, replay=replay),
                            flush=True,
                        )
                        if args.exitfirst:
                            return 1
    total = time.monotonic() - began
    if not failed:
        print(f"check-history: all {len(seeds)} seeds passed in {total:.0f}s")
        return 0
    by_rule = ", ".join(f"{count} {rule}" for rule, count in rules.most_common())
    print(f"check-history: {len(failed)} seed(s) failed ({by_rule}) in {total:.0f}s")
    print(f"check-history: failing seeds: {' '.join(str(s) for s in failed)}")
    return 1


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(_main(_parse(argv)))


if __name__ == "__main__":
    sys.exit(main())
