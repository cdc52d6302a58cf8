"""The runtime: builds from config, shares providers, records what it cannot deliver,
and leaves no task behind."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from octopussy.bus.messages import Message, MessageType
from octopussy.config import LoadedConfig, load_config
from octopussy.errors import UnknownRecipient
from octopussy.runtime import Runtime
from octopussy.testing import ScriptedModel


def loaded(tmp_path: Path, text: str = "llm:\n  provider: scripted\n") -> LoadedConfig:
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = tmp_path / "config.yaml"
    config.write_text(text)
    return load_config(config, env={"OCTOPUSSY_HOME": str(tmp_path / "home")}, cwd=tmp_path)


async def test_start_stop_leaves_no_task(tmp_path: Path) -> None:
    before = asyncio.all_tasks()
    runtime = Runtime(loaded(tmp_path))
    await runtime.start()
    assert {"coordinator", "spool"} <= set(runtime.agents)
    assert len(asyncio.all_tasks() - before) >= 2
    await runtime.stop()
    assert asyncio.all_tasks() - before == set()
    assert (tmp_path / "home" / "octopussy.db").exists()


async def test_unknown_recipient_raises_and_is_recorded(tmp_path: Path) -> None:
    async with Runtime(loaded(tmp_path)) as runtime:
        message = Message(MessageType.ASSIGN_TASK, "coordinator", "nobody", {"description": "x"})
        with pytest.raises(UnknownRecipient):
            await runtime.bus.send(message)
        events = await runtime.store.events(kind="undeliverable")
    assert len(events) == 1
    assert events[0].payload["message"]["recipient"] == "nobody"


async def test_agents_share_one_provider_per_setting(tmp_path: Path) -> None:
    runtime = Runtime(loaded(tmp_path))
    assert len(runtime.models) == 1
    runtime.model_for("worker")
    assert len(runtime.models) == 1  # same provider/model → same instance
    await runtime.stop()


async def test_per_agent_override_builds_a_second_provider(tmp_path: Path) -> None:
    text = "llm:\n  provider: scripted\nworkers:\n  llm:\n    model: other\n"
    runtime = Runtime(loaded(tmp_path, text))
    runtime.model_for("worker")
    assert sorted(m.name for m in runtime.models) == ["scripted:echo", "scripted:other"]
    await runtime.stop()


async def test_usage_is_metered_per_agent(tmp_path: Path) -> None:
    model = ScriptedModel(["hello there"])
    async with Runtime(loaded(tmp_path), models={"coordinator": model}) as runtime:
        await runtime.coordinator.chat("hi")
        usage = runtime.meter.for_agent("coordinator")
    assert usage.requests == 1
    assert usage.output_tokens > 0


async def test_notification_reaches_presenter_and_store(tmp_path: Path) -> None:
    shown: list[Message] = []
    got = asyncio.Event()

    class Presenter:
        async def show(self, message: Message) -> None:
            shown.append(message)
            got.set()

    async with Runtime(loaded(tmp_path), presenter=Presenter()) as runtime:
        await runtime.bus.send(
            Message(MessageType.TASK_RESULT, "worker_1", "coordinator", {"result": "42"}, "t1")
        )
        async with asyncio.timeout(5):
            await got.wait()
        events = await runtime.store.events(kind="task_result")
    assert shown[0].payload["result"] == "42"
    assert events[0].task_id == "t1"


async def test_two_homes_share_nothing(tmp_path: Path) -> None:
    a = Runtime(loaded(tmp_path / "a"))
    b = Runtime(loaded(tmp_path / "b"))
    async with a, b:
        await a.store.add_event("x", {"n": 1})
        assert await b.store.events() == []
