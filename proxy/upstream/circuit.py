"""A circuit breaker for the upstream: stop calling Juspay while it is failing, probe, recover.

closed ──(N failures in a row, or failure ratio over the window)──▶ open
open ──(open_seconds passed)──▶ half-open: one probe call at a time
half-open ──(probe succeeds)──▶ closed;  ──(probe fails)──▶ open again

It counts caller-visible outcomes: one upstream read, its retries included, is one call here,
a success or a failure (the client reserves a call before the read's first attempt and records
its final outcome). So with the default threshold of 5, five failed reads in a row open the
circuit, however many attempts each one made. Only failures that say Juspay is unwell count:
connection errors, timeouts, 5xx and 429. An answer Juspay gave on purpose (an order, a 4xx,
our key refused) is a success here.
"""

from __future__ import annotations

import enum
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from proxy.core.errors import CircuitOpen


class CircuitState(enum.IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


@dataclass(frozen=True, slots=True)
class CircuitSettings:
    # A "call" is one upstream read as its caller sees it, retries included.
    failure_threshold: int = 5  # consecutive failed reads that open the circuit
    failure_ratio: float = 0.5  # or this share of failed reads in the window ...
    window: int = 20  # ... of the last `window` reads,
    min_calls: int = 10  # once at least this many reads are in it
    open_seconds: float = 5.0  # how long to fail fast before probing


class CircuitBreaker:
    def __init__(
        self,
        settings: CircuitSettings,
        *,
        on_change: Callable[[CircuitState, CircuitState], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._on_change = on_change
        self._clock = clock
        self._state = CircuitState.CLOSED
        self._consecutive = 0
        self._results: deque[bool] = deque(maxlen=settings.window)
        self._opened_at = 0.0
        self._probing = False

    @property
    def state(self) -> CircuitState:
        return self._state

    @property
    def observed_state(self) -> CircuitState:
        """The state as an operator should see it now, calls or not: once `open_seconds` have
        passed, an open circuit lets the next call through as a probe, so it is half-open
        even while no call has come to move it (the gauge reads this at scrape time)."""
        if (
            self._state is CircuitState.OPEN
            and self._clock() - self._opened_at >= self._settings.open_seconds
        ):
            return CircuitState.HALF_OPEN
        return self._state

    def retry_after(self) -> int:
        remaining = self._opened_at + self._settings.open_seconds - self._clock()
        return max(1, math.ceil(remaining))

    def before_call(self) -> None:
        """Raise CircuitOpen when no call may be made now; else reserve the call."""
        if self._state is CircuitState.OPEN:
            if self._clock() - self._opened_at < self._settings.open_seconds:
                raise CircuitOpen(
                    "the upstream circuit is open after repeated failures",
                    retry_after=self.retry_after(),
                )
            self._move(CircuitState.HALF_OPEN)
        if self._state is CircuitState.HALF_OPEN:
            if self._probing:
                raise CircuitOpen("the upstream circuit is probing", retry_after=1)
            self._probing = True

    def record(self, *, failed: bool) -> None:
        if self._state is CircuitState.HALF_OPEN:
            self._probing = False
            if failed:
                self._open()
            else:
                self._results.clear()
                self._consecutive = 0
                self._move(CircuitState.CLOSED)
            return
        self._results.append(failed)
        self._consecutive = self._consecutive + 1 if failed else 0
        if self._state is CircuitState.CLOSED and failed and self._should_open():
            self._open()

    def release(self) -> None:
        """A reserved call ended without a verdict (cancelled): let another probe go."""
        if self._state is CircuitState.HALF_OPEN:
            self._probing = False

    def _should_open(self) -> bool:
        s = self._settings
        if self._consecutive >= s.failure_threshold:
            return True
        calls = len(self._results)
        return calls >= s.min_calls and sum(self._results) / calls >= s.failure_ratio

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._move(CircuitState.OPEN)

    def _move(self, new: CircuitState) -> None:
        old, self._state = self._state, new
        if old is not new and self._on_change is not None:
            self._on_change(old, new)
