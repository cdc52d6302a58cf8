"""The stdio transport that serves our MCP servers from the event loop (no thread hops).

A real server process and the SDK's real stdio client: messages of every size arrive whole,
stray output from a tool never reaches the wire, the process ends when the client closes
its stdin, and fd 0/1 are given back as they came. The line reader is also driven directly
for the edge cases a client may produce (a last line without its newline, lines far longer
than the reader's buffer).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

import pytest

from mcp import Client, StdioServerParameters
from octopussy.mcp import pipes

SERVER = """
import fcntl, json, os, sys
from mcp.server import MCPServer
from octopussy.mcp import pipes

report = sys.argv[1]
server = MCPServer("pipes-test")

@server.tool()
def echo(text: str) -> str:
    return text

@server.tool()
async def noisy() -> str:
    print("stray print")
    sys.stdout.flush()
    os.write(1, b"stray write\\n")
    return "quiet"

def state():
    return {
        str(fd): [os.fstat(fd).st_ino, bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK)]
        for fd in (0, 1)
    }

before = state()
on_the_loop = pipes.can_use_pipes(0, 1)
import anyio
anyio.run(pipes.run_server_stdio, server)
with open(report + ".part", "w") as f:
    json.dump({"before": before, "after": state(), "pipes": on_the_loop}, f)
os.replace(report + ".part", report)
"""


def read_report(report: Path) -> dict[str, Any]:
    """The server writes its report after the client has gone; wait up to 10 s for it."""
    for _ in range(200):
        if report.exists():
            return cast("dict[str, Any]", json.loads(report.read_text()))
        time.sleep(0.05)
    raise AssertionError("the server did not finish after its client closed stdin")


def feed(*chunks: bytes) -> pipes.PipeLines:
    reader = asyncio.StreamReader(limit=64)
    for chunk in chunks:
        reader.feed_data(chunk)
    reader.feed_eof()
    return pipes.PipeLines(reader)


async def lines_of(source: pipes.PipeLines) -> list[str]:
    return [line async for line in source]


async def test_lines_arrive_whole_whatever_their_length() -> None:
    long = "x" * 1000  # far beyond the 64-byte buffer
    got = await lines_of(feed(b"one\n", long.encode() + b"\ntw", b"o\n", "caf\u00e9\n".encode()))
    assert got == ["one\n", long + "\n", "two\n", "caf\u00e9\n"]


async def test_a_last_line_without_newline_still_counts_and_eof_ends() -> None:
    assert await lines_of(feed(b"a\nlast")) == ["a\n", "last"]
    assert await lines_of(feed()) == []


async def test_invalid_utf8_is_replaced_not_fatal() -> None:
    assert await lines_of(feed(b"\xff\xfeok\n")) == ["\ufffd\ufffdok\n"]


def test_only_pipes_and_sockets_take_the_event_loop_path(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    left, right = socket.socketpair()
    with open(tmp_path / "f", "wb") as regular:
        try:
            assert pipes.can_use_pipes(read_end, write_end)
            assert pipes.can_use_pipes(left.fileno())
            assert not pipes.can_use_pipes(regular.fileno())
            assert not pipes.can_use_pipes(read_end, regular.fileno())
        finally:
            os.close(read_end)
            os.close(write_end)
            left.close()
            right.close()
    closed = os.dup(0)
    os.close(closed)
    assert not pipes.can_use_pipes(closed)


async def test_a_real_server_over_pipes() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp, "report.json")
        params = StdioServerParameters(
            command=sys.executable, args=["-c", SERVER, str(report)], env=dict(os.environ)
        )
        big = "é" * 1_500_000 + "\u2603"  # a 3 MB line on the wire, beyond the 1 MB chunk
        async with Client(params) as client:
            results = await asyncio.gather(
                *(client.call_tool("echo", {"text": f"call {i}"}) for i in range(50))
            )
            assert [r.content[0].text for r in results] == [f"call {i}" for i in range(50)]  # type: ignore[union-attr]
            noisy = await client.call_tool("noisy", {})
            assert noisy.content[0].text == "quiet"  # type: ignore[union-attr]
            echoed = await client.call_tool("echo", {"text": big})
            assert echoed.content[0].text == big  # type: ignore[union-attr]
            after_noise = await client.call_tool("echo", {"text": "still framed"})
            assert after_noise.content[0].text == "still framed"  # type: ignore[union-attr]
        state = await asyncio.to_thread(read_report, report)
    assert state["pipes"] is True  # the event-loop path was the one taken
    # The same pipes are back on fd 0 and 1, blocking, as they came.
    assert state["after"] == state["before"]
    assert state["before"]["0"][1] is False


def test_a_client_gone_before_the_reply_ends_the_server_quietly(tmp_path: Path) -> None:
    """Measured in bench_tasks: ``octopussy ask`` exited while a reply was on its way and
    the server died with a ConnectionResetError traceback in the log."""
    report = tmp_path / "report.json"
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(report)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert server.stdin is not None
    assert server.stdout is not None
    server.stdout.close()  # nobody reads the replies any more
    request = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "gone", "version": "0"},
        },
    }
    server.stdin.write(json.dumps(request).encode() + b"\n")
    server.stdin.flush()
    time.sleep(0.5)  # the reply is written into the closed pipe
    server.stdin.close()
    try:
        server.wait(timeout=20)
    finally:
        server.kill()
    assert server.stderr is not None
    stderr = server.stderr.read()
    server.stderr.close()
    assert b"Traceback" not in stderr, stderr.decode(errors="replace")
    assert server.returncode == 0
    assert read_report(report)["pipes"] is True


@pytest.mark.parametrize("mode", ["r", "w"])
def test_the_private_copy_is_close_on_exec(mode: str) -> None:
    read_end, write_end = os.pipe()
    target = read_end if mode == "r" else write_end
    spare = os.dup(target)
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        private = pipes._private_copy(spare, devnull)
        try:
            assert private > 2
            assert not os.get_inheritable(private)
            assert os.fstat(private).st_ino == os.fstat(target).st_ino
            assert os.fstat(spare).st_ino == os.fstat(devnull).st_ino
        finally:
            os.close(private)
    finally:
        for fd in (spare, devnull, read_end, write_end):
            os.close(fd)
