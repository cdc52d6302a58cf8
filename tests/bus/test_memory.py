"""``InMemoryBus`` specifics beyond the shared contract: sizes, counters, waking blocked
tasks on unregister/close, hook failures, cancellation."""

from __future__ import annotations

import asyncio
import logging

import pytest

from octopussy.bus.memory import DEFAULT_MAXSIZE, InMemoryBus
from octopussy.errors import DeliveryError, UnknownRecipient

from .helpers import WAIT, Recorder, let_others_run, note


async def test_default_inbox_size_is_1000() -> None:
    bus = InMemoryBus()
    inbox = await bus.register("b")
    assert inbox.maxsize == DEFAULT_MAXSIZE == 1000
    for seq in range(1000):
        await bus.send(note("a", "b", seq), timeout=0)
    with pytest.raises(DeliveryError, match="1000"):
        await bus.send(note("a", "b", 1000), timeout=0)


async def test_register_maxsize_overrides_the_bus_default() -> None:
    bus = InMemoryBus(maxsize=5)
    assert (await bus.register("default")).maxsize == 5
    assert (await bus.register("custom", maxsize=2)).maxsize == 2


@pytest.mark.parametrize("size", [0, -1])
async def test_maxsize_must_be_positive(size: int) -> None:
    with pytest.raises(ValueError, match="maxsize"):
        InMemoryBus(maxsize=size)
    with pytest.raises(ValueError, match="maxsize"):
        await InMemoryBus().register("b", maxsize=size)


async def test_stats_count_sent_delivered_undeliverable() -> None:
    recorder = Recorder()
    bus = InMemoryBus(on_undeliverable=recorder)
    assert bus.stats() == {
        "sent": 0,
        "delivered": 0,
        "undeliverable": 0,
        "inboxes": 0,
        "waiting": 0,
    }
    inbox = await bus.register("b", maxsize=2)
    await bus.send(note("a", "b", 0))
    await bus.send(note("a", "b", 1))
    with pytest.raises(UnknownRecipient):
        await bus.send(note("a", "ghost"))
    with pytest.raises(DeliveryError):
        await bus.send(note("a", "b", 2), timeout=0)
    assert bus.stats() == {
        "sent": 4,
        "delivered": 2,
        "undeliverable": 2,
        "inboxes": 1,
        "waiting": 2,
    }
    await inbox.get()
    assert bus.stats()["waiting"] == 1
    await bus.unregister("b")
    assert bus.stats() == {
        "sent": 4,
        "delivered": 2,
        "undeliverable": 3,
        "inboxes": 0,
        "waiting": 0,
    }
    assert len(recorder.calls) == 3


async def test_send_timeout_is_reported_to_the_hook() -> None:
    recorder = Recorder()
    bus = InMemoryBus(on_undeliverable=recorder)
    await bus.register("b", maxsize=1)
    await bus.send(note("a", "b", 0))
    late = note("a", "b", 1)
    with pytest.raises(DeliveryError):
        await bus.send(late, timeout=0.01)
    assert len(recorder.calls) == 1
    assert recorder.calls[0][0] == late
    assert "full" in recorder.calls[0][1]


async def test_unregister_wakes_blocked_sender_and_receiver() -> None:
    recorder = Recorder()
    bus = InMemoryBus(on_undeliverable=recorder)
    full = await bus.register("full", maxsize=1)
    empty = await bus.register("empty")
    waiting, blocked = note("a", "full", 0), note("a", "full", 1)
    await bus.send(waiting)
    async with asyncio.timeout(WAIT):
        sender = asyncio.create_task(bus.send(blocked))
        receiver = asyncio.create_task(empty.get())
        await let_others_run()
        assert not sender.done()
        assert not receiver.done()

        await bus.unregister("full")
        await bus.unregister("empty")
        with pytest.raises(UnknownRecipient):
            await sender
        with pytest.raises(DeliveryError, match="closed"):
            await receiver
    assert full.closed
    assert empty.closed
    assert sorted((m.payload["seq"], r) for m, r in recorder.calls) == [
        (0, "recipient unregistered"),
        (1, "recipient unregistered"),
    ]


async def test_close_reports_waiting_messages_and_wakes_everyone() -> None:
    recorder = Recorder()
    bus = InMemoryBus(on_undeliverable=recorder)
    await bus.register("full", maxsize=1)
    idle = await bus.register("idle")
    await bus.send(note("a", "full", 0))
    async with asyncio.timeout(WAIT):
        sender = asyncio.create_task(bus.send(note("a", "full", 1)))
        receiver = asyncio.create_task(idle.get())
        await let_others_run()
        await bus.close()
        with pytest.raises(DeliveryError, match="closed"):
            await sender
        with pytest.raises(DeliveryError, match="closed"):
            await receiver
    assert [r for _, r in recorder.calls] == ["bus closed", "bus closed"]
    assert await bus.recipients() == []
    with pytest.raises(DeliveryError, match="closed"):
        await bus.register("late")


async def test_a_failing_hook_is_logged_and_does_not_hide_the_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(message: object, reason: str) -> None:
        raise RuntimeError("recording failed")

    bus = InMemoryBus(on_undeliverable=broken)
    with (
        caplog.at_level(logging.ERROR, logger="octopussy.bus.memory"),
        pytest.raises(UnknownRecipient),
    ):
        await bus.send(note("a", "ghost"))
    assert "on_undeliverable hook failed" in caplog.text


async def test_cancelled_blocked_sender_does_not_lose_the_wakeup() -> None:
    bus = InMemoryBus()
    inbox = await bus.register("b", maxsize=1)
    await bus.send(note("a", "b", 0))
    async with asyncio.timeout(WAIT):
        first = asyncio.create_task(bus.send(note("x", "b", 1)))
        second = asyncio.create_task(bus.send(note("y", "b", 2)))
        await let_others_run()
        # Free a slot (waking ``first``) and cancel ``first`` before it can use it:
        # the slot must pass on to ``second``.
        assert (await inbox.get()).payload["seq"] == 0
        first.cancel()
        await second
        assert (await inbox.get()).payload["seq"] == 2
    assert first.cancelled()
    assert inbox.qsize() == 0


async def test_cancelled_receiver_does_not_lose_a_message() -> None:
    bus = InMemoryBus()
    inbox = await bus.register("b")
    async with asyncio.timeout(WAIT):
        first = asyncio.create_task(inbox.get())
        second = asyncio.create_task(inbox.get())
        await let_others_run()
        message = note("a", "b")
        await bus.send(message)  # wakes ``first`` ...
        first.cancel()  # ... which leaves without taking it
        assert await second == message
    assert first.cancelled()


async def test_send_waiting_for_room_keeps_per_sender_order() -> None:
    bus = InMemoryBus()
    inbox = await bus.register("b", maxsize=1)
    sent = [note("a", "b", i) for i in range(50)]

    async def produce() -> None:
        for message in sent:
            await bus.send(message)

    async with asyncio.timeout(WAIT):
        producer = asyncio.create_task(produce())
        received = [await inbox.get() for _ in sent]
        await producer
    assert received == sent
