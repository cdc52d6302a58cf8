"""Our built-in server against a real peer: the MCP Inspector CLI (Node), over stdio and
over Streamable HTTP.

The server runs as ``python -m octopussy.mcp.builtin --workspace DIR [--http HOST:PORT]``;
the Inspector gets a temporary HOME (it keeps state in ``~/.mcp-inspector``). The HTTP
server listens on a free port of 127.0.0.1 and is stopped at the end of each test.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
INSPECTOR = REPO / ".cache" / "npm" / "node_modules" / ".bin" / "mcp-inspector"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not INSPECTOR.exists(),
        reason=f"the MCP Inspector CLI is not installed at {INSPECTOR} (run scripts/test-deps)",
    ),
]

TOOLS = {"read_file", "write_file", "edit_file", "list_directory", "search_files", "execute_python"}


@dataclass
class Inspected:
    returncode: int
    payload: dict[str, Any]
    stderr: str


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


@pytest.fixture
def inspector_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "inspector-home"
    home.mkdir()
    return {
        "HOME": str(home),
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "NO_COLOR": "1",
    }


async def inspect(env: dict[str, str], *args: str, timeout: float = 90) -> Inspected:
    process = await asyncio.create_subprocess_exec(
        str(INSPECTOR),
        "--cli",
        "--format",
        "json",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    stdout = out.decode()
    try:
        payload = json.loads(stdout) if stdout.strip() else {}
    except json.JSONDecodeError as exc:
        raise AssertionError(f"not JSON on stdout: {stdout!r}\nstderr: {err.decode()}") from exc
    return Inspected(process.returncode or 0, payload, err.decode())


def server_command(workspace: Path) -> list[str]:
    return [sys.executable, "-m", "octopussy.mcp.builtin", "--workspace", str(workspace)]


def result_text(inspected: Inspected) -> str:
    result = inspected.payload["result"]
    return "".join(block["text"] for block in result["content"] if block["type"] == "text")


# ------------------------------------------------------------------ stdio


async def test_stdio_tools_list_with_strict_schema_checks(
    workspace: Path, inspector_env: dict[str, str]
) -> None:
    listed = await inspect(
        inspector_env, *server_command(workspace), "--method", "tools/list", "--strict"
    )
    assert listed.returncode == 0, listed.stderr
    tools = {tool["name"]: tool for tool in listed.payload["result"]["tools"]}
    assert set(tools) == TOOLS
    assert all(tool["outputSchema"]["type"] == "object" for tool in tools.values())
    assert tools["read_file"]["inputSchema"]["required"] == ["path"]


async def test_stdio_write_then_read(workspace: Path, inspector_env: dict[str, str]) -> None:
    server = server_command(workspace)
    written = await inspect(
        inspector_env,
        *server,
        "--method",
        "tools/call",
        "--tool-name",
        "write_file",
        "--tool-arg",
        "path=notes/hello.txt",
        "--tool-arg",
        "content=hello from the inspector",
    )
    assert written.returncode == 0, written.stderr
    assert written.payload["result"]["isError"] is False
    assert written.payload["result"]["structuredContent"] == {
        "path": "notes/hello.txt",
        "bytes_written": 24,
        "created": True,
    }
    assert (workspace / "notes" / "hello.txt").read_text() == "hello from the inspector"
    read = await inspect(
        inspector_env,
        *server,
        "--method",
        "tools/call",
        "--tool-name",
        "read_file",
        "--tool-arg",
        "path=notes/hello.txt",
    )
    assert read.returncode == 0, read.stderr
    assert "     1\thello from the inspector" in result_text(read)
    assert read.payload["result"]["structuredContent"]["content"] == "hello from the inspector\n"


async def test_stdio_input_mistake_is_a_tool_error(
    workspace: Path, inspector_env: dict[str, str]
) -> None:
    refused = await inspect(
        inspector_env,
        *server_command(workspace),
        "--method",
        "tools/call",
        "--tool-name",
        "read_file",
        "--tool-arg",
        "path=../../etc/passwd",
    )
    # The Inspector exits non-zero for isError, but the call itself succeeded: a result,
    # not a JSON-RPC error.
    assert refused.returncode != 0
    assert refused.payload["result"]["isError"] is True
    assert "outside the workspace" in result_text(refused)


async def test_stdio_generated_tool_listed_and_called(
    workspace: Path, inspector_env: dict[str, str], tmp_path: Path
) -> None:
    from octopussy.mcp.generated import GeneratedToolStore, ToolRecord

    store = GeneratedToolStore(tmp_path / "generated_tools")
    code = (
        "def celsius_to_fahrenheit(celsius: float) -> float:\n"
        '    """Convert degrees Celsius to degrees Fahrenheit."""\n'
        "    return celsius * 9 / 5 + 32\n"
    )
    store.deploy(
        ToolRecord(name="celsius_to_fahrenheit", version=1, description="C to F", code=code)
    )
    server = [*server_command(workspace), "--generated-tools", str(store.directory)]
    listed = await inspect(inspector_env, *server, "--method", "tools/list", "--strict")
    assert listed.returncode == 0, listed.stderr
    tools = {tool["name"]: tool for tool in listed.payload["result"]["tools"]}
    assert set(tools) == {*TOOLS, "celsius_to_fahrenheit"}
    assert tools["celsius_to_fahrenheit"]["inputSchema"]["required"] == ["celsius"]
    called = await inspect(
        inspector_env,
        *server,
        "--method",
        "tools/call",
        "--tool-name",
        "celsius_to_fahrenheit",
        "--tool-arg",
        "celsius=100",
    )
    assert called.returncode == 0, called.stderr
    assert called.payload["result"]["isError"] is False
    assert "212" in result_text(called)


# ------------------------------------------------------------------ Streamable HTTP


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def wait_listening(port: int, process: asyncio.subprocess.Process, within: float) -> None:
    deadline = time.monotonic() + within
    while True:
        if process.returncode is not None:
            raise AssertionError(f"the HTTP server exited with {process.returncode}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing listened on 127.0.0.1:{port}") from None
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return


@asynccontextmanager
async def http_server(workspace: Path) -> AsyncIterator[str]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        *server_command(workspace),
        "--http",
        f"127.0.0.1:{port}",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await wait_listening(port, process, within=30)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()


async def test_http_list_call_write_read(workspace: Path, inspector_env: dict[str, str]) -> None:
    async with http_server(workspace) as url:
        listed = await inspect(inspector_env, url, "--method", "tools/list")
        assert listed.returncode == 0, listed.stderr
        assert {tool["name"] for tool in listed.payload["result"]["tools"]} == TOOLS
        ran = await inspect(
            inspector_env,
            url,
            "--method",
            "tools/call",
            "--tool-name",
            "execute_python",
            "--tool-args-json",
            json.dumps({"code": "open('made.txt', 'w').write('by python')\nprint(6 * 7)"}),
        )
        assert ran.returncode == 0, ran.stderr
        structured = ran.payload["result"]["structuredContent"]
        assert structured["stdout"] == "42\n"
        assert structured["exit_code"] == 0
        # The newer protocol era over the same server: read back what the code wrote.
        read = await inspect(
            inspector_env,
            "--protocol-era",
            "modern",
            url,
            "--method",
            "tools/call",
            "--tool-name",
            "read_file",
            "--tool-arg",
            "path=made.txt",
        )
        assert read.returncode == 0, read.stderr
        assert read.payload["result"]["structuredContent"]["content"] == "by python\n"
