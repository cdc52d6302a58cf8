"""Tasks through the runtime: store → pool → worker → the real built-in MCP server → result."""

from __future__ import annotations

import asyncio
from pathlib import Path

from octopussy.bus.messages import Message, MessageType
from octopussy.config import load_config
from octopussy.llm.base import ToolCall
from octopussy.runtime import Runtime
from octopussy.store.base import TaskStatus
from octopussy.testing import ScriptedModel


class Collect:
    def __init__(self) -> None:
        self.shown: list[Message] = []
        self.result = asyncio.Event()

    async def show(self, message: Message) -> None:
        self.shown.append(message)
        if message.type is MessageType.TASK_RESULT:
            self.result.set()


async def test_task_runs_a_real_tool_and_reports(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (tmp_path / "config.yaml").write_text(
        f"llm:\n  provider: scripted\nworkspace: {workspace}\nworkers:\n  optimize_prompts: false\n"
    )
    loaded = load_config(None, cwd=tmp_path)
    worker_model = ScriptedModel(
        [
            ToolCall("write_file", {"path": "hello.txt", "content": "hi"}),
            "I wrote hello.txt.",
        ]
    )
    presenter = Collect()
    async with Runtime(loaded, presenter=presenter, models={"worker": worker_model}) as runtime:
        await runtime.warm_up()
        task = await runtime.create_task("create hello.txt containing hi")
        async with asyncio.timeout(60):
            await presenter.result.wait()
        stored = await runtime.store.get_task(task.id)
    assert (workspace / "hello.txt").read_text() == "hi"
    assert stored is not None
    assert stored.status is TaskStatus.DONE
    kinds = [m.type for m in presenter.shown]
    assert MessageType.TASK_PROGRESS in kinds
    result = next(m for m in presenter.shown if m.type is MessageType.TASK_RESULT)
    assert result.task_id == task.id
    assert result.payload["result"] == "I wrote hello.txt."
