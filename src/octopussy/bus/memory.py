"""``InMemoryBus``: the embedded ``MessageBus`` backend, one bounded asyncio inbox per agent.

    send(m) ──► inboxes[m.recipient] ──► deque ──► get()      (no slot free: the sender waits)
         └────► unknown / timed out / unregistered / closed ──► on_undeliverable(m, reason)

Everything runs on one event loop, so routing is a dict lookup and delivery an append to a
deque. The inbox is our own small queue rather than ``asyncio.Queue`` because unregistering
or closing must wake every task blocked in ``get`` or ``send`` (``asyncio.Queue`` cannot be
shut down before Python 3.13), and because the hot path skips ``Queue``'s ``join`` bookkeeping.
Whenever a message cannot be delivered, the sender sees an error *and* the hook is told, so
the runtime can record it: nothing is dropped silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Final

from octopussy.bus.base import (
    REASON_CLOSED,
    REASON_TIMEOUT,
    REASON_UNKNOWN,
    REASON_UNREGISTERED,
    UndeliverableHook,
)
from octopussy.bus.messages import Message
from octopussy.errors import DeliveryError, UnknownRecipient

__all__ = ["DEFAULT_MAXSIZE", "InMemoryBus", "MemoryInbox"]

_log = logging.getLogger(__name__)

#: Inbox capacity when neither the bus nor ``register`` says otherwise.
DEFAULT_MAXSIZE: Final = 1000


class _InboxClosed(Exception):
    """Internal: the inbox a sender was waiting on went away while it waited."""


def _wake_next(waiters: deque[asyncio.Future[None]]) -> None:
    # Wake the first waiter still waiting; cancelled ones (timeouts) are skipped.
    while waiters:
        waiter = waiters.popleft()
        if not waiter.done():
            waiter.set_result(None)
            return


def _check_maxsize(maxsize: int) -> int:
    if maxsize < 1:
        raise ValueError(f"inbox maxsize must be at least 1, got {maxsize}")
    return maxsize


class MemoryInbox:
    """One agent's bounded FIFO inbox. Created by ``InMemoryBus.register``; implements ``Inbox``.

    Same algorithm as ``asyncio.Queue`` (futures woken one at a time, a woken task re-checks),
    plus ``_close`` which wakes everyone so no task is left blocked on a dead inbox.
    """

    __slots__ = ("_closed", "_getters", "_items", "_loop", "_maxsize", "_name", "_putters")

    def __init__(self, name: str, maxsize: int, loop: asyncio.AbstractEventLoop) -> None:
        self._name = name
        self._maxsize = maxsize
        self._loop = loop
        self._items: deque[Message] = deque()
        self._getters: deque[asyncio.Future[None]] = deque()
        self._putters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    @property
    def name(self) -> str:
        return self._name

    @property
    def maxsize(self) -> int:
        """How many messages may wait before senders block."""
        return self._maxsize

    @property
    def closed(self) -> bool:
        """True once the inbox was unregistered or its bus closed."""
        return self._closed

    def qsize(self) -> int:
        return len(self._items)

    async def get(self) -> Message:
        """Wait for the next message; raises ``DeliveryError`` once the inbox is closed."""
        items = self._items
        while not items:
            if self._closed:
                raise DeliveryError(
                    f"inbox {self._name!r} is closed (unregistered or bus closed)",
                    hint="stop reading from it; register the name again for a new inbox",
                )
            getter = self._loop.create_future()
            self._getters.append(getter)
            try:
                await getter
            except BaseException:
                getter.cancel()
                with contextlib.suppress(ValueError):
                    self._getters.remove(getter)
                # We were woken for an item but are leaving: pass the wake-up on.
                if items and not getter.cancelled():
                    _wake_next(self._getters)
                raise
        message = items.popleft()
        if self._putters:
            _wake_next(self._putters)
        return message

    async def ack(self, message: Message) -> None:
        """No-op: an in-memory message is gone once taken (nothing to redeliver)."""

    # bus side ---------------------------------------------------------------

    def _offer(self, message: Message) -> bool:
        """Append without waiting; False if full. The bus's hot path."""
        if len(self._items) >= self._maxsize:
            return False
        self._items.append(message)
        if self._getters:
            _wake_next(self._getters)
        return True

    async def _put(self, message: Message) -> None:
        """Append, waiting for room; raises ``_InboxClosed`` if the inbox goes away meanwhile."""
        items = self._items
        while len(items) >= self._maxsize:
            if self._closed:
                raise _InboxClosed
            putter = self._loop.create_future()
            self._putters.append(putter)
            try:
                await putter
            except BaseException:
                putter.cancel()
                with contextlib.suppress(ValueError):
                    self._putters.remove(putter)
                if len(items) < self._maxsize and not putter.cancelled():
                    _wake_next(self._putters)
                raise
        if self._closed:
            raise _InboxClosed
        items.append(message)
        if self._getters:
            _wake_next(self._getters)

    def _close(self) -> list[Message]:
        """Close the inbox, wake every waiter and return the messages that were waiting."""
        self._closed = True
        left = list(self._items)
        self._items.clear()
        for waiters in (self._getters, self._putters):
            while waiters:
                waiter = waiters.popleft()
                if not waiter.done():
                    waiter.set_result(None)
        return left

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._items)}/{self._maxsize}"
        return f"<MemoryInbox {self._name!r} {state}>"


class InMemoryBus:
    """The embedded message bus (implements ``MessageBus``) for agents of one event loop.

    ``maxsize`` is the default inbox capacity (``register(..., maxsize=)`` overrides it).
    ``on_undeliverable(message, reason)`` is awaited for every message that cannot be
    delivered: unknown recipient, send timeout, or still waiting when its inbox is
    unregistered or the bus closed. An exception from the hook is logged, never allowed to
    hide the delivery error from the sender.
    """

    def __init__(
        self,
        *,
        maxsize: int = DEFAULT_MAXSIZE,
        on_undeliverable: UndeliverableHook | None = None,
    ) -> None:
        self._maxsize = _check_maxsize(maxsize)
        self._on_undeliverable = on_undeliverable
        self._inboxes: dict[str, MemoryInbox] = {}
        self._closed = False
        self._sent = 0
        self._delivered = 0
        self._undeliverable = 0

    # registration -------------------------------------------------------------

    async def register(self, name: str, *, maxsize: int | None = None) -> MemoryInbox:
        """Create the inbox ``name``; ``ValueError`` if it exists, ``DeliveryError`` if closed."""
        if self._closed:
            raise DeliveryError(f"cannot register {name!r}: the bus is closed")
        if name in self._inboxes:
            raise ValueError(f"an inbox named {name!r} is already registered")
        size = self._maxsize if maxsize is None else _check_maxsize(maxsize)
        inbox = MemoryInbox(name, size, asyncio.get_running_loop())
        self._inboxes[name] = inbox
        return inbox

    async def unregister(self, name: str) -> None:
        """Remove ``name``; its waiting messages go to the hook ("recipient unregistered")."""
        inbox = self._inboxes.pop(name, None)
        if inbox is None:
            return
        # Closing happens before the first await, so no send can slip into the dead inbox.
        for message in inbox._close():
            await self._report(message, REASON_UNREGISTERED)

    async def is_registered(self, name: str) -> bool:
        return name in self._inboxes

    async def recipients(self) -> list[str]:
        return list(self._inboxes)

    # delivery -------------------------------------------------------------------

    async def send(self, message: Message, *, timeout: float | None = None) -> None:
        """Deliver ``message``; waits while the inbox is full (at most ``timeout`` seconds).

        Raises ``UnknownRecipient`` (no such inbox, or it was unregistered while we waited)
        or ``DeliveryError`` (timeout, bus closed); the hook has been awaited before either.
        """
        self._sent += 1
        # After close() the dict is empty, so the hot path needs no separate closed check.
        inbox = self._inboxes.get(message.recipient)
        if inbox is not None and inbox._offer(message):
            self._delivered += 1
            return
        await self._send_slow(inbox, message, timeout)

    async def _send_slow(
        self, inbox: MemoryInbox | None, message: Message, timeout: float | None
    ) -> None:
        if inbox is None:
            if self._closed:
                await self._report(message, REASON_CLOSED)
                raise DeliveryError(
                    f"cannot send {message.type} to {message.recipient!r}: the bus is closed"
                )
            await self._report(message, REASON_UNKNOWN)
            raise UnknownRecipient(message.recipient, sender=message.sender, kind=message.type)
        try:
            if timeout is None:
                await inbox._put(message)
            else:
                async with asyncio.timeout(max(timeout, 0.0)):
                    await inbox._put(message)
        except TimeoutError:
            await self._report(message, REASON_TIMEOUT)
            raise DeliveryError(
                f"cannot deliver {message.type} from {message.sender!r} to {inbox.name!r}: "
                f"inbox full ({inbox.maxsize} messages waiting) for {timeout:g} s",
                hint="the recipient is not keeping up; is it stuck?",
            ) from None
        except _InboxClosed:
            if self._closed:
                await self._report(message, REASON_CLOSED)
                raise DeliveryError(
                    f"cannot send {message.type} to {message.recipient!r}: the bus is closed"
                ) from None
            await self._report(message, REASON_UNREGISTERED)
            raise UnknownRecipient(
                message.recipient, sender=message.sender, kind=message.type
            ) from None
        self._delivered += 1

    async def _report(self, message: Message, reason: str) -> None:
        self._undeliverable += 1
        hook = self._on_undeliverable
        if hook is None:
            return
        try:
            await hook(message, reason)
        except Exception:
            # Recording is best effort: a broken hook must not replace the error the sender
            # needs to see, nor stop the remaining messages of an unregister from being reported.
            _log.exception("on_undeliverable hook failed for message %s (%s)", message.id, reason)

    # lifecycle ------------------------------------------------------------------

    async def close(self) -> None:
        """Close every inbox (waiting messages go to the hook as "bus closed"); idempotent.

        Later sends raise ``DeliveryError``; tasks blocked in ``get`` or ``send`` are woken
        and raise ``DeliveryError`` too.
        """
        if self._closed:
            return
        self._closed = True
        inboxes, self._inboxes = self._inboxes, {}
        left = [message for inbox in inboxes.values() for message in inbox._close()]
        for message in left:
            await self._report(message, REASON_CLOSED)

    def stats(self) -> dict[str, int]:
        """Counters since creation: ``sent`` (send calls), ``delivered`` (placed in an inbox),
        ``undeliverable`` (reported to the hook), plus ``inboxes`` and ``waiting`` right now."""
        return {
            "sent": self._sent,
            "delivered": self._delivered,
            "undeliverable": self._undeliverable,
            "inboxes": len(self._inboxes),
            "waiting": sum(inbox.qsize() for inbox in self._inboxes.values()),
        }

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._inboxes)} inboxes"
        return f"<InMemoryBus {state}>"
