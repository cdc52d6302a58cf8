"""The coordinator: conversation, streaming, failures that keep history intact, display."""

from __future__ import annotations

import asyncio

import pytest

from octopussy.agents.base import supervise
from octopussy.agents.coordinator import Coordinator
from octopussy.bus.memory import InMemoryBus
from octopussy.bus.messages import Message, MessageType
from octopussy.errors import BackendUnavailable, ModelBehaviorError
from octopussy.testing import FunctionModel, ScriptedModel


class ListPresenter:
    def __init__(self) -> None:
        self.shown: list[Message] = []
        self.event = asyncio.Event()

    async def show(self, message: Message) -> None:
        self.shown.append(message)
        self.event.set()


def make(model: ScriptedModel, presenter: ListPresenter | None = None) -> Coordinator:
    return Coordinator(bus=InMemoryBus(), model=model, system_prompt="SYS", presenter=presenter)


async def test_chat_keeps_history_and_system_prompt() -> None:
    model = ScriptedModel(["Hello!", "You said hi before."])
    coordinator = make(model)
    assert await coordinator.chat("hi") == "Hello!"
    assert await coordinator.chat("what did I say?") == "You said hi before."
    second = model.calls[1].messages
    assert [m.role for m in second] == ["system", "user", "assistant", "user"]
    assert second[0].content == "SYS"
    assert second[1].content == "hi"


async def test_stream_yields_deltas_then_commits() -> None:
    coordinator = make(ScriptedModel(["one two three"]))
    parts = [part async for part in coordinator.chat_stream("count")]
    assert "".join(parts) == "one two three"
    assert len(parts) == 3
    assert [m.content for m in coordinator.history] == ["count", "one two three"]


@pytest.mark.parametrize(
    "failure",
    [BackendUnavailable("down", url="http://127.0.0.1:9"), ModelBehaviorError("garbage")],
)
async def test_failure_leaves_history_untouched(failure: Exception) -> None:
    coordinator = make(ScriptedModel(["first", failure, "again"]))
    await coordinator.chat("one")
    with pytest.raises(type(failure)):
        await coordinator.chat("two")
    assert [m.content for m in coordinator.history] == ["one", "first"]
    assert await coordinator.chat("two") == "again"


async def test_empty_answer_is_a_model_error() -> None:
    coordinator = make(ScriptedModel(["   "]))
    with pytest.raises(ModelBehaviorError, match="empty"):
        await coordinator.chat("hi")
    assert coordinator.history == []


async def test_cancelled_stream_leaves_history_untouched() -> None:
    called = asyncio.Event()

    async def slow(_messages: object, _info: object) -> str:
        called.set()
        await asyncio.sleep(60)
        return "never"

    coordinator = Coordinator(bus=InMemoryBus(), model=FunctionModel(slow), system_prompt="S")

    async def consume() -> None:
        async for _ in coordinator.chat_stream("hi"):
            pass

    task = asyncio.create_task(consume())
    async with asyncio.timeout(5):
        await called.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert coordinator.history == []


async def test_history_window_starts_with_a_user_turn() -> None:
    model = ScriptedModel(["a1", "a2", "a3"])
    coordinator = Coordinator(bus=InMemoryBus(), model=model, system_prompt="S", history_turns=3)
    for text in ("q1", "q2", "q3"):
        await coordinator.chat(text)
    sent = model.calls[-1].messages
    assert [m.content for m in sent] == ["S", "q2", "a2", "q3"]


async def test_messages_from_agents_are_shown() -> None:
    presenter = ListPresenter()
    coordinator = make(ScriptedModel([]), presenter)
    await coordinator.register()
    task = asyncio.create_task(supervise(coordinator))
    message = Message(MessageType.MAIL_NOTIFICATION, "mail_agent", "coordinator", {"subject": "Hi"})
    await coordinator.bus.send(message)
    async with asyncio.timeout(5):
        await presenter.event.wait()
    assert presenter.shown == [message]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
