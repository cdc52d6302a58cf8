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


async def test_a_question_cannot_change_files(tmp_path: Path) -> None:
    """A message that only asks: its worker runs without write_file and edit_file."""
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "sales.csv").write_text("month,revenue\nMarch,1830\n")
    (tmp_path / "config.yaml").write_text(
        f"llm:\n  provider: scripted\nworkspace: {workspace}\nworkers:\n  optimize_prompts: false\n"
    )
    loaded = load_config(None, cwd=tmp_path)
    coordinator_model = ScriptedModel(
        [ToolCall("create_task", {"description": "Find the best month in sales.csv."})]
    )
    worker_model = ScriptedModel(
        [
            ToolCall("write_file", {"path": "sales.csv", "content": "month,total\nMarch,1830\n"}),
            "March.",
        ]
    )
    presenter = Collect()
    models = {"coordinator": coordinator_model, "worker": worker_model}
    async with Runtime(loaded, presenter=presenter, models=models) as runtime:
        await runtime.warm_up()
        reply = await runtime.coordinator.chat("Which month has the highest revenue in sales.csv?")
        async with asyncio.timeout(60):
            await presenter.result.wait()
        (task_id,) = runtime.coordinator.last_turn.task_ids if runtime.coordinator.last_turn else []
        stored = await runtime.store.get_task(task_id)
    assert reply == f"Task assigned (ID: {task_id})."
    assert stored is not None
    assert stored.data["question"] is True
    offered = {spec.name for spec in worker_model.calls[0].tools}
    assert {"read_file", "search_files", "execute_python"} <= offered
    assert not offered & {"write_file", "edit_file"}
    assert (workspace / "sales.csv").read_text() == "month,revenue\nMarch,1830\n"
    assert stored.data["tool_calls"][0]["is_error"] is True
