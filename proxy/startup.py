"""Start-up failures as one line naming the setting (`serve` exits 2), not a traceback."""

from __future__ import annotations

import errno
import socket

_REASONS = {
    errno.EADDRINUSE: "address already in use (another process listens there)",
    errno.EACCES: "permission denied (ports below 1024 need privileges)",
    errno.EADDRNOTAVAIL: "address not available (no interface of this host has it)",
}


class StartupError(Exception):
    """`serve` cannot start for a reason an operator fixes in the settings or the host."""


def listen_failed(
    exc: OSError | UnicodeError, host_setting: str, host: str, port_setting: str, port: int
) -> StartupError:
    """The one line for a socket that could not be bound, naming the settings that chose it."""
    if isinstance(exc, UnicodeError):
        # The IDNA codec refuses the name (e.g. a label over 63 characters): it cannot resolve.
        reason = "unknown host (not a valid host name)"
    elif isinstance(exc, socket.gaierror):
        reason = f"unknown host ({exc.strerror or 'the name does not resolve'})"
    else:
        reason = _REASONS.get(exc.errno or 0) or (exc.strerror or type(exc).__name__).lower()
    return StartupError(f"cannot listen on {host_setting}={host} {port_setting}={port}: {reason}")
