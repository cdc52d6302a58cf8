"""The ``MessageBus`` Protocol every backend implements.

    sender ── send(Message) ──► bus ──► inbox of message.recipient ──► agent loop: get(), ack()

Rules every backend keeps (and the contract suite in tests/bus checks):
- ``register(name)`` gives the one ``Inbox`` of that name; registering a name twice is an error.
- ``send`` to an unregistered recipient raises ``UnknownRecipient`` (the sender sees it) and
  the bus reports it to its ``on_undeliverable`` hook (so it is recorded); nothing is
  dropped silently.
- Inboxes are bounded: ``send`` to a full inbox waits (backpressure), up to ``timeout``
  seconds if given, then raises ``DeliveryError``.
- Messages to one recipient arrive in the order they were sent by one sender.
- ``ack`` tells the bus a message is handled (a no-op in memory; durable backends redeliver
  unacked messages of a dead consumer).
- ``Inbox.get()`` on an inbox that was unregistered or whose bus was closed raises
  ``DeliveryError`` (a task blocked in ``get`` is woken, never left hanging).
- The undeliverable hook hears of every message the bus gives up on, with one of the
  ``REASON_*`` strings below: unknown recipient, send timeout, still waiting when its inbox
  was unregistered or the in-memory bus closed. A cancelled ``send`` is not reported: the
  sender knows.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from octopussy.bus.messages import Message

REASON_UNKNOWN = "unknown recipient"
REASON_TIMEOUT = "send timed out: inbox full"
REASON_UNREGISTERED = "recipient unregistered"
REASON_CLOSED = "bus closed"

#: Called with the message and the reason when a message cannot be delivered.
UndeliverableHook = Callable[[Message, str], Awaitable[None]]


@runtime_checkable
class Inbox(Protocol):
    """One agent's queue of incoming messages."""

    @property
    def name(self) -> str: ...

    async def get(self) -> Message:
        """Wait for the next message."""
        ...

    async def ack(self, message: Message) -> None:
        """Mark ``message`` handled."""
        ...

    def qsize(self) -> int:
        """Messages waiting (approximate for remote backends)."""
        ...


@runtime_checkable
class MessageBus(Protocol):
    """Routes messages to named inboxes."""

    async def register(self, name: str, *, maxsize: int | None = None) -> Inbox:
        """Create the inbox ``name``; raises ``ValueError`` if it exists."""
        ...

    async def unregister(self, name: str) -> None:
        """Remove the inbox ``name`` (no error if absent). Waiting messages are reported
        to the undeliverable hook, never dropped silently."""
        ...

    async def is_registered(self, name: str) -> bool: ...

    async def recipients(self) -> list[str]:
        """Names of every registered inbox."""
        ...

    async def send(self, message: Message, *, timeout: float | None = None) -> None:
        """Deliver ``message`` to ``message.recipient``; see the module rules."""
        ...

    async def close(self) -> None:
        """Release resources; later sends fail."""
        ...
