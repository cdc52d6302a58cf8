"""Tool agent: from "tool accepted" to the first successful call by a worker.

    worker (mid-task) ─ request_tool ─► tool agent: model (scripted, instant) → checks →
    sandbox test ─► ACCEPTED ─► file written ─► registry re-lists the built-in server ─►
    reply on the bus ─► the worker's next step calls the new tool ─► sandbox ─► RESULT

Measured in one real runtime (real built-in MCP server as a stdio child, real bubblewrap
sandbox, real bus); only the models are scripted, so the model's own time is not in it.
For each of N fresh tools: accepted → deployed (files written), → listed (our registry
sees it), → the worker has the reply, → the worker has the tool's result. Baseline, in the
same run: a worker calling a tool that was deployed long before (one registry → server →
sandbox round trip, the floor of "first call"). Also: deploy → an independent MCP client
(its own server process, 2025-era session) hears ``notifications/tools/list_changed``.

    .venv/bin/python benchmarks/bench_toolagent.py [--runs 7]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mcp_types import ToolListChangedNotification

from mcp import Client, StdioServerParameters
from octopussy.bus.messages import Message, MessageType
from octopussy.config import load_config
from octopussy.llm.base import ChatMessage, ToolCall
from octopussy.runtime import Runtime
from octopussy.testing import CallInfo, FunctionModel


def tool_reply(index: int) -> str:
    name = f"scale_by_{index}"
    code = (
        f"def {name}(value: float) -> float:\n"
        f'    """Multiply value by {index}."""\n'
        f"    return value * {index}\n"
    )
    return json.dumps(
        {
            "name": name,
            "description": f"Multiply by {index}.",
            "code": code,
            "examples": [{"call": f"{name}(2)", "expected": str(2 * index)}],
        }
    )


class Worker:
    """A scripted worker: request a tool, call it, answer; stamps when results arrive."""

    def __init__(self) -> None:
        self.index = 0
        self.reply_at: dict[int, float] = {}
        self.result_at: dict[int, float] = {}
        self.call_sent_at: dict[int, float] = {}
        self.texts: dict[int, str] = {}

    def __call__(self, messages: list[ChatMessage], info: CallInfo) -> Any:
        task = info.last_user_text
        last = messages[-1]
        index = int(task.split("#")[1])
        if last.role != "tool":
            if task.startswith("baseline"):
                self.call_sent_at[index] = time.perf_counter()
                return ToolCall("scale_by_0", {"value": 3})
            return ToolCall("request_tool", {"description": f"multiply by {index}"})
        if last.name == "request_tool":
            self.reply_at[index] = time.perf_counter()
            self.call_sent_at[index] = time.perf_counter()
            return ToolCall(f"scale_by_{index}", {"value": 3})
        self.result_at[index] = time.perf_counter()
        self.texts[index] = last.content
        return f"done {index}"


class Presenter:
    def __init__(self) -> None:
        self.finished: dict[str, asyncio.Event] = {}

    def event(self, task_id: str) -> asyncio.Event:
        return self.finished.setdefault(task_id, asyncio.Event())

    async def show(self, message: Message) -> None:
        if message.type in (MessageType.TASK_RESULT, MessageType.TASK_ERROR) and message.task_id:
            self.event(message.task_id).set()


def ms(values: list[float]) -> str:
    if not values:
        return "-"
    return (
        f"{statistics.median(values) * 1000:7.1f} ms  "
        f"({min(values) * 1000:.1f} – {max(values) * 1000:.1f})"
    )


async def run(runs: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-toolagent-"))
    workspace = tmp / "ws"
    workspace.mkdir()
    os.environ["OCTOPUSSY_HOME"] = str(tmp / "home")
    (tmp / "config.yaml").write_text(
        f"llm:\n  provider: scripted\nworkspace: {workspace}\n"
        "workers:\n  optimize_prompts: false\nmemory:\n  enabled: false\n"
        "tool_agent:\n  worker_requests: always\n"
    )
    loaded = load_config(None, cwd=tmp)
    worker = Worker()
    counter = {"n": 0}

    def tool_model(_messages: list[ChatMessage], info: CallInfo) -> str:
        counter["n"] += 1
        return tool_reply(int(info.last_user_text.split("multiply by ")[1]))

    presenter = Presenter()
    models = {"worker": FunctionModel(worker), "tool_agent": FunctionModel(tool_model)}
    heard: dict[str, float] = {}
    notified = asyncio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, ToolListChangedNotification):
            heard.setdefault("at", time.perf_counter())
            notified.set()

    outsider = StdioServerParameters(
        command=sys.executable,
        args=[
            "-m",
            "octopussy.mcp.builtin",
            "--workspace",
            str(workspace),
            "--generated-tools",
            str(loaded.paths.generated_tools),
        ],
    )
    rows: dict[str, list[float]] = {
        "accepted → deployed": [],
        "deployed → listed by our registry": [],
        "listed → reply at the worker": [],
        "reply → tool result at the worker": [],
        "accepted → first successful call": [],
        "baseline: call of a deployed tool": [],
        "deploy → list_changed at another client": [],
    }
    async with Runtime(loaded, presenter=presenter, models=models) as runtime:
        await runtime.warm_up()
        assert runtime.tool_agent is not None
        agent = runtime.tool_agent
        # The baseline tool exists before anything is measured.
        runtime.generated_tools.deploy(_baseline_record())
        await runtime.mcp.refresh("builtin")
        async with Client(outsider, mode="legacy", message_handler=on_message) as client:
            await client.list_tools()
            for index in range(1, runs + 1):
                heard.clear()
                notified.clear()
                task = await runtime.create_task(f"request #{index}")
                async with asyncio.timeout(60):
                    await presenter.event(task.id).wait()
                outcome = agent.outcomes[-1]
                assert outcome.ok, outcome.text
                assert outcome.accepted_at is not None
                assert worker.texts.get(index) == str(3.0 * index), worker.texts
                deployed = _deployed_at(outcome)
                rows["accepted → deployed"].append(deployed - outcome.accepted_at)
                assert outcome.published_at is not None
                rows["deployed → listed by our registry"].append(outcome.published_at - deployed)
                rows["listed → reply at the worker"].append(
                    worker.reply_at[index] - outcome.published_at
                )
                rows["reply → tool result at the worker"].append(
                    worker.result_at[index] - worker.reply_at[index]
                )
                rows["accepted → first successful call"].append(
                    worker.result_at[index] - outcome.accepted_at
                )
                async with asyncio.timeout(10):
                    await notified.wait()
                rows["deploy → list_changed at another client"].append(heard["at"] - deployed)
                # Baseline: the same worker path, on a tool deployed long ago.
                base = 1000 + index
                task = await runtime.create_task(f"baseline #{base}")
                async with asyncio.timeout(60):
                    await presenter.event(task.id).wait()
                rows["baseline: call of a deployed tool"].append(
                    worker.result_at[base] - worker.call_sent_at[base]
                )
    return rows


_DEPLOYED: dict[int, float] = {}


def _baseline_record() -> Any:
    from octopussy.mcp.generated import ToolRecord

    return ToolRecord(
        name="scale_by_0",
        version=1,
        description="Multiply by nothing.",
        code='def scale_by_0(value: float) -> float:\n    """Zero."""\n    return value * 0\n',
    )


def _deployed_at(outcome: Any) -> float:
    return _DEPLOYED[id(outcome)]


def _instrument() -> None:
    """Stamp the moment the files are written (between "accepted" and "published")."""
    from octopussy.agents import tool_agent

    original = tool_agent.ToolAgent._deploy

    async def timed(self: Any, request: Any, checked: Any, draft: Any, outcome: Any) -> None:
        store_deploy = self.tools.deploy

        def deploy(record: Any) -> Any:
            result = store_deploy(record)
            _DEPLOYED[id(outcome)] = time.perf_counter()
            return result

        self.tools.deploy = deploy
        try:
            await original(self, request, checked, draft, outcome)
        finally:
            self.tools.deploy = store_deploy

    tool_agent.ToolAgent._deploy = timed  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    _instrument()
    rows = asyncio.run(run(args.runs))
    print(f"# tool agent: {args.runs} fresh tools, {platform.processor() or platform.machine()}")
    print(f"# {os.cpu_count()} cores, Python {platform.python_version()}")
    for label, values in rows.items():
        print(f"{label:<42} {ms(values)}")
    first = statistics.median(rows["accepted → first successful call"])
    base = statistics.median(rows["baseline: call of a deployed tool"])
    print(f"{'ratio first call / baseline call':<42} {first / base:7.2f}×")
    print(f"{'target: accepted → first call < 1 s':<42} {'met' if first < 1.0 else 'MISSED'}")


if __name__ == "__main__":
    main()
