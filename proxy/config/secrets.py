"""Secret values that never show themselves, files that hold them (Kubernetes mounts), masking."""

from __future__ import annotations

import os
import time
from pathlib import Path
from urllib.parse import unquote

MASK = "********"


class Secret:
    """A secret string; `repr`, `str` and formatting show only where it came from."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str) -> None:
        self._value = value
        self.source = source

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK}, source={self.source!r})"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __reduce__(self) -> str | tuple[object, ...]:
        # Pickling would copy the value somewhere we cannot see.
        raise TypeError("Secret values cannot be pickled")


def read_secret_file(path: Path) -> str:
    """The secret in a file, without the trailing newline editors and `echo` add."""
    return path.read_text(encoding="utf-8").strip("\r\n")


class SecretFile:
    """A secret read from a file and re-read when the file changes (mounted secrets rotate).

    Kubernetes replaces mounted secret files by swapping a symlink, so a change shows up as a
    new (mtime, inode, size) of the resolved file. The file is looked at no more than once per
    `check_interval` seconds; when it is unreadable or empty the last good value is kept.
    """

    __slots__ = ("_check_interval", "_checked_at", "_signature", "_value", "path")

    def __init__(self, path: Path, initial: Secret, *, check_interval: float = 1.0) -> None:
        self.path = path
        self._value = initial
        self._check_interval = check_interval
        self._checked_at = time.monotonic()
        self._signature = self._stat()

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_ino, st.st_size)

    def get(self) -> Secret:
        now = time.monotonic()
        if now - self._checked_at >= self._check_interval:
            self._checked_at = now
            signature = self._stat()
            if signature is not None and signature != self._signature:
                try:
                    value = read_secret_file(self.path)
                except OSError:
                    value = ""
                if value:
                    self._signature = signature
                    self._value = Secret(value, self._value.source)
        return self._value

    def __repr__(self) -> str:
        return f"SecretFile({str(self.path)!r})"


def mask_url(url: str) -> str:
    """A URL with any password replaced by the mask (what check-config shows): the one in
    its user information, and any `password=` query parameter (redis-py honours one, for
    unix:// sockets too)."""
    scheme, sep, rest = _split_userinfo(_mask_query(url))
    userinfo, at, after = rest
    if not at or ":" not in userinfo:
        return f"{scheme}{sep}{userinfo}{at}{after}"
    user = userinfo.partition(":")[0]
    return f"{scheme}{sep}{user}:{MASK}@{after}"


def shown_url(url: str) -> str:
    """A URL fit for an error line: any user information (which may be a password) and any
    `password=` query parameter masked."""
    scheme, sep, (userinfo, at, after) = _split_userinfo(_mask_query(url))
    if not at:
        return f"{scheme}{sep}{userinfo}{after}"
    return f"{scheme}{sep}{MASK}@{after}"


# Query parameters that carry a secret (matched without regard to case or %-escapes).
_SECRET_PARAMETERS = frozenset({"password", "pass", "pwd", "secret", "token", "auth"})


def _mask_query(url: str) -> str:
    """`url` with the value of every secret query parameter masked. Done first, before the
    user information is looked for: a masked value holds no "@" that could be taken for the
    end of the user information (and show the rest of the password)."""
    head, question, query = url.partition("?")
    if not question:
        return url
    parameters = []
    for parameter in query.split("&"):
        name, equals, _value = parameter.partition("=")
        secret = equals and unquote(name).strip().lower() in _SECRET_PARAMETERS
        parameters.append(f"{name}={MASK}" if secret else parameter)
    return f"{head}?{'&'.join(parameters)}"


def _split_userinfo(url: str) -> tuple[str, str, tuple[str, str, str]]:
    """(scheme, "://", (userinfo, "@", the rest)). The userinfo runs to the last "@", not to
    the first "/": a password holding an unescaped "/" is still all userinfo, never shown."""
    scheme, sep, rest = url.partition("://")
    return scheme, sep, rest.rpartition("@")
