"""Helpers shared by the bus tests: a recording undeliverable hook, message builders, waits."""

from __future__ import annotations

import asyncio

from octopussy.bus import Message, MessageType

#: Upper bound for any wait in this suite (seconds); tests finish far sooner.
WAIT = 5.0


class Recorder:
    """An ``on_undeliverable`` hook that remembers its calls and signals each one."""

    def __init__(self) -> None:
        self.calls: list[tuple[Message, str]] = []
        self.changed = asyncio.Event()

    async def __call__(self, message: Message, reason: str) -> None:
        self.calls.append((message, reason))
        self.changed.set()

    async def wait_for(self, count: int) -> None:
        while len(self.calls) < count:
            self.changed.clear()
            await self.changed.wait()


def note(sender: str, recipient: str, seq: int = 0) -> Message:
    return Message(
        type=MessageType.AGENT_NOTIFICATION,
        sender=sender,
        recipient=recipient,
        payload={"text": f"{sender} #{seq}", "seq": seq},
    )


async def let_others_run(rounds: int = 20) -> None:
    """Give every ready task a chance to run. Used only to show something does *not* happen
    (a blocked send stays blocked); yielding to the loop is not a timed sleep."""
    for _ in range(rounds):
        await asyncio.sleep(0)
