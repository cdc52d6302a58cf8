"""The base agent: an inbox loop plus optional background work, run under supervision.

    runtime ──► supervise(agent) ──► agent.run() ─┬─ inbox loop: get() → handle() → ack()
                  ▲ restart with backoff          └─ background()   (mail polling, ...)
                  └── on an exception escaping run()

A message whose handler raises is logged, recorded as an ``agent_error`` event and acked;
the loop goes on with the next message (one poison message never stops an agent). An
exception escaping ``background()`` ends ``run()``; the supervisor logs it and starts the
agent again after a backoff that grows while it keeps failing and resets once it has run
stably. Cancellation is never swallowed: shutdown cancels the supervisor task and awaits it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, MutableMapping
from typing import Any

from octopussy.bus.base import Inbox, MessageBus
from octopussy.bus.messages import Message, MessageType
from octopussy.logs import agent_logger
from octopussy.store.base import Store


class AgentLog(logging.LoggerAdapter[logging.Logger]):
    """An agent's log: the logger of its *kind* (``octopussy.agent.<kind>``), its name at
    the start of each message (unless it is the kind itself, as for the coordinator).

    One logger per kind, not per name: ``logging`` keeps every ``Logger`` it made for the
    life of the process, and workers (``worker_1``, ``worker_2``, ...) come and go. The name
    is also on each record as ``agent``.
    """

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(agent_logger(kind), {"agent": name})
        self._prefix = "" if name == kind else f"{name}: "

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        msg, kwargs = super().process(msg, kwargs)
        return (f"{self._prefix}{msg}" if self._prefix else msg), kwargs


class Agent(ABC):
    """Subclasses implement ``handle`` and may override ``background``."""

    #: Kind used for log colors and display ("coordinator", "mail_agent", "worker", ...).
    kind: str = "agent"

    def __init__(self, name: str, *, bus: MessageBus, store: Store | None = None) -> None:
        self.name = name
        self.bus = bus
        self.store = store
        self.log = AgentLog(self.kind, name)
        self._inbox: Inbox | None = None
        self.restarts = 0

    @property
    def inbox(self) -> Inbox:
        if self._inbox is None:
            raise RuntimeError(f"agent {self.name!r} is not registered on the bus yet")
        return self._inbox

    async def register(self, *, inbox_size: int | None = None) -> None:
        """Create this agent's inbox (once; it survives restarts of ``run``)."""
        if self._inbox is None:
            self._inbox = await self.bus.register(self.name, maxsize=inbox_size)

    async def unregister(self) -> None:
        if self._inbox is not None:
            await self.bus.unregister(self.name)
            self._inbox = None

    @abstractmethod
    async def handle(self, message: Message) -> None:
        """React to one message from the inbox."""

    async def background(self) -> None:  # noqa: B027 - optional hook
        """Long-running work beside the inbox loop; the default has none."""

    async def run(self) -> None:
        """Run the inbox loop and ``background`` until cancelled or ``background`` fails."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._inbox_loop(), name=f"{self.name}:inbox")
            group.create_task(self.background(), name=f"{self.name}:background")

    async def _inbox_loop(self) -> None:
        inbox = self.inbox
        while True:
            message = await inbox.get()
            try:
                await self.handle(message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.log.exception("failed to handle %s %s: %s", message.type, message.id, exc)
                await self._record(
                    "agent_error",
                    {"message_id": message.id, "type": message.type.value, "error": str(exc)},
                    task_id=message.task_id,
                )
            finally:
                await inbox.ack(message)

    async def send(
        self,
        recipient: str,
        type: MessageType,
        payload: Mapping[str, Any] | None = None,
        *,
        task_id: str | None = None,
    ) -> Message:
        """Build and send a message; raises ``UnknownRecipient`` like the bus does."""
        message = Message(
            type=type,
            sender=self.name,
            recipient=recipient,
            payload=dict(payload or {}),
            task_id=task_id,
        )
        await self.bus.send(message)
        return message

    async def _record(
        self, kind: str, payload: Mapping[str, Any], *, task_id: str | None = None
    ) -> None:
        """Append an event to the store; a store failure is logged, never raised."""
        if self.store is None:
            return
        try:
            await self.store.add_event(kind, payload, agent=self.name, task_id=task_id)
        except Exception:
            self.log.exception("could not record %s event", kind)


async def supervise(
    agent: Agent,
    *,
    initial_backoff: float = 0.5,
    max_backoff: float = 30.0,
    stable_after: float = 60.0,
) -> None:
    """Run ``agent.run()`` forever, restarting it with backoff when it fails.

    Returns only if ``run`` returns normally (the agent chose to stop); raises
    ``CancelledError`` when cancelled. One failing agent never affects the others: each
    has its own supervisor task.
    """
    backoff = initial_backoff
    while True:
        started = time.monotonic()
        try:
            await agent.run()
            agent.log.info("agent %s stopped", agent.name)
            return
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # an ExceptionGroup from the TaskGroup, usually
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            if time.monotonic() - started >= stable_after:
                backoff = initial_backoff
            agent.restarts += 1
            agent.log.error(
                "agent %s crashed (%s); restarting in %.1fs", agent.name, _describe(exc), backoff
            )
            agent.log.debug("crash details", exc_info=exc)
            await agent._record(
                "agent_restart", {"error": _describe(exc), "restarts": agent.restarts}
            )
            await asyncio.sleep(backoff)
            backoff = min(max_backoff, backoff * 2)


def _describe(exc: BaseException) -> str:
    """One line for an exception, unwrapping single-member exception groups."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"
