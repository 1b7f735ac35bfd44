"""The checker: is every answer a state the simulator held recently enough?

An answer with HTTP 200 is valid iff its (status, refunds) equals a state the simulator held at
some instant in [L, end of the read], where L is the acknowledgement time of the newest
invalidation (webhook or purge answered 200) of that order that counts for the read:

- one acknowledged by the proxy that served the read counts once acknowledged before the
  read began;
- one acknowledged by the other proxy counts only once CROSS_REPLICA_BOUND seconds have
  passed since, before the read began (replicas may lag that much: pub/sub and all);
- a `Cache-Control: no-cache` read must in addition come from an upstream read that started
  after it arrived: L is at least the read's start.

A state "may have been held" over [change.before, next change.after]: the driver brackets
each change of the simulator by the start and end of its control call, and the checker gives
the proxy the benefit of the doubt on both sides.

A second, simpler rule: an answer marked HIT or STALE never carries a status in progress
(NEW, PENDING_VBV, ...): the README promises a payment in progress is always read from Juspay.

Non-200 answers and failed requests are not judged (availability is not what this checks);
they are counted.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from tests.history.model import Answer, Change, History, Invalidation, State

CROSS_REPLICA_BOUND = 2.5
IN_PROGRESS = frozenset(
    {"NEW", "STARTED", "PENDING_VBV", "AUTHORIZING", "COD_INITIATED", "VBV_SUCCESSFUL"}
)


@dataclass(frozen=True, slots=True)
class Violation:
    rule: str  # "stale", "no-cache", "cached-in-progress" or "not-an-order"
    answer: Answer
    floor: float  # L (-inf when no invalidation counted)
    because: Invalidation | None  # the invalidation that set L, if any
    allowed: tuple[State, ...]


def counts_for(
    invalidation: Invalidation, answer: Answer, multi_process: frozenset[str] = frozenset()
) -> bool:
    """Whether an acknowledged invalidation binds this read. A proxy that runs several
    processes is several replicas behind one port: its own acknowledgements bind its reads
    like another replica's."""
    if invalidation.proxy == answer.proxy and answer.proxy not in multi_process:
        return invalidation.ack <= answer.start
    return invalidation.ack + CROSS_REPLICA_BOUND <= answer.start


def floor_of(
    answer: Answer,
    invalidations: Iterable[Invalidation],
    multi_process: frozenset[str] = frozenset(),
) -> tuple[float, Invalidation | None]:
    """L from invalidations alone (before the no-cache rule), and the one that set it."""
    floor, because = -math.inf, None
    for inv in invalidations:
        if counts_for(inv, answer, multi_process) and inv.ack > floor:
            floor, because = inv.ack, inv
    return floor, because


def held_between(changes: list[Change], low: float, high: float) -> tuple[State, ...]:
    """States the simulator may have held at some instant in [low, high]; `changes` sorted."""
    states: list[State] = []
    for index, change in enumerate(changes):
        until = changes[index + 1].after if index + 1 < len(changes) else math.inf
        if change.before <= high and until >= low and change.state not in states:
            states.append(change.state)
    return tuple(states)


def check(history: History) -> list[Violation]:
    changes: dict[str, list[Change]] = defaultdict(list)
    for change in sorted(history.changes, key=lambda c: c.before):
        changes[change.order_id].append(change)
    invalidations: dict[str, list[Invalidation]] = defaultdict(list)
    for inv in history.invalidations:
        invalidations[inv.order_id].append(inv)

    violations: list[Violation] = []
    for answer in history.answers:
        if answer.http_status != 200:
            continue
        order_changes = changes[answer.order_id]
        floor, because = floor_of(answer, invalidations[answer.order_id], history.multi_process)
        allowed = held_between(order_changes, floor, answer.end)
        state = answer.state
        if state is None:
            violations.append(Violation("not-an-order", answer, floor, because, allowed))
        elif answer.x_cache in ("HIT", "STALE") and state.status in IN_PROGRESS:
            violations.append(Violation("cached-in-progress", answer, floor, because, allowed))
        elif state not in allowed:
            violations.append(Violation("stale", answer, floor, because, allowed))
        elif answer.no_cache and answer.start > floor:
            fresh = held_between(order_changes, answer.start, answer.end)
            if state not in fresh:
                violations.append(Violation("no-cache", answer, answer.start, because, fresh))
    return violations


# --- reports ------------------------------------------------------------------------------


def _t(history: History, at: float) -> str:
    return "-inf" if at == -math.inf else f"{at - history.t0:7.3f}s"


def describe(history: History, answer: Answer) -> str:
    state = str(answer.state) if answer.state is not None else "(not an order)"
    note = f" {answer.note}" if answer.note else ""
    return (
        f"#{answer.op} {answer.kind} via {answer.proxy} "
        f"[{_t(history, answer.start)} .. {_t(history, answer.end)}] "
        f"-> {answer.http_status} X-Cache={answer.x_cache or '-'} {state}{note}"
    )


def timeline(history: History, order_id: str) -> list[str]:
    """The order's story: state changes, acknowledged invalidations and faults, in time order."""
    rows: list[tuple[float, str]] = []
    for c in history.changes:
        if c.order_id == order_id:
            event = f" (webhook {c.event})" if c.event else " (no webhook)"
            span = f"{_t(history, c.before)} .. {_t(history, c.after)}"
            rows.append((c.before, f"{span}  simulator -> {c.state}{event}"))
    for inv in history.invalidations:
        if inv.order_id == order_id:
            rows.append(
                (
                    inv.ack,
                    f"{_t(history, inv.ack)}  {inv.source} acked by {inv.proxy}: {inv.detail}",
                )
            )
    for at, oid, text in history.events:
        if oid in (order_id, ""):
            rows.append((at, f"{_t(history, at)}  {text}"))
    return [text for _, text in sorted(rows, key=lambda r: r[0])]


def report(
    history: History, violations: list[Violation], *, limit: int = 8, replay: str = ""
) -> str:
    """Readable: the seed, how to replay it, and each bad answer with its order's timeline."""
    if not violations:
        return f"seed {history.seed}: no violations in {len(history.answers)} answers"
    by_rule = Counter(v.rule for v in violations)
    orders = sorted({v.answer.order_id for v in violations})
    lines = [
        f"seed {history.seed}: {len(violations)} violation(s) "
        f"({', '.join(f'{n} {rule}' for rule, n in by_rule.most_common())}) "
        f"on {len(orders)} order(s) in {len(history.answers)} answers",
        f"  replay: {replay or f'seed {history.seed} with the same schedule'}",
        "  (times are seconds since the schedule began)",
    ]
    shown: set[str] = set()
    for v in violations[:limit]:
        a = v.answer
        lines.append("")
        lines.append(f"  [{v.rule}] order {a.order_id}: {describe(history, a)}")
        allowed = ", ".join(str(s) for s in v.allowed) or "(none)"
        lines.append(f"    allowed: {allowed}")
        why = (
            f"{v.because.source} acked by {v.because.proxy} at {_t(history, v.because.ack)}: "
            f"{v.because.detail}"
            if v.because is not None
            else "no invalidation counted"
        )
        if a.no_cache and v.floor == a.start:
            why = f"no-cache read: L is its own start ({why})"
        lines.append(f"    L = {_t(history, v.floor)}  ({why})")
        if a.order_id not in shown:
            shown.add(a.order_id)
            lines.append(f"    timeline of {a.order_id}:")
            lines.extend(f"      {row}" for row in timeline(history, a.order_id))
    if len(violations) > limit:
        lines.append(f"  ... and {len(violations) - limit} more")
    return "\n".join(lines)


def summary(history: History) -> str:
    c = history.counts
    answers = Counter(
        "200" if a.http_status == 200 else ("error" if a.http_status is None else "non-200")
        for a in history.answers
    )
    kinds = Counter(a.kind for a in history.answers)
    return (
        f"seed {history.seed} ({history.topology}): {len(history.answers)} answers "
        f"({answers['200']} ok, {answers['non-200']} non-200, {answers['error']} failed; "
        + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
        + f"), {len(history.changes)} state changes, "
        f"{sum(1 for i in history.invalidations if i.source == 'webhook')} webhooks acked "
        f"({c['webhook_retries']} retried), "
        f"{sum(1 for i in history.invalidations if i.source == 'purge')} purges, "
        f"{c['slow_reads']} slow reads, {c['redis_pauses']} Redis pauses, "
        f"{c['relay_cuts']} cuts of B's Redis link, {c['redis_outages']} outages, "
        f"{c['redis_crashes']} crashes, {c['failovers']} failovers, "
        f"{c['lagging_reads']} webhooks ahead of Juspay's reads"
    )
