"""A stdio transport for our MCP servers that reads and writes the pipes on the event loop.

::

    client ══ pipe ══► fd 0 ─dup─► private fd ── loop.connect_read_pipe ──► lines ──┐
                                                                               SDK stdio_server
    client ◄═ pipe ══ fd 1 ─dup─► private fd ◄─ loop.connect_write_pipe ◄─ JSON ──┘  (validation,
                                                                                    framing)
    fd 0 → /dev/null, fd 1 → stderr while serving (a stray print cannot reach the wire)

The SDK's own ``stdio_server()`` wraps stdin and stdout in ``anyio.wrap_file``, so every
line read, every write and every flush is a hop to a worker thread and back: three per tool
call, about a third of the built-in server's CPU per call when a burst of calls arrives
(measured in docs/benchmarks.md, "Concurrency"). Pipes and sockets can be watched by the
event loop instead; that is all this module changes. The SDK's ``stdio_server`` still does
the message parsing and framing: it takes the two objects below as its ``stdin``/``stdout``.

Only pipes and sockets take this path (what every MCP client gives a stdio server). A
terminal or a regular file on fd 0/1 (someone typing JSON-RPC by hand, or a redirect)
keeps the SDK's transport: making a terminal non-blocking would leak into the shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import stat
from collections.abc import AsyncIterator
from typing import Any

import anyio
from mcp.server import MCPServer
from mcp.server.stdio import stdio_server

#: Bytes the reader buffers before handing over part of a long line (lines of any length
#: are read whole; this only bounds each step).
_CHUNK = 1 << 20


def can_use_pipes(*fds: int) -> bool:
    """True when every fd is a pipe or a socket (what the event loop can watch)."""
    for fd in fds:
        try:
            mode = os.fstat(fd).st_mode
        except OSError:
            return False
        if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
            return False
    return True


class PipeLines:
    """Lines of a pipe, as ``str``, for ``async for`` (what ``stdio_server`` reads)."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader

    def __aiter__(self) -> PipeLines:
        return self

    async def __anext__(self) -> str:
        parts: list[bytes] = []
        while True:
            try:
                parts.append(await self._reader.readuntil(b"\n"))
                break
            except asyncio.LimitOverrunError as exc:
                # A line longer than the buffer: take what is there and keep reading.
                parts.append(await self._reader.readexactly(exc.consumed))
            except asyncio.IncompleteReadError as exc:
                # End of input; a last line without its newline still counts.
                if exc.partial:
                    parts.append(exc.partial)
                if not parts:
                    raise StopAsyncIteration from None
                break
        return b"".join(parts).decode("utf-8", errors="replace")


class PipeWriter:
    """``write``/``flush`` coroutines over a pipe (what ``stdio_server`` writes to).

    A client that goes away while a reply is on its way (measured: ``octopussy ask``
    exiting as its task ended) closes the pipe under the write; that is the end of the
    session, not a crash. It surfaces as ``anyio.ClosedResourceError``, which the SDK's
    writer task takes as its end, so the server stops quietly when stdin ends too.
    """

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer

    async def write(self, text: str) -> None:
        if self._writer.transport.is_closing():
            raise anyio.ClosedResourceError("the client closed the connection")
        self._writer.write(text.encode("utf-8"))

    async def flush(self) -> None:
        try:
            await self._writer.drain()
        except ConnectionError as exc:
            raise anyio.ClosedResourceError("the client closed the connection") from exc


def _private_copy(fd: int, divert_to: int) -> int:
    """Duplicate ``fd`` above 2 (close-on-exec) and point ``fd`` itself at ``divert_to``."""
    private = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    os.dup2(divert_to, fd)
    return private


@contextlib.asynccontextmanager
async def pipe_stdio_server() -> AsyncIterator[tuple[Any, Any]]:
    """Like the SDK's ``stdio_server()``, with the pipes on the event loop.

    Yields the SDK's ``(read_stream, write_stream)``. Falls back to the SDK's transport
    when fd 0 or fd 1 is not a pipe or socket.
    """
    if not can_use_pipes(0, 1):
        async with stdio_server() as streams:
            yield streams
        return
    loop = asyncio.get_running_loop()
    devnull = os.open(os.devnull, os.O_RDONLY)
    try:
        wire_in = _private_copy(0, devnull)
    finally:
        os.close(devnull)
    wire_out = _private_copy(1, 2)
    in_flags = fcntl.fcntl(wire_in, fcntl.F_GETFL)
    out_flags = fcntl.fcntl(wire_out, fcntl.F_GETFL)
    # Each transport gets a duplicate of its wire fd and closes it when done; the private
    # copies stay open until they have been put back on fd 0 and 1 (see finally below).
    in_file = os.fdopen(os.dup(wire_in), "rb", buffering=0)
    out_file = os.fdopen(os.dup(wire_out), "wb", buffering=0)
    try:
        reader = asyncio.StreamReader(limit=_CHUNK, loop=loop)
        read_transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader, loop=loop), in_file
        )
        write_transport, write_protocol = await loop.connect_write_pipe(
            lambda: asyncio.streams.FlowControlMixin(loop=loop), out_file
        )
        writer = asyncio.StreamWriter(write_transport, write_protocol, None, loop)
        try:
            async with stdio_server(
                stdin=PipeLines(reader),  # type: ignore[arg-type]
                stdout=PipeWriter(writer),  # type: ignore[arg-type]
            ) as streams:
                yield streams
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        finally:
            read_transport.close()
            write_transport.close()
    finally:
        for fd, private, flags in ((0, wire_in, in_flags), (1, wire_out, out_flags)):
            with contextlib.suppress(OSError):
                fcntl.fcntl(private, fcntl.F_SETFL, flags)  # blocking again, as it came
                os.dup2(private, fd)
            with contextlib.suppress(OSError):
                os.close(private)


async def run_server_stdio(server: MCPServer) -> None:
    """Serve ``server`` over stdin/stdout until the client closes stdin.

    What ``server.run_stdio_async()`` does, over ``pipe_stdio_server()``.
    """
    lowlevel = server._lowlevel_server
    async with pipe_stdio_server() as (read_stream, write_stream):
        await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())
