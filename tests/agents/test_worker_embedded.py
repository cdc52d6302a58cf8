"""A real task on the real embedded model: coordinator routing → optimizer → worker →
the real built-in MCP server → result, exactly as `octopussy chat` runs it (no script)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from octopussy.bus.messages import Message, MessageType
from octopussy.config import load_config
from octopussy.runtime import Runtime
from octopussy.store.base import TaskStatus

pytestmark = pytest.mark.integration


class Collect:
    def __init__(self) -> None:
        self.shown: list[Message] = []
        self.finished = asyncio.Event()

    async def show(self, message: Message) -> None:
        self.shown.append(message)
        if message.type in (MessageType.TASK_RESULT, MessageType.TASK_ERROR):
            self.finished.set()


async def test_create_a_file_and_read_it_back_on_the_embedded_model(tmp_path: Path) -> None:
    pytest.importorskip("xllamacpp", reason="the `embedded` extra is not installed")
    workspace = tmp_path / "ws"
    workspace.mkdir()
    # Greedy decoding: the same run every time (the default temperature samples).
    config = f"workspace: {workspace}\nllm:\n  temperature: 0\nmemory:\n  enabled: false\n"
    (tmp_path / "config.yaml").write_text(config)
    loaded = load_config(None, cwd=tmp_path)
    presenter = Collect()
    async with Runtime(loaded, presenter=presenter) as runtime:
        await runtime.warm_up()
        reply = await runtime.coordinator.chat(
            "create a file hello.txt containing hi, then read it back"
        )
        turn = runtime.coordinator.last_turn
        assert turn is not None
        assert turn.task_ids, f"the coordinator answered instead of delegating: {reply!r}"
        assert reply.startswith(f"Task assigned (ID: {turn.task_ids[0]})")
        async with asyncio.timeout(600):
            await presenter.finished.wait()
        task = await runtime.store.get_task(turn.task_ids[0])
    assert task is not None
    assert task.status is TaskStatus.DONE, task.data
    assert (workspace / "hello.txt").is_file(), (task.prompt, task.data)
    assert (workspace / "hello.txt").read_text().strip() == "hi"
    names = [call["name"] for call in task.data["tool_calls"]]
    assert "write_file" in names
    assert "read_file" in names
    result = next(m for m in presenter.shown if m.type is MessageType.TASK_RESULT)
    assert "hi" in result.payload["result"].lower()
    assert not result.payload["partial"]
