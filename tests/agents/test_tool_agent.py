"""The tool agent, end to end: request → checks → sandbox test → deployed → live → called.

The runtime tests drive the real runtime: the coordinator routes the request, the tool
agent writes the file, the built-in MCP server (a real stdio child) picks it up, our
registry lists it without reconnecting, an independent MCP client hears
``notifications/tools/list_changed``, and a worker calls the tool in the same session.
Models are scripted (``octopussy.testing``); tools, sandbox and servers are real.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp_types import ToolListChangedNotification

from mcp import StdioServerParameters
from mcp_session import held_client
from octopussy.agents.tool_agent import ToolAgent, ToolRequest
from octopussy.bus.base import Inbox
from octopussy.bus.memory import InMemoryBus
from octopussy.bus.messages import Message, MessageType
from octopussy.config import SandboxSettings, ToolAgentSettings, load_config
from octopussy.llm.base import ToolCall
from octopussy.mcp.generated import GeneratedToolStore
from octopussy.runtime import Runtime
from octopussy.store.base import TaskStatus
from octopussy.store.sqlite import SqliteStore
from octopussy.testing import ScriptedModel

pytestmark = pytest.mark.skipif(
    shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed"
)

C2F_CODE = '''def celsius_to_fahrenheit(celsius: float) -> float:
    """Convert a temperature from degrees Celsius to degrees Fahrenheit."""
    return celsius * 9 / 5 + 32
'''


def tool_json(code: str = C2F_CODE, examples: list[tuple[str, str]] | None = None) -> str:
    pairs = examples or [
        ("celsius_to_fahrenheit(100)", "212.0"),
        ("celsius_to_fahrenheit(0)", "32"),
        ("celsius_to_fahrenheit(-40)", "-40.0"),
    ]
    return json.dumps(
        {
            "name": "celsius_to_fahrenheit",
            "description": "Convert Celsius to Fahrenheit.",
            "code": f"```python\n{code}```",  # fenced, as models like to: it gets stripped
            "examples": [{"call": call, "expected": expected} for call, expected in pairs],
        }
    )


class Collect:
    """The coordinator's presenter: every message shown, with events to wait on."""

    def __init__(self) -> None:
        self.shown: list[Message] = []
        self.changed = asyncio.Event()

    async def show(self, message: Message) -> None:
        self.shown.append(message)
        self.changed.set()

    async def wait(self, predicate: Any, timeout: float = 60) -> Message:
        async with asyncio.timeout(timeout):
            while True:
                for message in self.shown:
                    if predicate(message):
                        return message
                self.changed.clear()
                await self.changed.wait()

    async def tool_report(self) -> Message:
        return await self.wait(
            lambda m: (
                m.type is MessageType.AGENT_NOTIFICATION and m.payload.get("label") == "TOOL AGENT"
            )
        )

    async def result(self, task_id: str) -> Message:
        return await self.wait(
            lambda m: (
                m.task_id == task_id and m.type in (MessageType.TASK_RESULT, MessageType.TASK_ERROR)
            )
        )


def runtime_config(tmp_path: Path) -> Any:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (tmp_path / "config.yaml").write_text(
        f"llm:\n  provider: scripted\nworkspace: {workspace}\nworkers:\n  optimize_prompts: false\n"
        "memory:\n  enabled: false\n"
    )
    return load_config(None, cwd=tmp_path)


async def test_requested_tool_is_live_for_clients_and_workers(tmp_path: Path) -> None:
    loaded = runtime_config(tmp_path)
    coordinator_model = ScriptedModel(
        [ToolCall("create_tool", {"description": "convert Celsius to Fahrenheit"})]
    )
    tool_model = ScriptedModel([tool_json()])
    worker_model = ScriptedModel(
        [ToolCall("celsius_to_fahrenheit", {"celsius": 100}), "100 °C is 212 °F."]
    )
    presenter = Collect()
    models = {"coordinator": coordinator_model, "tool_agent": tool_model, "worker": worker_model}
    heard = asyncio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, ToolListChangedNotification):
            heard.set()

    # An independent MCP client (2025-era session over stdio) of its own built-in server
    # process, watching the same directory; connected before the tool exists.
    outsider = StdioServerParameters(
        command=sys.executable,
        args=[
            "-m",
            "octopussy.mcp.builtin",
            "--workspace",
            str(loaded.paths.workspace),
            "--generated-tools",
            str(loaded.paths.generated_tools),
        ],
    )
    async with (
        Runtime(loaded, presenter=presenter, models=models) as runtime,
        held_client(outsider, mode="legacy", message_handler=on_message) as client,
    ):
        await runtime.warm_up()
        before = next(s for s in runtime.mcp.status() if s.name == "builtin")
        assert "celsius_to_fahrenheit" not in {t.name for t in runtime.mcp.tools()}
        assert "celsius_to_fahrenheit" not in {t.name for t in (await client.list_tools()).tools}

        reply = await runtime.coordinator.chat("I need a tool that converts Celsius to Fahrenheit")
        assert reply.startswith("Tool requested (ID: ")
        report = await presenter.tool_report()
        assert report.payload["ok"] is True
        assert report.payload["text"].startswith("New tool created: celsius_to_fahrenheit v1")
        assert report.payload["text"].endswith("(available now)")

        # Our registry lists it on the same session: same child process, no reconnect.
        after = next(s for s in runtime.mcp.status() if s.name == "builtin")
        assert after.pid == before.pid
        assert after.state == "ready"
        assert "celsius_to_fahrenheit" in {t.name for t in runtime.mcp.tools()}
        # The other client heard about it and lists it without reconnecting.
        async with asyncio.timeout(10):
            await heard.wait()
        listed = {t.name for t in (await client.list_tools()).tools}
        assert "celsius_to_fahrenheit" in listed
        called = await client.call_tool("celsius_to_fahrenheit", {"celsius": 37})
        assert not called.is_error
        assert called.structured_content == {"result": 98.6}

        # A worker of the same session calls it.
        task = await runtime.create_task("convert 100 degrees Celsius to Fahrenheit")
        result = await presenter.result(task.id)
        stored = await runtime.store.get_task(task.id)
        events = await runtime.store.events(limit=100)

    assert result.type is MessageType.TASK_RESULT
    assert stored is not None
    assert stored.status is TaskStatus.DONE
    offered = {spec.name for spec in worker_model.calls[0].tools}
    assert {"celsius_to_fahrenheit", "execute_python"} <= offered
    assert "request_tool" not in offered  # only after a call of a missing tool
    tool_message = worker_model.calls[1].messages[-1]
    assert tool_message.role == "tool"
    assert tool_message.content == "212.0"
    assert stored.data["tool_calls"][0]["is_error"] is False
    # The file on disk says what was asked, by whom, with its tests.
    record = GeneratedToolStore(loaded.paths.generated_tools).require("celsius_to_fahrenheit")
    assert record.requested_by == "coordinator"
    assert record.request == "convert Celsius to Fahrenheit"
    assert [t["expected"] for t in record.tests] == [212.0, 32, -40.0]
    assert "```" not in record.code
    kinds = [e.kind for e in events]
    assert "tool_attempt" in kinds
    assert "tool_created" in kinds
    # The system prompt forbids the network for this request (it did not allow it).
    assert "there is no network" in tool_model.calls[0].messages[0].content


async def test_a_worker_requests_a_missing_tool_and_goes_on(tmp_path: Path) -> None:
    loaded = runtime_config(tmp_path)
    tool_model = ScriptedModel([tool_json()])
    worker_model = ScriptedModel(
        [
            # The worker reaches for a tool that does not exist yet ...
            ToolCall("celsius_to_fahrenheit", {"celsius": 37}),
            # ... is told it may ask for one, asks, and goes on with it.
            ToolCall("request_tool", {"description": "convert Celsius to Fahrenheit"}),
            ToolCall("celsius_to_fahrenheit", {"celsius": 37}),
            "37 °C is 98.6 °F.",
        ]
    )
    presenter = Collect()
    models = {"tool_agent": tool_model, "worker": worker_model}
    async with Runtime(loaded, presenter=presenter, models=models) as runtime:
        await runtime.warm_up()
        task = await runtime.create_task("convert 37 degrees Celsius to Fahrenheit")
        result = await presenter.result(task.id)
        stored = await runtime.store.get_task(task.id)
        report = await presenter.tool_report()
    assert result.type is MessageType.TASK_RESULT, result.payload
    assert stored is not None
    assert stored.status is TaskStatus.DONE
    calls = stored.data["tool_calls"]
    assert [c["name"] for c in calls] == [
        "celsius_to_fahrenheit",
        "request_tool",
        "celsius_to_fahrenheit",
    ]
    assert [c["is_error"] for c in calls] == [True, False, False]
    assert "request_tool" not in {s.name for s in worker_model.calls[0].tools}
    missing = worker_model.calls[1].messages[-1].content
    assert "unknown tool 'celsius_to_fahrenheit'" in missing
    assert "call request_tool" in missing
    assert "request_tool" in {s.name for s in worker_model.calls[1].tools}
    answer = worker_model.calls[2].messages[-1].content
    assert "celsius_to_fahrenheit exists now" in answer
    assert '"celsius"' in answer
    assert "celsius_to_fahrenheit" in {s.name for s in worker_model.calls[2].tools}
    assert worker_model.calls[3].messages[-1].content == "98.6"
    assert report.payload["ok"]
    assert report.payload["available"]
    record = GeneratedToolStore(loaded.paths.generated_tools).require("celsius_to_fahrenheit")
    assert record.requested_by.startswith("worker")


# ----------------------------------------------------------------------------- retries


class _Listener:
    """A TCP server on host loopback that counts connections."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()


@pytest.fixture
def listener() -> Iterator[_Listener]:
    server = _Listener()
    yield server
    server.sock.close()


class NoRegistry:
    """A catalog without a running MCP server: deploys are written but not published."""

    def __init__(self) -> None:
        self.published: list[tuple[str, int]] = []

    async def tool_names(self) -> set[str]:
        return {"remote_thing"}

    async def publish(self, name: str, version: int) -> bool:
        self.published.append((name, version))
        return True


def broken(kind: str, port: int) -> tuple[str, str]:
    """A first attempt broken in one way, and what the fed-back problem must say."""
    body = C2F_CODE
    if kind == "syntax error":
        return tool_json(body.replace("celsius * 9 / 5 + 32", "celsius * 9 / (5 + 32")), (
            "does not parse"
        )
    if kind == "failing example":
        return tool_json(body.replace("+ 32", "+ 23")), (
            "celsius_to_fahrenheit(100) returned 203.0, but the example expects 212.0"
        )
    if kind == "forbidden import":
        code = body.replace('"""\n', '"""\n    import urllib.request\n', 1)
        return tool_json(code), "import urllib.request is not allowed"
    if kind == "infinite loop":
        code = body.replace(
            "    return celsius", "    while True:\n        pass\n    return celsius"
        )
        return tool_json(code), "did not finish within the 2 s time limit"
    if kind == "socket attempt":
        # multiprocessing is standard library and not a "network module": the static
        # check lets it through, the sandbox's missing network stops it.
        code = body.replace(
            "    return celsius",
            "    from multiprocessing.connection import Client\n"
            f"    Client(('127.0.0.1', {port})).send(celsius)\n    return celsius",
        )
        return tool_json(code), "ConnectionRefusedError"
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    ["syntax error", "failing example", "forbidden import", "infinite loop", "socket attempt"],
)
async def test_a_broken_first_attempt_is_fixed_by_the_second(
    kind: str,
    tmp_path: Path,
    bus: InMemoryBus,
    coordinator: Inbox,
    store: SqliteStore,
    listener: _Listener,
) -> None:
    first, problem = broken(kind, listener.port)
    model = ScriptedModel([first, tool_json()])
    tools = GeneratedToolStore(tmp_path / "generated_tools")
    catalog = NoRegistry()
    agent = ToolAgent(
        bus=bus,
        store=store,
        model=model,
        tools=tools,
        scratch=tmp_path / "scratch",
        catalog=catalog,
        settings=ToolAgentSettings(test_timeout_seconds=2),
        sandbox=SandboxSettings(timeout_seconds=5),
    )
    await agent.register()
    message = Message(
        type=MessageType.CREATE_TOOL,
        sender="coordinator",
        recipient=agent.name,
        payload={"description": "convert Celsius to Fahrenheit"},
        task_id="req1",
    )
    await agent.handle(message)
    outcome = agent.outcomes[-1]
    assert outcome.ok, outcome.attempts
    assert [a.stage for a in outcome.attempts] == [
        "check" if kind in ("syntax error", "forbidden import") else "sandbox",
        "accepted",
    ]
    assert any(problem in p for p in outcome.attempts[0].problems), outcome.attempts[0].problems
    # The problem went back to the model with its own broken reply before it.
    feedback = model.calls[1].messages
    assert feedback[-2].role == "assistant"
    assert feedback[-1].role == "user"
    assert problem in feedback[-1].content
    assert listener.accepted == 0
    assert tools.require("celsius_to_fahrenheit").attempts == 2
    assert catalog.published == [("celsius_to_fahrenheit", 1)]
    report = await asyncio.wait_for(coordinator.get(), 5)
    assert report.type is MessageType.AGENT_NOTIFICATION
    assert report.payload["label"] == "TOOL AGENT"
    assert report.payload["ok"] is True
    attempts = [e for e in await store.events(limit=50) if e.kind == "tool_attempt"]
    assert [e.payload["attempt"] for e in attempts] == [1, 2]
    assert attempts[0].payload["problems"]
    assert attempts[0].task_id == "req1"


async def test_giving_up_after_max_attempts_says_why(
    tmp_path: Path, bus: InMemoryBus, coordinator: Inbox
) -> None:
    bad = tool_json(C2F_CODE.replace("+ 32", "+ 23"))
    model = ScriptedModel(["not json at all", bad, bad])
    agent = ToolAgent(
        bus=bus,
        model=model,
        tools=GeneratedToolStore(tmp_path / "generated_tools"),
        scratch=tmp_path / "scratch",
        catalog=NoRegistry(),
        settings=ToolAgentSettings(max_attempts=3),
    )
    await agent.register()
    await agent.handle(
        Message(
            type=MessageType.CREATE_TOOL,
            sender="coordinator",
            recipient=agent.name,
            payload={"description": "convert Celsius to Fahrenheit"},
        )
    )
    outcome = agent.outcomes[-1]
    assert not outcome.ok
    assert len(outcome.attempts) == 3
    assert outcome.attempts[0].stage == "model"
    report = await asyncio.wait_for(coordinator.get(), 5)
    text = report.payload["text"]
    assert text.startswith("Tool creation failed: 'convert Celsius to Fahrenheit' after 3")
    assert "expects 212.0" in text
    assert GeneratedToolStore(tmp_path / "generated_tools").names() == []


async def test_names_in_use_need_an_explicit_new_version(tmp_path: Path, bus: InMemoryBus) -> None:
    tools = GeneratedToolStore(tmp_path / "generated_tools")
    agent = ToolAgent(
        bus=bus,
        model=ScriptedModel([tool_json(), tool_json(), tool_json(C2F_CODE + "\n")]),
        tools=tools,
        scratch=tmp_path / "scratch",
        catalog=NoRegistry(),
        settings=ToolAgentSettings(max_attempts=1),
    )
    first = await agent.create(ToolRequest("c to f", "r1", "coordinator"))
    assert first.ok
    assert first.record is not None
    assert first.record.version == 1
    again = await agent.create(ToolRequest("c to f", "r2", "coordinator"))
    assert not again.ok
    assert "already exists" in again.attempts[0].problems[0]
    update = await agent.create(
        ToolRequest("c to f", "r3", "coordinator", update="celsius_to_fahrenheit")
    )
    assert update.ok
    assert update.record is not None
    assert update.record.version == 2
    assert [r.version for r in tools.versions("celsius_to_fahrenheit")] == [1, 2]


async def test_network_is_offered_only_when_allowed(tmp_path: Path, bus: InMemoryBus) -> None:
    code = C2F_CODE.replace('"""\n', '"""\n    import socket  # noqa\n', 1)
    model = ScriptedModel([tool_json(code), tool_json(code)])
    agent = ToolAgent(
        bus=bus,
        model=model,
        tools=GeneratedToolStore(tmp_path / "generated_tools"),
        scratch=tmp_path / "scratch",
        catalog=NoRegistry(),
        settings=ToolAgentSettings(max_attempts=1),
    )
    closed = await agent.create(ToolRequest("c to f", "r1", "coordinator"))
    assert not closed.ok
    assert "may not use the network" in closed.attempts[0].problems[0]
    opened = await agent.create(ToolRequest("c to f", "r2", "coordinator", allow_network=True))
    assert opened.ok
    assert opened.record is not None
    assert opened.record.allow_network
    assert "the network may be used" in model.calls[1].messages[0].content


# ----------------------------------------------------------------------------- the coordinator


class _Desk:
    async def create_task(self, description: str, *, question: bool = False) -> Any:
        raise AssertionError("no task expected")

    async def schedule_task(self, description: str, spec: str) -> Any:
        raise AssertionError("no schedule expected")


@pytest.mark.parametrize(
    ("text", "allowed"),
    [
        ("I need a tool that converts Celsius to Fahrenheit", False),
        ("Make a tool that downloads a web page; it may use the internet", True),
    ],
)
async def test_network_needs_the_users_own_words(
    text: str, allowed: bool, bus: InMemoryBus
) -> None:
    from octopussy.agents.coordinator import Coordinator

    inbox = await bus.register("tool_agent")
    call = ToolCall(
        "create_tool",
        {"description": "the tool", "allow_network": True, "update": "old_tool"},
    )
    coordinator = Coordinator(bus=bus, model=ScriptedModel([call]), system_prompt="S", desk=_Desk())
    reply = await coordinator.chat(text)
    assert reply.startswith("Tool requested (ID: ")
    request = await asyncio.wait_for(inbox.get(), 5)
    assert request.type is MessageType.CREATE_TOOL
    assert request.payload.get("allow_network", False) is allowed
    assert request.payload["update"] == "old_tool"


async def test_a_model_that_is_down_still_gets_an_answer_to_the_requester(
    tmp_path: Path, bus: InMemoryBus, coordinator: Inbox
) -> None:
    from octopussy.errors import BackendUnavailable

    agent = ToolAgent(
        bus=bus,
        model=ScriptedModel([BackendUnavailable("cannot reach http://127.0.0.1:9/v1")]),
        tools=GeneratedToolStore(tmp_path / "generated_tools"),
        scratch=tmp_path / "scratch",
        catalog=NoRegistry(),
    )
    await agent.register()
    waiting = await bus.register("worker_1.tool_request.x")
    await agent.handle(
        Message(
            type=MessageType.CREATE_TOOL,
            sender="worker_1",
            recipient=agent.name,
            payload={"description": "c to f", "reply_to": "worker_1.tool_request.x"},
            task_id="x",
        )
    )
    for inbox in (coordinator, waiting):
        report = await asyncio.wait_for(inbox.get(), 5)
        assert report.payload["ok"] is False
        assert "cannot reach" in report.payload["text"]


class _Tools:
    """A tool source with one tool (what the requester wraps)."""

    def tool_specs(self) -> list[Any]:
        from octopussy.llm.base import ToolSpec

        return [ToolSpec("read_file", "read")]

    async def call(self, name: str, arguments: Any) -> Any:
        from octopussy.errors import ToolError

        if name != "read_file":
            raise ToolError(f"unknown tool {name!r}")
        return _Result("content")


class _Result:
    def __init__(self, text: str) -> None:
        self.text = text
        self.is_error = False


async def test_request_tool_is_offered_only_after_a_missing_tool(bus: InMemoryBus) -> None:
    from octopussy.agents.tool_agent import ToolRequester
    from octopussy.errors import ToolError

    requester = ToolRequester(_Tools(), bus=bus, requester="worker_1", offer_steps=2)
    names = lambda: [s.name for s in requester.tool_specs()]  # noqa: E731
    assert names() == ["read_file"]
    assert (await requester.call("read_file", {})).text == "content"
    with pytest.raises(ToolError, match="call request_tool"):
        await requester.call("convert", {})
    assert names() == ["read_file", "request_tool"]
    assert names() == ["read_file", "request_tool"]
    assert names() == ["read_file"]  # withdrawn after offer_steps steps
    always = ToolRequester(_Tools(), bus=bus, requester="worker_2", always=True)
    assert [s.name for s in always.tool_specs()] == ["read_file", "request_tool"]
    answer = await always.call("request_tool", {"description": "x"})
    assert answer.is_error  # no tool agent on this bus
    assert "no tool agent is running" in answer.text


def test_the_user_sees_the_seed_lines() -> None:
    from octopussy.display import format_line, format_message

    message = Message(
        type=MessageType.AGENT_NOTIFICATION,
        sender="tool_agent",
        recipient="coordinator",
        payload={"label": "TOOL AGENT", "text": "New tool created: x v1 — X. (available now)"},
    )
    assert format_message(message) == "[TOOL AGENT] New tool created: x v1 — X. (available now)"
    assert format_line(message).startswith("[TOOL AGENT] New tool created")
