"""A TCP relay on loopback in front of another port, able to partition or reset the link.

    relay = await Relay(redis.port).start()    # connect to relay.port instead of redis.port
    relay.cut()      # black hole: nothing is forwarded either way, sockets stay open (no RST)
    relay.restore()  # forward again; bytes held back during the cut are delivered now
    relay.reset()    # abort every current connection with a RST; new ones still work
    await relay.close()

A cut behaves like a network partition under TCP: the relay stops reading, so what a peer
sends waits in socket buffers (and in the relay) and arrives, late, once the link is
restored; nothing is lost or reordered. New connections are accepted during a cut (the
kernel completes the handshake) but carry nothing until the link is restored.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

_CHUNK = 65536


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with a RST (SO_LINGER 0), as a crashed peer or a middlebox would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Link:
    """One relayed connection: the caller's socket and ours to the target."""

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream = upstream

    def abort(self) -> None:
        _abort(self.client)
        _abort(self.upstream)


class Relay:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target_host = target_host
        self.target_port = target_port
        self._open = asyncio.Event()
        self._open.set()
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[object]] = set()
        self.port = 0
        self.accepted = 0

    @property
    def is_cut(self) -> bool:
        return not self._open.is_set()

    def url(self, db: int = 0) -> str:
        """A redis:// URL through the relay (when the target is a Redis)."""
        return f"redis://127.0.0.1:{self.port}/{db}"

    async def start(self) -> Relay:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def cut(self) -> None:
        self._open.clear()

    def restore(self) -> None:
        self._open.set()

    def reset(self) -> None:
        for link in list(self._links):
            link.abort()
        self._links.clear()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.restore()  # wake pumps held by a cut, so they see their sockets go
        self.reset()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=2)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> Relay:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            _abort(writer)
            return
        link = _Link(writer, up_writer)
        self._links.add(link)
        try:
            await asyncio.gather(
                self._pump(reader, up_writer, link), self._pump(up_reader, writer, link)
            )
        finally:
            self._links.discard(link)
            for side in (writer, up_writer):
                side.close()

    async def _pump(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, link: _Link
    ) -> None:
        """Copy one direction; while cut, neither read nor write (bytes wait, not lost)."""
        try:
            while True:
                await self._open.wait()
                data = await src.read(_CHUNK)
                await self._open.wait()  # a cut during the read holds this chunk back
                if not data:
                    if dst.can_write_eof() and not dst.is_closing():
                        dst.write_eof()
                    return
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            # One side failed: the other sees it fail too, as through a real middlebox.
            link.abort()
