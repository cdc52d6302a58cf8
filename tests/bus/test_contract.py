"""The ``MessageBus`` contract: every backend must pass this suite unchanged.

A backend joins by adding one builder to ``_BUILDERS`` (e.g. ``"redis"``, pointing at a
server the fixture starts on loopback). Tests never sleep for a fixed time: they wait for
events, bounded by ``asyncio.timeout(WAIT)``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Protocol

import pytest

from octopussy.bus import Inbox, Message, MessageBus, MessageType
from octopussy.bus.base import UndeliverableHook
from octopussy.bus.memory import InMemoryBus
from octopussy.errors import DeliveryError, UnknownRecipient

from .helpers import WAIT, Recorder, let_others_run, note


class BusFactory(Protocol):
    def __call__(
        self, *, maxsize: int | None = None, on_undeliverable: UndeliverableHook | None = None
    ) -> MessageBus: ...


def _memory(*, maxsize: int | None, on_undeliverable: UndeliverableHook | None) -> MessageBus:
    if maxsize is None:
        return InMemoryBus(on_undeliverable=on_undeliverable)
    return InMemoryBus(maxsize=maxsize, on_undeliverable=on_undeliverable)


#: One builder per backend; the suite runs once for each.
_BUILDERS: dict[str, Callable[..., MessageBus]] = {"memory": _memory}


@pytest.fixture(params=list(_BUILDERS))
async def bus_factory(request: pytest.FixtureRequest) -> AsyncIterator[BusFactory]:
    """Builds buses of one backend (``maxsize``: default inbox size) and closes them after."""
    build = _BUILDERS[request.param]
    made: list[MessageBus] = []

    def make(
        *, maxsize: int | None = None, on_undeliverable: UndeliverableHook | None = None
    ) -> MessageBus:
        bus = build(maxsize=maxsize, on_undeliverable=on_undeliverable)
        made.append(bus)
        return bus

    yield make
    for bus in made:
        await bus.close()


# registration -----------------------------------------------------------------------


async def test_implements_the_protocols(bus_factory: BusFactory) -> None:
    bus = bus_factory()
    inbox = await bus.register("worker")
    assert isinstance(bus, MessageBus)
    assert isinstance(inbox, Inbox)
    assert inbox.name == "worker"


async def test_register_lists_and_unregisters(bus_factory: BusFactory) -> None:
    bus = bus_factory()
    assert await bus.recipients() == []
    await bus.register("a")
    await bus.register("b")
    assert sorted(await bus.recipients()) == ["a", "b"]
    assert await bus.is_registered("a")
    await bus.unregister("a")
    assert not await bus.is_registered("a")
    assert await bus.recipients() == ["b"]


async def test_register_twice_is_an_error(bus_factory: BusFactory) -> None:
    bus = bus_factory()
    await bus.register("a")
    with pytest.raises(ValueError, match="'a'"):
        await bus.register("a")


async def test_name_can_be_registered_again_after_unregister(bus_factory: BusFactory) -> None:
    bus = bus_factory()
    await bus.register("a")
    await bus.unregister("a")
    inbox = await bus.register("a")
    message = note("x", "a")
    async with asyncio.timeout(WAIT):
        await bus.send(message)
        assert await inbox.get() == message


async def test_unregister_absent_name_is_fine(bus_factory: BusFactory) -> None:
    bus = bus_factory()
    await bus.unregister("nobody")


# delivery ---------------------------------------------------------------------------


async def test_send_get_ack(bus_factory: BusFactory) -> None:
    bus = bus_factory()
    inbox = await bus.register("b")
    message = Message(
        type=MessageType.ASSIGN_TASK,
        sender="coordinator",
        recipient="b",
        payload={"description": "sum 2 + 2", "nested": {"list": [1, 2.5, None, "ü"]}},
        task_id="t-1",
    )
    async with asyncio.timeout(WAIT):
        await bus.send(message)
        assert inbox.qsize() == 1
        got = await inbox.get()
        await inbox.ack(got)
    assert got == message
    assert got.task_id == "t-1"
    assert inbox.qsize() == 0


async def test_messages_go_only_to_their_recipient(bus_factory: BusFactory) -> None:
    bus = bus_factory()
    a = await bus.register("a")
    b = await bus.register("b")
    to_a, to_b = note("x", "a"), note("x", "b")
    async with asyncio.timeout(WAIT):
        await bus.send(to_b)
        await bus.send(to_a)
        assert await a.get() == to_a
        assert await b.get() == to_b
    assert a.qsize() == b.qsize() == 0


async def test_get_waits_for_a_message(bus_factory: BusFactory) -> None:
    bus = bus_factory()
    inbox = await bus.register("b")
    message = note("a", "b")
    async with asyncio.timeout(WAIT):
        getter = asyncio.create_task(inbox.get())
        await let_others_run()
        assert not getter.done()
        await bus.send(message)
        assert await getter == message


async def test_one_senders_messages_arrive_in_order(bus_factory: BusFactory) -> None:
    bus = bus_factory()
    inbox = await bus.register("b", maxsize=500)
    sent = [note("a", "b", i) for i in range(300)]
    async with asyncio.timeout(WAIT):
        for message in sent:
            await bus.send(message)
        received = [await inbox.get() for _ in sent]
    assert received == sent


async def test_message_survives_the_wire_form(bus_factory: BusFactory) -> None:
    message = Message(
        type=MessageType.TASK_RESULT,
        sender="worker-1",
        recipient="coordinator",
        payload={"result": "4", "response_number": 1, "extra": {"k": [1, "two"]}},
        task_id="t-9",
    )
    wire = json.loads(json.dumps(message.to_dict()))
    assert Message.from_dict(wire) == message
    with pytest.raises(ValueError, match="sender"):
        Message.from_dict({k: v for k, v in wire.items() if k != "sender"})
    with pytest.raises(ValueError, match="no_such_type"):
        Message.from_dict({**wire, "type": "no_such_type"})

    bus = bus_factory()
    inbox = await bus.register("coordinator")
    async with asyncio.timeout(WAIT):
        await bus.send(message)
        got = await inbox.get()
    assert got == message
    assert got.to_dict() == message.to_dict()


# undeliverable ----------------------------------------------------------------------


async def test_unknown_recipient_raises_and_is_reported(bus_factory: BusFactory) -> None:
    recorder = Recorder()
    bus = bus_factory(on_undeliverable=recorder)
    message = note("a", "ghost")
    with pytest.raises(UnknownRecipient) as caught:
        await bus.send(message)
    assert caught.value.recipient == "ghost"
    assert caught.value.sender == "a"
    assert "ghost" in str(caught.value)
    # The hook has been awaited before the sender saw the error.
    assert len(recorder.calls) == 1
    reported, reason = recorder.calls[0]
    assert reported == message
    assert "unknown" in reason


async def test_unknown_recipient_raises_without_a_hook(bus_factory: BusFactory) -> None:
    bus = bus_factory()
    with pytest.raises(UnknownRecipient):
        await bus.send(note("a", "ghost"))


async def test_unregister_reports_every_waiting_message(bus_factory: BusFactory) -> None:
    recorder = Recorder()
    bus = bus_factory(on_undeliverable=recorder)
    await bus.register("b")
    waiting = [note("a", "b", i) for i in range(3)]
    async with asyncio.timeout(WAIT):
        for message in waiting:
            await bus.send(message)
        await bus.unregister("b")
        await recorder.wait_for(3)
    assert [m for m, _ in recorder.calls] == waiting
    assert {reason for _, reason in recorder.calls} == {"recipient unregistered"}
    with pytest.raises(UnknownRecipient):
        await bus.send(note("a", "b", 9))


# backpressure -----------------------------------------------------------------------


async def test_full_inbox_blocks_sender_until_receiver_takes_one(bus_factory: BusFactory) -> None:
    bus = bus_factory()
    inbox = await bus.register("b", maxsize=2)
    first, second, third = (note("a", "b", i) for i in range(3))
    started, done = asyncio.Event(), asyncio.Event()

    async def send_third() -> None:
        started.set()
        await bus.send(third)
        done.set()

    async with asyncio.timeout(WAIT):
        await bus.send(first)
        await bus.send(second)
        sender = asyncio.create_task(send_third())
        await started.wait()
        await let_others_run()
        assert not done.is_set(), "send to a full inbox must wait"
        assert inbox.qsize() == 2

        assert await inbox.get() == first
        await done.wait()
        await sender
        assert [await inbox.get(), await inbox.get()] == [second, third]


async def test_bus_default_maxsize_applies_to_register(bus_factory: BusFactory) -> None:
    bus = bus_factory(maxsize=1)
    inbox = await bus.register("b")
    async with asyncio.timeout(WAIT):
        await bus.send(note("a", "b", 0))
        with pytest.raises(DeliveryError):
            await bus.send(note("a", "b", 1), timeout=0.01)
    assert inbox.qsize() == 1


async def test_send_timeout_on_full_inbox(bus_factory: BusFactory) -> None:
    bus = bus_factory()
    inbox = await bus.register("slowpoke", maxsize=1)
    kept, dropped = note("a", "slowpoke", 0), note("a", "slowpoke", 1)
    async with asyncio.timeout(WAIT):
        await bus.send(kept)
        with pytest.raises(DeliveryError) as caught:
            await bus.send(dropped, timeout=0.05)
        assert not isinstance(caught.value, UnknownRecipient)
        text = str(caught.value)
        assert "slowpoke" in text
        assert "1" in text  # the inbox size
        # The timed-out message was not delivered after all.
        assert await inbox.get() == kept
        assert inbox.qsize() == 0


async def test_send_with_timeout_succeeds_when_room_appears(bus_factory: BusFactory) -> None:
    bus = bus_factory()
    inbox = await bus.register("b", maxsize=1)
    first, second = note("a", "b", 0), note("a", "b", 1)
    async with asyncio.timeout(WAIT):
        await bus.send(first)
        sender = asyncio.create_task(bus.send(second, timeout=WAIT))
        await let_others_run()
        assert await inbox.get() == first
        await sender
        assert await inbox.get() == second


# concurrency ------------------------------------------------------------------------


async def test_concurrent_senders_all_delivered_exactly_once(bus_factory: BusFactory) -> None:
    senders, per_sender = 25, 200
    bus = bus_factory()
    # Small inbox: most sends hit backpressure, which is where races would show.
    inbox = await bus.register("sink", maxsize=8)

    async def produce(name: str) -> None:
        for seq in range(per_sender):
            await bus.send(note(name, "sink", seq))

    received: list[Message] = []

    async def consume() -> None:
        while len(received) < senders * per_sender:
            message = await inbox.get()
            await inbox.ack(message)
            received.append(message)

    async with asyncio.timeout(WAIT * 2), asyncio.TaskGroup() as group:
        group.create_task(consume())
        for i in range(senders):
            group.create_task(produce(f"s{i}"))

    assert len({m.id for m in received}) == len(received) == senders * per_sender
    by_sender: dict[str, list[int]] = {}
    for message in received:
        by_sender.setdefault(message.sender, []).append(message.payload["seq"])
    assert by_sender == {f"s{i}": list(range(per_sender)) for i in range(senders)}
    assert inbox.qsize() == 0


# close ------------------------------------------------------------------------------


async def test_send_after_close_fails(bus_factory: BusFactory) -> None:
    bus = bus_factory()
    await bus.register("b")
    await bus.close()
    with pytest.raises(DeliveryError):
        await bus.send(note("a", "b"))
    await bus.close()  # idempotent
