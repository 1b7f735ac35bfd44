"""The one line per request, and the buffered writer every line on stdout goes through.

The access line is built from a fixed, allow-listed set of fields (a msgspec Struct: nothing
else can get in, so there is nothing to redact) and encoded by msgspec, with a timestamp whose
date and time are formatted once per second. It is the line structlog used to write (same
fields, same JSON shape), for about a tenth of the CPU.

`LogSink` owns stdout for the whole process: the access lines, and structlog's and the standard
library's lines (which keep their processors and the redaction step; see proxy.observe.logs). Lines
written on the event loop are buffered and written together, FLUSH_SECONDS after the first of
them or when the buffer reaches `flush_bytes`. A slow or stuck stdout (a full pipe nobody reads)
never blocks the loop: the bytes not yet written are bounded by `max_bytes`, lines beyond it
are dropped and counted (`order_proxy_log_lines_dropped_total`), and a `log_lines_dropped`
warning says how many once output flows again. Lines written outside the loop (start-up, other
threads) are written at once, under the same bound.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import io
import logging
import os
import stat
import threading
import time
from contextvars import ContextVar
from queue import SimpleQueue
from typing import TextIO

import msgspec

# The request being handled, for every other log line written meanwhile (see proxy.observe.logs).
REQUEST_ID: ContextVar[str | None] = ContextVar("order_proxy_request_id", default=None)

DEFAULT_MAX_BYTES = 1 << 20  # 1 MiB of lines not yet written: beyond it, lines are dropped
DEFAULT_FLUSH_BYTES = 64 << 10  # hand the buffer over early when it is this large
# Lines written on the loop wait at most this long. Measured: one write(2) per loop turn costs
# ~10 us of CPU, and under load a turn often carries only one or two requests; a short timer
# makes it one write per ~10 ms of lines instead (bench.accessline_micro --per-turn 1).
FLUSH_SECONDS = 0.01

_dropped_total = 0  # every line any sink of this process dropped (read by the metrics)


def dropped_total() -> int:
    return _dropped_total


class AccessLine(msgspec.Struct, omit_defaults=True):
    """The canonical request line: exactly these fields, nothing else (allow-list by type)."""

    request_id: str
    event: str
    method: str
    route: str
    status: int
    duration_ms: float
    level: str
    timestamp: str
    cache: str | None = None
    merchant_id: str | None = None
    order_id: str | None = None
    order_status: str | None = None
    upstream_status: int | None = None
    error_code: str | None = None
    upstream_ms: float | None = None
    coalesced: bool = False
    path: str | None = None
    trace_id: str | None = None


_encode = msgspec.json.Encoder().encode
_now = time.time
_second = -1
_prefix = ""


def timestamp() -> str:
    """UTC, ISO 8601 with microseconds and a Z, as structlog's TimeStamper(fmt="iso") writes;
    the date and time part is formatted once per second."""
    global _second, _prefix  # noqa: PLW0603 - a per-process cache of one formatted second
    now = _now()
    second = int(now)
    if second != _second:
        _prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second = second
    # %-formatting: about half the cost of an f-string with a format spec, on every line.
    return "%s.%06dZ" % (_prefix, (now - second) * 1_000_000)  # noqa: UP031


def milliseconds(seconds: float) -> float:
    """A duration for the log: milliseconds, to the microsecond (cheaper than round())."""
    return int(seconds * 1_000_000 + 0.5) / 1000


def encode_line(line: AccessLine) -> bytes:
    return _encode(line) + b"\n"


def _fileno(stream: TextIO) -> int | None:
    try:
        return stream.fileno()
    except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
        return None


# How the buffered lines reach the stream, by what the stream is:
FILE = "file"  # a regular file or /dev/null: write(2) never waits for a reader; write per turn
NONBLOCKING = "nonblocking"  # a pipe or terminal, reopened non-blocking: written when it can
THREAD = "thread"  # anything else (a socket): a writer thread does the blocking write(2)
DIRECT = "direct"  # no file descriptor (io.StringIO in tests): written at once
PIPE_BUF = 4096  # writes up to this size to a pipe are atomic: whole lines, never interleaved


def _open_nonblocking(fd: int) -> int | None:
    """A new open file description of the same pipe or terminal, non-blocking (so the flag is
    ours alone: the inherited descriptor, shared with other processes, stays as it was)."""
    try:
        return os.open(f"/proc/self/fd/{fd}", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None


def _mode(fd: int | None) -> tuple[str, int | None]:
    if fd is None:
        return DIRECT, None
    try:
        st_mode = os.fstat(fd).st_mode
    except OSError:
        return THREAD, None
    if stat.S_ISREG(st_mode) or (stat.S_ISCHR(st_mode) and not os.isatty(fd)):
        return FILE, None
    if stat.S_ISFIFO(st_mode) or os.isatty(fd):
        own = _open_nonblocking(fd)
        if own is not None:
            return NONBLOCKING, own
    return THREAD, None


class LogSink:
    """Bounded, buffered writing of whole lines to one stream, never blocking the event loop.

    Lines written on the loop are buffered and written FLUSH_SECONDS after the first of them
    (or when `flush_bytes` are buffered). A regular file takes them at once. A pipe or terminal is
    written through a non-blocking descriptor of our own: what it does not take waits, bounded
    by `max_bytes`, for the loop to say it is writable; lines beyond the bound are dropped and
    counted. A socket gets a writer thread. A stream without a file descriptor (an io.StringIO
    in tests) is written to at once.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        flush_bytes: int = DEFAULT_FLUSH_BYTES,
    ) -> None:
        self._stream = stream
        self._fd = _fileno(stream)
        self.mode, self._nbfd = _mode(self._fd)
        self._pending = bytearray()  # NONBLOCKING: bytes the pipe has not taken yet
        self._watching: asyncio.AbstractEventLoop | None = None
        self._max = max_bytes
        self._flush_bytes = min(flush_bytes, max_bytes)
        self._buf: list[bytes] = []
        self._size = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        # Bytes handed to the writer thread and bytes it has written: each is changed by one
        # side only (under _lock for the first), so their difference is what is in flight.
        self._submitted = 0
        self._written = 0
        self._lock = threading.Lock()
        self._queue: SimpleQueue[bytes | None] = SimpleQueue()
        self._thread: threading.Thread | None = None
        self.dropped = 0
        self._reported = 0
        self._timer: asyncio.TimerHandle | None = None

    def _timed_flush(self) -> None:
        self._timer = None
        self.flush()

    @property
    def pending_bytes(self) -> int:
        return self._size + len(self._pending) + self._submitted - self._written

    def write(self, data: bytes) -> None:
        """Queue whole lines (ending in a newline); drop and count them if the bound is full."""
        if self._fd is None:
            self._stream.write(data.decode("utf-8", "replace"))
            return
        if self._size + len(self._pending) + self._submitted - self._written + len(data) > (
            self._max
        ):
            self._drop()
            return
        loop = asyncio._get_running_loop()
        if loop is None:
            self._submit(data)
            return
        if self._loop is not loop:
            # The first line on this loop (or a new loop): anything left from another one
            # goes first.
            self.flush()
            self._timer = None
            with self._lock:
                self._unwatch()
                self._loop = loop
                if self._pending:
                    self._watch()
        if self._timer is None:
            self._timer = loop.call_later(FLUSH_SECONDS, self._timed_flush)
        self._buf.append(data)
        self._size += len(data)
        if self._size >= self._flush_bytes:
            self.flush()

    def write_line(self, data: bytes) -> None:
        """`write` for the access line, on the loop: while a flush is already scheduled on it,
        nothing is waiting to be written and the buffer has room, just append."""
        size = self._size + len(data)
        if self._timer is None or size >= self._flush_bytes or self._pending or self._thread:
            self.write(data)
            return
        self._buf.append(data)
        self._size = size

    def write_text(self, text: str) -> None:
        self.write(text.encode("utf-8", "replace"))

    def _drop(self) -> None:
        global _dropped_total  # noqa: PLW0603 - one process-wide count for the metric
        self.dropped += 1
        _dropped_total += 1

    def flush(self) -> None:
        """Write what is buffered (FLUSH_SECONDS after the first line, or when full)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._buf:
            chunk = b"".join(self._buf)
            self._buf.clear()
            self._size = 0
            self._submit(chunk)

    def _drop_report(self) -> bytes:
        count = self.dropped - self._reported
        self._reported = self.dropped
        line = {
            "event": "log_lines_dropped",
            "dropped": count,
            "dropped_total": self.dropped,
            "detail": "stdout did not keep up; these log lines were not written",
            "level": "warning",
            "logger": "proxy.logs",
            "timestamp": timestamp(),
        }
        return _encode(line) + b"\n"

    def _submit(self, chunk: bytes) -> None:
        if self.mode == FILE:
            with self._lock:
                self._write_all(self._fd_checked(), chunk)
            return
        if self.mode == NONBLOCKING:
            with self._lock:
                self._pending += chunk
                self._drain()
            return
        with self._lock:
            self._submitted += len(chunk)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="order-proxy-log-writer", daemon=True
                )
                self._thread.start()
        self._queue.put(chunk)

    def _run(self) -> None:
        fd = self._fd
        assert fd is not None
        while True:
            chunk = self._queue.get()
            if chunk is None:
                return
            self._write_all(fd, chunk)
            self._written += len(chunk)
            if self.dropped != self._reported and self._queue.empty():
                # Caught up after dropping lines: say how many (the metric counts them too).
                self._write_all(fd, self._drop_report())

    def _write_all(self, fd: int, chunk: bytes) -> None:
        view = memoryview(chunk)
        try:
            while view:
                view = view[os.write(fd, view) :]
        except BlockingIOError:
            # A non-blocking stdout set by someone else: wait until it takes more.
            self._wait_writable(fd)
            with contextlib.suppress(OSError):
                while view:
                    view = view[os.write(fd, view) :]
        except OSError:
            pass  # stdout closed: nothing to write to; keep draining the queue

    def _nbfd_checked(self) -> int:
        assert self._nbfd is not None
        return self._nbfd

    def _fd_checked(self) -> int:
        assert self._fd is not None
        return self._fd

    def _drain(self) -> None:
        """NONBLOCKING, under _lock: write whole lines, at most PIPE_BUF at a time, until the
        pipe is full; then have the loop call back when it is writable."""
        fd = self._nbfd
        assert fd is not None
        pending = self._pending
        while pending:
            end = pending.rfind(b"\n", 0, PIPE_BUF) + 1
            if end == 0:  # one line longer than PIPE_BUF: as much of it as the pipe takes
                end = len(pending)
            try:
                written = os.write(fd, pending[:end])
            except BlockingIOError:
                break
            except OSError:
                pending.clear()  # stdout closed: nothing to write to
                break
            del pending[:written]
        if pending:
            self._watch()
        else:
            self._unwatch()
            if self.dropped != self._reported:
                pending += self._drop_report()
                self._drain()

    def _watch(self) -> None:
        loop = self._loop
        if self._watching is not None or loop is None or loop.is_closed():
            return
        self._watching = loop
        fd = self._nbfd_checked()
        if asyncio._get_running_loop() is loop:
            loop.add_writer(fd, self._writable)
        else:
            loop.call_soon_threadsafe(functools.partial(loop.add_writer, fd, self._writable))

    def _unwatch(self) -> None:
        loop, self._watching = self._watching, None
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.remove_writer(self._nbfd_checked())

    def _writable(self) -> None:
        with self._lock:
            self._drain()

    @staticmethod
    def _wait_writable(fd: int) -> None:
        import select  # noqa: PLC0415 - only on the rare non-blocking stdout

        select.select([], [fd], [], 1.0)

    def close(self, timeout: float = 2.0) -> None:
        """Write what is left (waiting at most `timeout` for a slow stdout)."""
        self.flush()
        if self.mode == NONBLOCKING:
            deadline = time.monotonic() + timeout
            with self._lock:
                self._unwatch()
                self._loop = None  # no loop to call back any more: wait here, bounded
                while self._pending and time.monotonic() < deadline:
                    self._wait_writable(self._nbfd_checked())
                    self._drain()
            return
        thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout)
            self._thread = None
            self._queue = SimpleQueue()


class SinkFile(io.TextIOBase):
    """A text stream writing through a LogSink: for structlog's WriteLogger and logging's
    StreamHandler, which both write one whole line per call."""

    def __init__(self, sink: LogSink, stream: TextIO) -> None:
        super().__init__()
        self._sink = sink
        self._stream = stream

    def write(self, text: str) -> int:
        self._sink.write_text(text)
        return len(text)

    def flush(self) -> None:
        return None

    def isatty(self) -> bool:
        return self._stream.isatty()

    def writable(self) -> bool:
        return True


_SINK: LogSink | None = None
# Set by proxy.observe.logs.configure_logging: JSON access lines through the fast path (else through
# structlog, e.g. LOG_FORMAT=console), and the level that decides which lines are written.
_fast = False
_level = logging.INFO


def configure(*, json_lines: bool, level: int) -> None:
    global _fast, _level  # noqa: PLW0603 - process-wide logging configuration
    _fast = json_lines
    _level = level


def fast_sink(level: int) -> LogSink | None:
    """The sink to write a JSON access line of `level` to, or None: filtered out (returns None
    too when the fast path is off: see `enabled`)."""
    if _fast and level >= _level:
        return _SINK
    return None


def fast_path() -> bool:
    return _fast and _SINK is not None


def install_sink(sink: LogSink | None) -> None:
    """Make `sink` the process's stdout writer (closing the one it replaces)."""
    global _SINK
    old, _SINK = _SINK, sink
    if old is not None and old is not sink:
        old.close()
    if sink is not None and not _atexit_registered:
        _register_atexit()


_atexit_registered = False


def _register_atexit() -> None:
    global _atexit_registered  # noqa: PLW0603
    _atexit_registered = True

    def close_sink() -> None:
        if _SINK is not None:
            _SINK.close()

    atexit.register(close_sink)


def sink() -> LogSink | None:
    return _SINK
