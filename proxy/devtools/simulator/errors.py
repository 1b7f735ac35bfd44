"""The simulator's one error: a control request it cannot carry out, answered 400 with why."""

from __future__ import annotations


class ControlError(ValueError):
    """A bad control request; `str()` names the problem (the field, what was expected)."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
