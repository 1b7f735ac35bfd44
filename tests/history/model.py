"""What a history holds: the simulator's states, the acknowledged invalidations, the answers.

Every time is `time.monotonic()` in the driver's process, so all events share one clock.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

Refunds = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class State:
    """What the checker compares: the order's status and its refunds (id and status)."""

    status: str
    refunds: Refunds = ()

    @classmethod
    def of(cls, status: str, refunds: list[dict[str, Any]] | None = None) -> State:
        pairs = ((str(r.get("id")), str(r.get("status"))) for r in refunds or [])
        return cls(status, tuple(sorted(pairs)))

    @classmethod
    def from_body(cls, body: object) -> State | None:
        """The state in a Juspay order body, or None when the body is not an order."""
        if not isinstance(body, dict):
            return None
        status = body.get("status")
        refunds = body.get("refunds") or []
        if not isinstance(status, str) or not isinstance(refunds, list):
            return None
        if not all(isinstance(r, dict) for r in refunds):
            return None
        return cls.of(status, refunds)

    def __str__(self) -> str:
        if not self.refunds:
            return self.status
        return f"{self.status}[{', '.join(f'{i}:{s}' for i, s in self.refunds)}]"


@dataclass(frozen=True, slots=True)
class Change:
    """The simulator started answering `state` for the order at some instant in
    [before, after] (the bracket of the control call that set it)."""

    order_id: str
    state: State
    before: float
    after: float
    event: str  # the webhook sent for it, or "" when Juspay would send none


@dataclass(frozen=True, slots=True)
class Invalidation:
    """A webhook or purge for the order that a proxy acknowledged with a 200 at `ack`."""

    order_id: str
    proxy: str
    ack: float
    source: str  # "webhook" or "purge"
    detail: str  # the event and the proxy's result, or the entries purged


@dataclass(frozen=True, slots=True)
class Answer:
    """One order in one answer: a single read, or one item of a batchGet."""

    op: int
    kind: str  # get | no-cache | wait | batch | slow | final | final-batch
    proxy: str
    order_id: str
    start: float
    end: float
    http_status: int | None  # None: no HTTP answer (connection error, client timeout)
    x_cache: str
    state: State | None  # from a 200 body; None when it is not an order
    note: str = ""

    @property
    def no_cache(self) -> bool:
        return self.kind == "no-cache"


@dataclass
class History:
    seed: int
    t0: float
    topology: str = "standalone"
    # Proxies that run several processes: see checker.counts_for.
    multi_process: frozenset[str] = frozenset()
    orders: list[str] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    invalidations: list[Invalidation] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    # Faults and other things worth seeing in a report: (time, order id or "", text).
    events: list[tuple[float, str, str]] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)

    def note(self, at: float, order_id: str, text: str) -> None:
        self.events.append((at, order_id, text))
