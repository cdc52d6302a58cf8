"""Generated tools in the built-in server: loaded, watched, called in the real sandbox.

Every server here is the real ``build_builtin_server`` with a real ``generated_tools``
directory, driven by the SDK's client (both protocol eras). Changes are made the way the
tool agent and ``octopussy tools`` make them: through ``GeneratedToolStore``.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp_types import CallToolResult, TextContent, ToolListChangedNotification

from mcp import Client
from mcp_session import held_client
from octopussy.config import MCPSettings, SandboxSettings
from octopussy.mcp.builtin import build_builtin_server
from octopussy.mcp.generated import (
    FLAG_AFTER,
    GeneratedToolStore,
    ToolRecord,
    run_tool,
    same_value,
)
from octopussy.mcp.sandbox import Sandbox

needs_bwrap = pytest.mark.skipif(
    shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed"
)

C2F = '''def celsius_to_fahrenheit(celsius: float) -> float:
    """Convert degrees Celsius to degrees Fahrenheit."""
    return celsius * 9 / 5 + 32
'''


def record(name: str, code: str, version: int = 1, **extra: Any) -> ToolRecord:
    return ToolRecord(
        name=name, version=version, description=f"{name} v{version}", code=code, **extra
    )


def text(result: CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


class Heard:
    """A client's message handler that remembers list_changed notifications."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.changed = asyncio.Event()

    async def __call__(self, message: Any) -> None:
        self.messages.append(message)
        if isinstance(message, ToolListChangedNotification):
            self.changed.set()

    async def wait(self, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            await self.changed.wait()


@pytest.fixture
def store(tmp_path: Path) -> GeneratedToolStore:
    return GeneratedToolStore(tmp_path / "generated_tools")


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


def server_for(workspace: Path, store: GeneratedToolStore) -> Any:
    return build_builtin_server(
        workspace=workspace,
        sandbox=SandboxSettings(timeout_seconds=5),
        mcp=MCPSettings(),
        generated_tools=store.directory,
    )


@pytest.fixture(params=["auto", "legacy"])
async def connected(
    request: pytest.FixtureRequest, workspace: Path, store: GeneratedToolStore
) -> AsyncIterator[tuple[Client, list[Any]]]:
    """A client of a server that watches ``store``; the notifications it received."""
    received: list[Any] = []

    async def on_message(message: Any) -> None:
        received.append(message)

    server = server_for(workspace, store)
    async with held_client(
        server, timeout=30, mode=request.param, message_handler=on_message
    ) as client:
        yield client, received


async def names(client: Client) -> set[str]:
    return {tool.name for tool in (await client.list_tools()).tools}


# ----------------------------------------------------------------------------- the store


def test_deploy_keeps_every_version_and_rollback_goes_back(store: GeneratedToolStore) -> None:
    store.deploy(record("c2f", C2F.replace("celsius_to_fahrenheit", "c2f")))
    assert store.next_version("c2f") == 2
    store.deploy(record("c2f", C2F.replace("celsius_to_fahrenheit", "c2f"), version=2))
    assert [r.version for r in store.versions("c2f")] == [1, 2]
    assert store.require("c2f").version == 2
    back = store.rollback("c2f")
    assert back.version == 1
    assert back.rolled_back_from == 2
    assert store.require("c2f").version == 1
    assert store.next_version("c2f") == 3  # a new version never reuses a number
    with pytest.raises(Exception, match="no earlier version"):
        store.rollback("c2f")
    store.set_enabled("c2f", False)
    assert store.require("c2f").enabled is False
    store.remove("c2f")
    assert store.names() == []
    assert store.get("c2f") is None
    assert [r.version for r in store.versions("c2f")] == [1, 2]  # kept for the record


def test_call_stats_flag_a_tool_failing_again_and_again(store: GeneratedToolStore) -> None:
    store.deploy(record("t", 'def t(x: int) -> int:\n    """D."""\n    return x\n'))
    for _ in range(FLAG_AFTER):
        assert not store.stats("t").flagged
        store.record_call("t", 1, ok=False, error="ValueError: no")
    stats = store.stats("t")
    assert stats.flagged
    assert stats.failures == FLAG_AFTER
    assert stats.last_error == "ValueError: no"
    store.record_call("t", 1, ok=True)
    assert not store.stats("t").flagged
    assert store.stats("t").calls == FLAG_AFTER + 1


def test_same_value_tolerates_float_noise_only() -> None:
    assert same_value(98.60000000000001, 98.6)
    assert same_value(212, 212.0)
    assert same_value([1.0, {"a": 2}], [1, {"a": 2.0000000001}])
    assert not same_value(212.1, 212)
    assert not same_value(True, 1)
    assert not same_value("1", 1)


# ----------------------------------------------------------------------------- the sandbox


@needs_bwrap
async def test_harness_reports_results_errors_and_hangs(workspace: Path) -> None:
    sandbox = Sandbox(SandboxSettings(timeout_seconds=5), workspace)
    code = '''def f(x: int) -> int:
    """D."""
    print("thinking about", x)
    if x < 0:
        raise ValueError("negative")
    if x == 99:
        return {1, 2}
    while x == 7:
        pass
    return x * 2
'''
    report = await run_tool(sandbox, name="f", code=code, calls=[{"x": 2}, {"x": -1}, {"x": 99}])
    assert report.isolated
    assert report.error is None
    assert [o.result for o in report.outcomes] == [4, None, None]
    assert "ValueError: negative (line 5" in (report.outcomes[1].error or "")
    assert "not a JSON value" in (report.outcomes[2].error or "")
    assert "thinking about 2" in report.printed
    hung = await run_tool(
        sandbox, name="f", code=code, calls=[{"x": 1}, {"x": 7}], timeout_seconds=1
    )
    assert hung.error is not None
    assert "did not finish within the 1 s" in hung.error
    assert '{"x": 7}' in hung.error
    broken = await run_tool(sandbox, name="f", code="x = 1 / 0\n", calls=[{}])
    assert broken.error is not None
    assert "ZeroDivisionError" in broken.error


class _Listener:
    """A TCP server on host loopback counting connections (what a tool tries to reach)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.sendall(b"pong")
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[_Listener]:
    server = _Listener()
    yield server
    server.close()


PING = '''def ping(port: int) -> str:
    """Read what the server on this port says."""
    import socket
    with socket.create_connection(("127.0.0.1", port), timeout=3) as conn:
        return conn.recv(16).decode()
'''


@needs_bwrap
async def test_network_only_for_a_tool_allowed_it(workspace: Path, listener: _Listener) -> None:
    sandbox = Sandbox(SandboxSettings(timeout_seconds=10), workspace)
    closed = await run_tool(sandbox, name="ping", code=PING, calls=[{"port": listener.port}])
    assert "ConnectionRefusedError" in (closed.outcomes[0].error or ""), closed
    assert listener.accepted == 0  # the sandbox has its own, empty loopback
    opened = await run_tool(
        sandbox, name="ping", code=PING, calls=[{"port": listener.port}], network=True
    )
    assert opened.outcomes[0].result == "pong", opened
    assert listener.accepted == 1


# ----------------------------------------------------------------------------- live serving


@needs_bwrap
async def test_tools_are_served_and_run_in_the_sandbox(
    connected: tuple[Client, list[Any]], store: GeneratedToolStore
) -> None:
    client, _ = connected
    assert "celsius_to_fahrenheit" not in await names(client)
    store.deploy(record("celsius_to_fahrenheit", C2F))
    # tools/list rescans first: no waiting for the poll.
    tools = {t.name: t for t in (await client.list_tools()).tools}
    tool = tools["celsius_to_fahrenheit"]
    assert tool.input_schema["properties"]["celsius"]["type"] == "number"
    assert "(generated tool, v1)" in (tool.description or "")
    result = await client.call_tool("celsius_to_fahrenheit", {"celsius": 100})
    assert not result.is_error, text(result)
    assert text(result) == "212.0"
    assert result.structured_content == {"result": 212.0}
    bad = await client.call_tool("celsius_to_fahrenheit", {"celsius": "hot"})
    assert bad.is_error  # validated by the SDK against the schema from the type hints
    assert store.stats("celsius_to_fahrenheit").calls == 1


@needs_bwrap
async def test_tool_code_never_runs_in_the_server(
    connected: tuple[Client, list[Any]], store: GeneratedToolStore, tmp_path: Path
) -> None:
    client, _ = connected
    marker = tmp_path / "touched"
    code = f'''def where(x: int) -> str:
    """Try to write outside the workspace and report the process."""
    import os
    try:
        open({str(marker)!r}, "w").write("x")
        wrote = "wrote"
    except OSError as exc:
        wrote = type(exc).__name__
    return wrote + " " + str(os.getpid())
'''
    store.deploy(record("where", code))
    assert await _has(client, "where")
    result = await client.call_tool("where", {"x": 1})
    assert not result.is_error, text(result)
    _, pid = text(result).split()
    # Outside the workspace the sandbox is read-only (or, under /tmp, a private tmpfs):
    # whatever the code did, the host file system did not change.
    assert not marker.exists()
    assert int(pid) != __import__("os").getpid()


async def _has(client: Client, name: str) -> bool:
    return name in await names(client)


@needs_bwrap
async def test_changes_go_live_without_reconnecting(
    connected: tuple[Client, list[Any]], store: GeneratedToolStore
) -> None:
    client, _received = connected
    store.deploy(record("celsius_to_fahrenheit", C2F))
    assert "celsius_to_fahrenheit" in await names(client)
    wrong = C2F.replace("+ 32", "+ 33")
    store.deploy(record("celsius_to_fahrenheit", wrong, version=2))
    result = await client.call_tool("celsius_to_fahrenheit", {"celsius": 0})
    assert text(result) == "33.0"
    # Rollback: the same session sees v1 again, at once.
    store.rollback("celsius_to_fahrenheit")
    result = await client.call_tool("celsius_to_fahrenheit", {"celsius": 0})
    assert text(result) == "32.0"
    tools = {t.name: t for t in (await client.list_tools()).tools}
    assert "(generated tool, v1)" in (tools["celsius_to_fahrenheit"].description or "")
    store.set_enabled("celsius_to_fahrenheit", False)
    assert "celsius_to_fahrenheit" not in await names(client)
    store.set_enabled("celsius_to_fahrenheit", True)
    assert "celsius_to_fahrenheit" in await names(client)
    store.remove("celsius_to_fahrenheit")
    assert "celsius_to_fahrenheit" not in await names(client)
    gone = await client.call_tool("celsius_to_fahrenheit", {"celsius": 0})
    assert gone.is_error


async def test_the_poll_notifies_legacy_clients(workspace: Path, store: GeneratedToolStore) -> None:
    heard = Heard()
    server = server_for(workspace, store)
    async with held_client(server, mode="legacy", message_handler=heard) as client:
        assert client.server_capabilities.tools is not None
        assert client.server_capabilities.tools.list_changed
        store.deploy(record("celsius_to_fahrenheit", C2F))  # nobody asks: the poll finds it
        await heard.wait()
        assert "celsius_to_fahrenheit" in await names(client)


async def test_the_poll_notifies_subscribed_clients(
    workspace: Path, store: GeneratedToolStore
) -> None:
    server = server_for(workspace, store)
    async with held_client(server, mode="auto") as client:
        event_seen = asyncio.Event()
        ready = asyncio.Event()

        async def listen() -> None:
            async with client.listen(tools_list_changed=True) as subscription:
                ready.set()
                async for _event in subscription:
                    event_seen.set()

        task = asyncio.create_task(listen())
        try:
            async with asyncio.timeout(10):
                await ready.wait()
            store.deploy(record("celsius_to_fahrenheit", C2F))
            async with asyncio.timeout(10):
                await event_seen.wait()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert "celsius_to_fahrenheit" in await names(client)


async def test_bad_files_are_skipped_not_fatal(workspace: Path, store: GeneratedToolStore) -> None:
    store.deploy(record("celsius_to_fahrenheit", C2F))
    store.directory.joinpath("broken.json").write_text("{not json")
    store.directory.joinpath("read_file.json").write_text(
        record("read_file", C2F.replace("celsius_to_fahrenheit", "read_file")).model_dump_json()
    )
    store.directory.joinpath("mismatch.json").write_text(record("mismatch", C2F).model_dump_json())
    server = server_for(workspace, store)
    async with held_client(server) as client:
        listed = await names(client)
    assert "celsius_to_fahrenheit" in listed
    assert "broken" not in listed
    assert "mismatch" not in listed
    assert sum(name == "read_file" for name in listed) <= 1


@needs_bwrap
async def test_repeated_failures_are_counted_for_the_flag(
    connected: tuple[Client, list[Any]], store: GeneratedToolStore
) -> None:
    client, _ = connected
    code = 'def fragile(x: int) -> int:\n    """D."""\n    return 10 // x\n'
    store.deploy(record("fragile", code))
    assert await _has(client, "fragile")
    for _ in range(FLAG_AFTER):
        result = await client.call_tool("fragile", {"x": 0})
        assert result.is_error
        assert "ZeroDivisionError" in text(result)
    stats = store.stats("fragile")
    assert stats.flagged
    assert "ZeroDivisionError" in (stats.last_error or "")
    assert json.loads(text(await client.call_tool("fragile", {"x": 5}))) == 2
    assert not store.stats("fragile").flagged


def test_an_untouched_directory_costs_one_stat(workspace: Path, store: GeneratedToolStore) -> None:
    from octopussy.mcp.generated import GeneratedToolset

    store.deploy(record("celsius_to_fahrenheit", C2F))
    toolset = GeneratedToolset(store, Sandbox(SandboxSettings(), workspace), subscriptions=None)  # type: ignore[arg-type]
    toolset.attach(server_for(workspace, GeneratedToolStore(workspace / "none")))
    assert toolset.sync() is True
    started = time.perf_counter()
    assert toolset.sync() is False
    assert time.perf_counter() - started < 1.0  # sanity only; the point is "False"
    assert set(toolset.tools) == {"celsius_to_fahrenheit"}


@needs_bwrap
async def test_a_result_too_large_for_the_sandbox_says_so(workspace: Path) -> None:
    sandbox = Sandbox(SandboxSettings(timeout_seconds=5, max_output_chars=1000), workspace)
    code = 'def big(n: int) -> str:\n    """D."""\n    return "x" * n\n'
    small = await run_tool(sandbox, name="big", code=code, calls=[{"n": 10}])
    assert small.outcomes[0].result == "x" * 10
    large = await run_tool(sandbox, name="big", code=code, calls=[{"n": 5000}])
    assert large.error is not None
    assert "larger than the sandbox's limit" in large.error
