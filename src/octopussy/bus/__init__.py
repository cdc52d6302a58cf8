"""The message bus: typed messages between agents (Protocol in ``base``, backends beside it)."""

from octopussy.bus.base import Inbox, MessageBus
from octopussy.bus.messages import Message, MessageType

__all__ = ["Inbox", "Message", "MessageBus", "MessageType"]
