"""MCPRegistry: routing rules on a fake index, then real servers over stdio, HTTP and SSE.

Real peers: our own ``registry_server.py`` (deterministic: crash, runtime tools, sleep, a
bearer-token check), ``mcp-server-time`` from PyPI and ``@modelcontextprotocol/server-
everything`` from npm, each started by the test on loopback. Every wait is bounded; the
process table (``/proc``) is checked after stop, after cancellation and after Ctrl-C.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import mcp_types as types
import pytest

from octopussy.config import load_config
from octopussy.errors import ToolError
from octopussy.mcp.registry import MCPRegistry, ToolResult, _to_result
from octopussy.mcp.servers import ServerSpec, inherited_env, server_specs

REPO = Path(__file__).resolve().parents[2]
OWN_SERVER = Path(__file__).with_name("registry_server.py")
TIME_SERVER = Path(sys.executable).with_name("mcp-server-time")
EVERYTHING = REPO / ".cache" / "npm" / "node_modules" / ".bin" / "mcp-server-everything"
ENV = inherited_env(os.environ)

needs_time = pytest.mark.skipif(not TIME_SERVER.exists(), reason="mcp-server-time not installed")
needs_everything = pytest.mark.skipif(
    not EVERYTHING.exists() or shutil.which("node") is None,
    reason="server-everything or node missing (scripts/test-deps installs them)",
)


# --------------------------------------------------------------------------- helpers


def own(name: str, *extra: str) -> ServerSpec:
    args = (str(OWN_SERVER), "--name", name, *extra)
    return ServerSpec(name, "stdio", command=sys.executable, args=args, env=ENV)


def _stat(pid: int) -> list[bytes] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return raw[raw.rfind(b")") + 2 :].split()


def children_of(pid: int) -> set[int]:
    """Every process whose parent is ``pid``, zombies included (an unreaped child counts)."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))) and int(fields[1]) == pid:
            found.add(int(entry))
    return found


def alive(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] != b"Z"


async def eventually(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.02)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing answers on port {port} after {timeout}s") from None
            await asyncio.sleep(0.05)
        else:
            writer.close()
            return


class Peer:
    """An HTTP server child in its own process group, restartable on the same port."""

    def __init__(self, argv: list[str], port: int, env: dict[str, str] | None = None) -> None:
        self.argv, self.port, self.env = argv, port, env
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            env=self.env,
            start_new_session=True,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await wait_port(self.port)

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            async with asyncio.timeout(5):
                await proc.wait()
        except TimeoutError:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


@asynccontextmanager
async def peer(
    argv: list[str], port: int, env: dict[str, str] | None = None
) -> AsyncIterator[Peer]:
    server = Peer(argv, port, env)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def everything(mode: str, port: int) -> tuple[list[str], dict[str, str]]:
    return [str(EVERYTHING), mode], {**os.environ, "PORT": str(port)}


@contextmanager
def no_new_children() -> Iterator[set[int]]:
    """Yields the set our pid's children had before; asserts nothing new is left after."""
    before = children_of(os.getpid())
    yield before
    left = children_of(os.getpid()) - before
    assert not left, f"child processes left behind: {sorted(left)}"


def fake_tool(name: str, description: str = "") -> types.Tool:
    return types.Tool(name=name, description=description, input_schema={"type": "object"})


def fake_index(
    registry: MCPRegistry, tools: dict[str, list[str]], down: frozenset[str] = frozenset()
) -> None:
    """Give a never-started registry a tool listing per server, as if connected."""
    for name, server in registry._servers.items():
        server.known = [fake_tool(t, f"{t} on {name}") for t in tools.get(name, [])]
        server.up = name not in down
        server.state = "failed" if name in down else "ready"
        server.last_error = "it crashed" if name in down else None
    registry._rebuild()


# ------------------------------------------------------------------ the index, no processes


def test_later_server_wins_plain_names_and_all_stay_reachable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = MCPRegistry([own("a"), own("b"), own("c")])
    with caplog.at_level(logging.WARNING, logger="octopussy.mcp"):
        fake_index(registry, {"a": ["echo", "only_a"], "b": ["echo", "files.read"], "c": []})
    names = {(i.server, i.tool): i for i in registry.tools()}
    assert names["a", "echo"].name == "a.echo"
    assert names["b", "echo"].name == "echo"
    assert names["a", "only_a"].name == "only_a"
    assert names["b", "files.read"].name == "files.read"
    # Model-facing names fit OpenAI's pattern, and call() accepts them too.
    specs = {spec.name for spec in registry.tool_specs()}
    assert specs == {"a__echo", "echo", "only_a", "files__read"}
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name) for name in specs)
    assert registry._routes["a__echo"][0].name == "a"
    assert registry._routes["files__read"][1] == "files.read"
    assert registry._routes["b.echo"][0].name == "b"
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert "a, b" in warning
    assert "echo" in warning


def test_a_down_servers_tools_vanish_and_calls_say_why() -> None:
    registry = MCPRegistry([own("a"), own("b")])
    fake_index(registry, {"a": ["echo", "sum"], "b": ["echo"]}, down=frozenset({"b"}))
    assert {i.name for i in registry.tools()} == {"echo", "sum"}  # a's, plainly
    assert registry._routes["echo"][0].name == "a"  # the live server takes the name
    server = registry._servers["b"]
    server.next_retry_at = time.monotonic() + 7.2
    with pytest.raises(ToolError, match=r"server 'b' is not connected: it crashed; retrying in 7s"):
        asyncio.run(registry.call("b.echo", {}))


def test_unknown_tool_lists_close_names() -> None:
    registry = MCPRegistry([own("a")])
    fake_index(registry, {"a": ["get_current_time", "convert_time", "echo"]})
    with pytest.raises(ToolError) as info:
        asyncio.run(registry.call("get_curent_time"))
    assert "unknown tool 'get_curent_time'" in str(info.value)
    assert "get_current_time" in str(info.value)


def test_long_or_odd_names_become_unique_llm_names() -> None:
    registry = MCPRegistry([own("a"), own("b")])
    long = "x" * 80
    fake_index(registry, {"a": ["do it", long, "a_b"], "b": ["a.b"]})
    specs = [spec.name for spec in registry.tool_specs()]
    assert len(specs) == len(set(specs)) == 4
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name) for name in specs)
    assert {info.llm_name: info.tool for info in registry.tools()}["do_it"] == "do it"


def test_result_text_joins_text_and_marks_other_content() -> None:
    result = types.CallToolResult(
        content=[
            types.TextContent(type="text", text="one"),
            types.ImageContent(type="image", data="aGk=", mime_type="image/png"),
            types.EmbeddedResource(
                type="resource",
                resource=types.TextResourceContents(uri="file:///a.txt", text="inside"),
            ),
            types.TextContent(type="text", text="two"),
        ],
        structured_content={"k": 1},
        is_error=False,
    )
    converted = _to_result(result, "s", "t")
    assert converted.text == "one\n[image image/png]\ninside\ntwo"
    assert converted.structured == {"k": 1}
    assert (converted.server, converted.tool, converted.is_error) == ("s", "t", False)
    assert len(converted.content) == 4


def test_backoff_doubles_and_is_capped() -> None:
    registry = MCPRegistry([own("a")], backoff_initial=0.5, backoff_max=3.0)
    server = registry._servers["a"]
    assert [server._next_delay() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_duplicate_names_and_disabled_servers() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        MCPRegistry([own("a"), own("a")])
    spec = ServerSpec("off", "stdio", command="false", enabled=False)
    registry = MCPRegistry([spec])
    asyncio.run(registry.start())
    (status,) = registry.status()
    assert (status.state, status.last_error, status.pid) == ("stopped", "disabled in config", None)


# --------------------------------------------------------------------------- real peers


@needs_time
@pytest.mark.integration
@pytest.mark.timeout(60)
async def test_mcp_server_time_over_stdio() -> None:
    spec = ServerSpec("time", "stdio", command=str(TIME_SERVER), env=ENV)
    with no_new_children():
        async with MCPRegistry([spec], connect_timeout=20) as registry:
            assert {i.name for i in registry.tools()} == {"get_current_time", "convert_time"}
            result = await registry.call("get_current_time", {"timezone": "UTC"})
            assert not result.is_error
            assert result.structured["timezone"] == "UTC"
            assert '"timezone": "UTC"' in result.text
            again = await registry.call("time.get_current_time", {"timezone": "Europe/Berlin"})
            assert again.structured["timezone"] == "Europe/Berlin"
            (status,) = registry.status()
            assert status.state == "ready"
            assert status.pid is not None
            assert alive(status.pid)
            pid = status.pid
    assert not alive(pid)


@needs_everything
@pytest.mark.integration
@pytest.mark.timeout(60)
async def test_server_everything_over_stdio(caplog: pytest.LogCaptureFixture) -> None:
    spec = ServerSpec("ev", "stdio", command=str(EVERYTHING), args=("stdio",), env=ENV)
    with no_new_children(), caplog.at_level(logging.DEBUG, logger="octopussy.mcp"):
        async with MCPRegistry([spec], connect_timeout=20) as registry:
            names = {i.name for i in registry.tools()}
            assert {"echo", "get-structured-content", "trigger-long-running-operation"} <= names
            assert (await registry.call("echo", {"message": "hi"})).text == "Echo: hi"
            weather = await registry.call("get-structured-content", {"location": "Chicago"})
            assert weather.structured == {
                "temperature": 36,
                "conditions": "Light rain / drizzle",
                "humidity": 82,
            }
            image = await registry.call("get-tiny-image", {})
            assert "[image image/png]" in image.text
            slow = await registry.call(
                "trigger-long-running-operation", {"duration": 0.3, "steps": 3}
            )
            assert "completed" in slow.text
            # It registers its conditional tools after the handshake and says so with
            # notifications/tools/list_changed, which makes us re-list.
            await eventually(
                lambda: any("tools/list_changed" in r.getMessage() for r in caplog.records),
                "a tools/list_changed notification from server-everything",
            )
            # Its stderr banner reached our log instead of blocking the child.
            assert any("Starting default (STDIO) server" in r.getMessage() for r in caplog.records)


@needs_everything
@pytest.mark.integration
@pytest.mark.timeout(90)
async def test_server_everything_over_http_survives_restarts() -> None:
    port = free_port()
    argv, env = everything("streamableHttp", port)
    spec = ServerSpec("ev", "http", url=f"http://127.0.0.1:{port}/mcp")
    async with peer(argv, port, env) as server:
        registry = MCPRegistry([spec], connect_timeout=10, backoff_initial=0.1, backoff_max=0.5)
        async with registry:
            assert registry.status()[0].protocol_version == "2025-11-25"  # a session-based era
            assert (await registry.call("echo", {"message": "1"})).text == "Echo: 1"
            weather = await registry.call("ev.get-structured-content", {"location": "New York"})
            assert weather.structured["temperature"] == 33

            # Restart between calls: the old session id is unknown to the new process.
            await server.stop()
            await server.start()
            after = await registry.call("echo", {"message": "after restart"}, timeout=15)
            assert after.text == "Echo: after restart"

            # Down: a call fails clearly, the tools go away, and all comes back later.
            await server.stop()
            with pytest.raises(ToolError, match=r"server 'ev' is not connected"):
                await registry.call("echo", {"message": "while down"})
            await eventually(lambda: registry.tools() == [], "tools gone while down")
            assert registry.status()[0].state in ("failed", "connecting")
            await server.start()
            assert await registry.wait_ready("ev", 20)
            assert (await registry.call("echo", {"message": "back"})).text == "Echo: back"


@needs_everything
@pytest.mark.integration
@pytest.mark.timeout(60)
async def test_server_everything_over_legacy_sse() -> None:
    port = free_port()
    argv, env = everything("sse", port)
    spec = ServerSpec("old", "sse", url=f"http://127.0.0.1:{port}/sse")
    async with peer(argv, port, env), MCPRegistry([spec], connect_timeout=10) as registry:
        assert registry.status()[0].state == "ready"
        assert (await registry.call("old.echo", {"message": "sse"})).text == "Echo: sse"


@pytest.mark.integration
@pytest.mark.timeout(90)
async def test_own_servers_names_timeouts_concurrency_live_tools_and_crash(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two copies of our server, configured the way users write them (both shapes)."""
    config = tmp_path / "config.yaml"
    config.write_text(
        f"""
mcp_servers:
  - name: a
    command: [{json.dumps(sys.executable)}, {json.dumps(str(OWN_SERVER))}, --name, a]
    env: {{OWN: "one"}}
mcpServers:
  b: {{command: {json.dumps(sys.executable)}, args: [{json.dumps(str(OWN_SERVER))}, --name, b]}}
""",
        encoding="utf-8",
    )
    env = {**os.environ, "SECRET_TOKEN": "do-not-leak"}
    specs = server_specs(load_config(config, env=env, cwd=tmp_path), builtin_command=None)
    changes: list[str] = []
    registry = MCPRegistry(
        specs, connect_timeout=20, backoff_initial=0.5, backoff_max=4.0, on_change=changes.append
    )
    with no_new_children():
        async with registry:
            assert [s.state for s in registry.status()] == ["ready", "ready"]

            # Names: the later server owns "echo"; both stay reachable by server.tool.
            assert (await registry.call("echo", {"message": "x"})).text == "b:x"
            assert (await registry.call("a.echo", {"message": "x"})).text == "a:x"
            assert (await registry.call("a__echo", {"message": "x"})).text == "a:x"
            assert {"a__echo", "echo", "b__echo"} & {s.name for s in registry.tool_specs()} == {
                "a__echo",
                "echo",
            }
            assert (await registry.call("add", {"a": 2, "b": 3})).structured == {"sum": 5}

            # The environment: its own env, not our secrets.
            assert (await registry.call("a.get_env", {"variable": "OWN"})).text == "one"
            leaked = await registry.call("a.get_env", {"variable": "SECRET_TOKEN"})
            assert leaked.text == "<unset>"

            # stderr is drained into our log: 2,000 lines (200 kB, > a pipe buffer) don't
            # block the child.
            with caplog.at_level(logging.INFO, logger="octopussy.mcp.server.a"):
                assert (await registry.call("a.shout", {"lines": 2000}, timeout=20)).text == "done"
                await eventually(
                    lambda: any("shout 001999" in r.getMessage() for r in caplog.records),
                    "the last stderr line logged",
                )

            # A per-call timeout is an error result, quickly, and the session survives.
            started = time.monotonic()
            slow = await registry.call("sleep", {"seconds": 30}, timeout=0.3)
            assert slow.is_error
            assert "timed out after 0.3s" in slow.text
            assert time.monotonic() - started < 5
            assert (await registry.call("b.echo", {"message": "still"})).text == "b:still"

            # Many tasks at once, both servers.
            async def one(i: int) -> ToolResult:
                return await registry.call(f"{'ab'[i % 2]}.echo", {"message": str(i)})

            results = await asyncio.gather(*(one(i) for i in range(60)))
            assert [r.text for r in results] == [f"{'ab'[i % 2]}:{i}" for i in range(60)]

            # A tool added at run time appears live (list_changed), and refresh() works.
            changes.clear()
            assert (await registry.call("b.add_tool", {"tool_name": "fresh"})).text == "added"
            await eventually(
                lambda: "fresh" in {i.name for i in registry.tools()}, "the new tool listed"
            )
            assert changes == ["b"]
            assert (await registry.call("fresh")).text == "fresh"
            assert {i.tool for i in await registry.refresh("a")} >= {"echo", "crash"}

            with pytest.raises(ToolError, match=r"unknown tool 'ehco'.*echo"):
                await registry.call("ehco", {"message": "x"})

            # A crash: b's tools vanish at once, its calls say why, a takes over "echo",
            # and b comes back (new process) after the backoff.
            old_pid = registry.status()[1].pid
            assert old_pid is not None
            with pytest.raises(ToolError, match="server 'b' is not connected"):
                await registry.call("b.crash")
            crashed = time.monotonic()
            assert {i.server for i in registry.tools()} == {"a"}
            with pytest.raises(
                ToolError, match=r"server 'b' is not connected: .*(retrying|reconn)"
            ):
                await registry.call("b.echo", {"message": "x"})
            assert (await registry.call("echo", {"message": "x"})).text == "a:x"
            await eventually(lambda: not alive(old_pid), "the crashed child reaped")
            await eventually(lambda: registry.status()[1].pid not in (None, old_pid), "b respawned")
            assert time.monotonic() - crashed >= 0.45  # the backoff (0.5 s) was honoured
            assert await registry.wait_ready("b", 20)
            status = registry.status()[1]
            assert status.pid not in (None, old_pid)
            assert status.retries == 1
            assert (await registry.call("echo", {"message": "x"})).text == "b:x"
            assert "fresh" not in {i.name for i in registry.tools()}  # a new process
            pids = [s.pid for s in registry.status()]
        assert [s.state for s in registry.status()] == ["stopped", "stopped"]
        assert not any(pid and alive(pid) for pid in pids)


@needs_time
@pytest.mark.integration
@pytest.mark.timeout(60)
async def test_broken_servers_never_take_the_others_down() -> None:
    specs = [
        ServerSpec("nope", "stdio", command="/nonexistent/mcp-server", env=ENV),
        own("fails", "--fail-start"),
        ServerSpec("hangs", "stdio", command="sh", args=("-c", "exec sleep 60"), env=ENV),
        ServerSpec("time", "stdio", command=str(TIME_SERVER), env=ENV),
    ]
    registry = MCPRegistry(specs, connect_timeout=5, backoff_initial=1.0, backoff_max=5.0)
    with no_new_children():
        started = time.monotonic()
        async with registry:
            assert time.monotonic() - started < 5 + 2
            states = {s.name: s for s in registry.status()}
            assert states["time"].state == "ready"
            # These two may already be in their next attempt; the last error stays.
            assert states["nope"].state in ("failed", "connecting")
            assert "cannot run '/nonexistent/mcp-server'" in (states["nope"].last_error or "")
            assert states["fails"].state in ("failed", "connecting")
            assert "configured to fail at start" in (states["fails"].last_error or "")
            assert states["hangs"].state == "failed"
            assert states["hangs"].last_error == "no answer within 5s"
            result = await registry.call("get_current_time", {"timezone": "UTC"})
            assert not result.is_error
            await eventually(lambda: registry.status()[0].retries >= 2, "nope retried")


@pytest.mark.integration
@pytest.mark.timeout(60)
async def test_http_bearer_token_is_sent(tmp_path: Path) -> None:
    port = free_port()
    argv = [sys.executable, str(OWN_SERVER), "--name", "web", "--http", str(port)]
    config = tmp_path / "config.yaml"
    config.write_text(
        f"""
mcp_servers:
  - {{name: good, type: http, url: "http://127.0.0.1:{port}/mcp", api_key: "${{WEB_TOKEN}}"}}
  - {{name: bad, type: http, url: "http://127.0.0.1:{port}/mcp", api_key: wrong}}
""",
        encoding="utf-8",
    )
    loaded = load_config(config, env={"WEB_TOKEN": "s3cret"}, cwd=tmp_path)
    specs = server_specs(loaded, builtin_command=None)
    async with (
        peer([*argv, "--token", "s3cret"], port),
        MCPRegistry(specs, connect_timeout=10, backoff_initial=5.0) as registry,
    ):
        good, bad = registry.status()
        assert good.state == "ready"
        assert good.protocol_version == "2026-07-28"
        assert (await registry.call("good.echo", {"message": "t"})).text == "web:t"
        assert bad.state == "failed"
        assert "HTTP 401" in (bad.last_error or "")


@pytest.mark.integration
@pytest.mark.timeout(60)
async def test_cancelling_the_owner_leaves_no_child() -> None:
    ready = asyncio.Event()
    seen: list[int] = []

    async def run() -> None:
        async with MCPRegistry([own("x"), own("y")], connect_timeout=20) as registry:
            seen.extend(s.pid for s in registry.status() if s.pid)
            ready.set()
            await asyncio.Event().wait()

    with no_new_children() as before:
        task = asyncio.create_task(run())
        async with asyncio.timeout(30):
            await ready.wait()
        assert len(seen) == 2
        assert set(seen) <= children_of(os.getpid()) - before
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await eventually(lambda: not children_of(os.getpid()) - before, "children gone")
    assert not any(alive(pid) for pid in seen)


CTRL_C_SCRIPT = """
import asyncio, json, sys
from octopussy.mcp.registry import MCPRegistry
from octopussy.mcp.servers import ServerSpec

async def main():
    specs = [ServerSpec(n, "stdio", command=sys.executable, args=(sys.argv[1], "--name", n))
             for n in ("p", "q")]
    async with MCPRegistry(specs, connect_timeout=20) as registry:
        print(json.dumps([s.pid for s in registry.status()]), flush=True)
        await asyncio.Event().wait()

try:
    asyncio.run(main())
except KeyboardInterrupt:
    sys.exit(130)
"""


@pytest.mark.integration
@pytest.mark.timeout(60)
async def test_ctrl_c_leaves_no_server_process() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CTRL_C_SCRIPT,
        str(OWN_SERVER),
        stdout=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(40):
            line = await proc.stdout.readline()
        pids = json.loads(line)
        assert len(pids) == 2
        assert all(pid and alive(pid) for pid in pids)
        assert set(pids) <= children_of(proc.pid)
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(20):
            code = await proc.wait()
        assert code == 130
        # Orphans would be re-parented and stay alive: every server must be gone.
        await eventually(lambda: not any(alive(pid) for pid in pids), "servers gone", 5)
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


@pytest.mark.integration
@pytest.mark.timeout(30)
async def test_stop_interrupts_a_connect_in_progress() -> None:
    hang = ServerSpec("hangs", "stdio", command="sh", args=("-c", "exec sleep 60"), env=ENV)
    registry = MCPRegistry([hang], connect_timeout=60)
    with no_new_children():
        starting = asyncio.create_task(registry.start())
        await eventually(lambda: registry.status()[0].pid is not None, "the child spawned")
        pid = registry.status()[0].pid
        assert pid is not None
        assert registry.status()[0].state == "connecting"
        began = time.monotonic()
        await registry.stop()
        # The SDK's own shutdown: close stdin, 2 s grace, SIGTERM; not the 60 s deadline.
        assert time.monotonic() - began < 6
        async with asyncio.timeout(5):
            await starting
        assert registry.status()[0].state == "stopped"
        assert not alive(pid)


@pytest.mark.timeout(30)
async def test_a_missing_command_fails_and_backs_off_exponentially() -> None:
    spec = ServerSpec("nope", "stdio", command="/nonexistent/mcp-server", env=ENV)
    began = time.monotonic()
    async with MCPRegistry([spec], backoff_initial=0.1, backoff_max=10.0) as registry:
        await eventually(lambda: registry.status()[0].state == "failed", "failed")
        retry_in = registry.status()[0].next_retry_in
        assert retry_in is not None
        assert 0 <= retry_in <= 10
        with pytest.raises(ToolError, match=r"unknown tool 'nope\.x'"):
            await registry.call("nope.x")
        await eventually(lambda: registry.status()[0].retries >= 4, "three more attempts")
        # Attempts 1 to 4 are at least 0.1 + 0.2 + 0.4 s of backoff apart.
        assert time.monotonic() - began >= 0.65
        assert registry.status()[0].retries <= 5
