"""Typed bus messages: what agents say to each other.

Every message has an id, a time, a sender, a recipient, a ``MessageType`` and a payload
(a JSON-compatible dict whose keys depend on the type, see ``PAYLOAD_KEYS``). ``task_id``
ties task traffic together. ``to_dict``/``from_dict`` give the wire form used by the store
and by distributed bus backends.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class MessageType(StrEnum):
    """Every kind of message on the bus: the seed's set plus ``CREATE_TOOL``."""

    # agents -> coordinator
    AGENT_NOTIFICATION = "agent_notification"
    MAIL_NOTIFICATION = "mail_notification"
    CALENDAR_NOTIFICATION = "calendar_notification"
    TASK_RESULT = "task_result"
    TASK_ERROR = "task_error"
    TASK_PROGRESS = "task_progress"
    # coordinator -> agents
    ASSIGN_TASK = "assign_task"
    CREATE_TOOL = "create_tool"
    CONFIGURE_AGENT = "configure_agent"
    SHUTDOWN_AGENT = "shutdown_agent"


#: The payload keys each type is expected to carry (documentation and light validation).
PAYLOAD_KEYS: dict[MessageType, tuple[str, ...]] = {
    MessageType.AGENT_NOTIFICATION: ("text",),
    MessageType.MAIL_NOTIFICATION: ("sender", "subject", "summary"),
    MessageType.CALENDAR_NOTIFICATION: ("title", "start_time", "location", "description"),
    MessageType.TASK_RESULT: ("result", "response_number"),
    MessageType.TASK_ERROR: ("error",),
    MessageType.TASK_PROGRESS: ("text",),
    MessageType.ASSIGN_TASK: ("description",),
    MessageType.CREATE_TOOL: ("description",),
    MessageType.CONFIGURE_AGENT: (),
    MessageType.SHUTDOWN_AGENT: (),
}


def _new_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class Message:
    """One message on the bus. Immutable: forward a copy, never edit one in flight."""

    type: MessageType
    sender: str
    recipient: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    task_id: str | None = None
    id: str = field(default_factory=_new_id)
    timestamp: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible dict (the wire and storage form)."""
        return {
            "id": self.id,
            "type": self.type.value,
            "sender": self.sender,
            "recipient": self.recipient,
            "payload": dict(self.payload),
            "task_id": self.task_id,
            "timestamp": self.timestamp,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Message:
        """Inverse of ``to_dict``; raises ``ValueError`` on an unknown type or missing key."""
        try:
            return cls(
                type=MessageType(data["type"]),
                sender=str(data["sender"]),
                recipient=str(data["recipient"]),
                payload=dict(data.get("payload") or {}),
                task_id=data.get("task_id"),
                id=str(data["id"]),
                timestamp=float(data["timestamp"]),
            )
        except KeyError as exc:
            raise ValueError(f"bus message is missing {exc.args[0]!r}") from exc
