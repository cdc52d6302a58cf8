"""Agent supervision: poison messages, crashes with restart, isolation, cancellation."""

from __future__ import annotations

import asyncio

import pytest

from octopussy.agents.base import Agent, supervise
from octopussy.bus.memory import InMemoryBus
from octopussy.bus.messages import Message, MessageType


class Recorder(Agent):
    def __init__(self, name: str, bus: InMemoryBus, *, crash_background: int = 0) -> None:
        super().__init__(name, bus=bus)
        self.seen: list[str] = []
        self.got = asyncio.Event()
        self.crash_background = crash_background
        self.background_runs = 0
        self.third_run = asyncio.Event()

    async def handle(self, message: Message) -> None:
        text = str(message.payload.get("text"))
        if text == "poison":
            raise ValueError("bad message")
        self.seen.append(text)
        self.got.set()

    async def background(self) -> None:
        self.background_runs += 1
        if self.background_runs == 3:
            self.third_run.set()
        if self.background_runs <= self.crash_background:
            raise RuntimeError("background crashed")


def note(recipient: str, text: str) -> Message:
    return Message(MessageType.AGENT_NOTIFICATION, "test", recipient, {"text": text})


async def test_poison_message_does_not_stop_the_agent() -> None:
    bus = InMemoryBus()
    agent = Recorder("a", bus)
    await agent.register()
    task = asyncio.create_task(supervise(agent))
    await bus.send(note("a", "poison"))
    await bus.send(note("a", "fine"))
    async with asyncio.timeout(5):
        await agent.got.wait()
    assert agent.seen == ["fine"]
    assert agent.restarts == 0
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_crash_restarts_with_backoff_and_keeps_inbox() -> None:
    bus = InMemoryBus()
    agent = Recorder("a", bus, crash_background=2)
    other = Recorder("b", bus)
    for each in (agent, other):
        await each.register()
    tasks = [
        asyncio.create_task(supervise(agent, initial_backoff=0.01)),
        asyncio.create_task(supervise(other)),
    ]
    async with asyncio.timeout(5):
        await agent.third_run.wait()
    assert agent.restarts == 2
    # the inbox survived the restarts, and the other agent was never affected
    await bus.send(note("a", "after"))
    await bus.send(note("b", "hello"))
    async with asyncio.timeout(5):
        await agent.got.wait()
        await other.got.wait()
    assert agent.seen == ["after"]
    assert other.restarts == 0
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert all(task.cancelled() for task in tasks)
