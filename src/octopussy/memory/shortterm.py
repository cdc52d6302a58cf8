"""Short-term memory: one task's conversation, kept under a token budget.

    messages() ──► [system: identity] [user: task] [note?] [summary?] [older …] [recent …]
                    └── always first, never compacted ──┘                └ keep_recent ┘

    compact_if_needed()  (estimated tokens > budget, or more than max_messages turns kept)
        older turns ──► summarizer ──► one "Summary of earlier steps: …" message
                    └─ None / fails ──► drop oldest turns, "[N earlier messages dropped]"

Identity and task are re-injected at the head of every ``messages()`` (seed 001: after
compaction the agent still knows who it is and what it is doing). The body is split into
*turns*: an assistant message that calls tools together with the tool results that answer
it is one turn and is never split, so a provider never sees a tool result without its call.

Token counts are estimates (characters / 4 by default; pass ``count_tokens`` for a real
tokenizer). A summarizer that fails (backend down, garbage, empty text) never loses the task:
the memory falls back to dropping the oldest turns.

The coordinator's chat uses the same class with ``task=None``: its identity is the system
prompt, and the turns are the conversation with the user.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence

from octopussy.errors import OctopussyError
from octopussy.llm.base import ChatMessage, Model, ModelSettings

__all__ = ["SUMMARY_PREFIX", "ShortTermMemory", "estimate_tokens"]

log = logging.getLogger("octopussy.memory")

SUMMARY_PREFIX = "Summary of earlier steps: "
#: How much of one message the summarizer gets to read (characters).
_SUMMARIZER_MESSAGE_CHARS = 2_000
_SUMMARIZER_PROMPT = (
    "You compress the history of an agent's conversation. Summarize the conversation below "
    "in a few short sentences or bullet points: what was asked, what was tried, which tools "
    "were called with what outcome, facts learned, files touched, and what is still open. "
    "Keep names, paths, numbers, task ids and error messages exact. Answer with the summary "
    "only."
)

TokenCounter = Callable[[ChatMessage], int]


def estimate_tokens(message: ChatMessage) -> int:
    """Characters / 4 over content and tool-call arguments, plus a small per-message cost."""
    chars = len(message.content)
    for call in message.tool_calls:
        chars += len(call.name) + len(json.dumps(call.arguments, ensure_ascii=False, default=str))
    return 4 + chars // 4


class ShortTermMemory:
    """The conversation of one task: identity and task first, then the turns so far."""

    def __init__(
        self,
        *,
        identity: str,
        task: str | None,
        budget_tokens: int,
        summarizer: Model | None,
        keep_recent: int = 6,
        max_messages: int | None = None,
        count_tokens: TokenCounter = estimate_tokens,
    ) -> None:
        if budget_tokens < 1:
            raise ValueError(f"budget_tokens must be positive, got {budget_tokens}")
        if keep_recent < 0:
            raise ValueError(f"keep_recent must not be negative, got {keep_recent}")
        if max_messages is not None and max_messages <= keep_recent:
            raise ValueError(f"max_messages must exceed keep_recent, got {max_messages}")
        self.max_messages = max_messages
        self.identity = identity
        self.task = task
        self.budget_tokens = budget_tokens
        self.summarizer = summarizer
        self.keep_recent = keep_recent
        self.count_tokens = count_tokens
        self._body: list[ChatMessage] = []
        self._summary: str | None = None
        self._dropped = 0

    # -- the conversation

    def messages(self) -> list[ChatMessage]:
        """What the model sees: identity, task, what was compacted away, then the turns."""
        head = self._head()
        if self._dropped:
            head.append(ChatMessage.user(f"[{self._dropped} earlier messages dropped]"))
        if self._summary is not None:
            head.append(ChatMessage.user(SUMMARY_PREFIX + self._summary))
        return head + self._body

    def _head(self) -> list[ChatMessage]:
        head = [ChatMessage.system(self.identity)]
        if self.task is not None:
            head.append(ChatMessage.user(self.task))
        return head

    def append(self, message: ChatMessage) -> None:
        self._body.append(message)

    def extend(self, messages: Sequence[ChatMessage]) -> None:
        self._body.extend(messages)

    @property
    def summary(self) -> str | None:
        """The current summary of compacted turns, if any."""
        return self._summary

    @property
    def dropped(self) -> int:
        """How many messages were dropped without a summary so far."""
        return self._dropped

    def tokens(self) -> int:
        """The estimated size of ``messages()``."""
        return sum(self.count_tokens(m) for m in self.messages())

    # -- compaction

    async def compact_if_needed(self) -> bool:
        """Compact older turns when over budget; whether anything was compacted.

        The last ``keep_recent`` messages (extended back to a turn boundary) always stay.
        """
        too_many = self.max_messages is not None and len(self._body) > self.max_messages
        if not too_many and self.tokens() <= self.budget_tokens:
            return False
        split = self._split_index()
        if split == 0:
            return False
        older = self._body[:split]
        summary = await self._summarize(older)
        if summary is not None:
            self._summary = summary
            self._body = self._body[split:]
            log.debug("compacted %d messages into a summary", len(older))
            return True
        return self._drop_oldest(split)

    def _turn_starts(self) -> list[int]:
        """Indexes where a turn begins: tool results belong to the call before them."""
        return [i for i, m in enumerate(self._body) if m.role != "tool" or i == 0]

    def _split_index(self) -> int:
        """Where the recent part begins: at most ``len - keep_recent``, on a turn start."""
        limit = len(self._body) - self.keep_recent
        starts = [i for i in self._turn_starts() if i <= limit]
        return starts[-1] if starts else 0

    def _drop_oldest(self, split: int) -> bool:
        """Fallback: drop whole turns from the front of ``older`` until within budget."""
        starts = [i for i in self._turn_starts() if 0 < i <= split]
        cut = 0
        for cut in starts:
            remaining = self._body[cut:]
            dropped = self._dropped + cut
            note = ChatMessage.user(f"[{dropped} earlier messages dropped]")
            head = [*self._head(), note]
            if self._summary is not None:
                head.append(ChatMessage.user(SUMMARY_PREFIX + self._summary))
            fits = sum(self.count_tokens(m) for m in head + remaining) <= self.budget_tokens
            if fits and (self.max_messages is None or len(remaining) <= self.max_messages):
                break
        if cut == 0:
            return False
        self._body = self._body[cut:]
        self._dropped += cut
        log.debug("dropped %d oldest messages (no summary available)", cut)
        return True

    async def _summarize(self, older: Sequence[ChatMessage]) -> str | None:
        """The summarizer's summary of ``older`` (and the previous summary), or None."""
        if self.summarizer is None:
            return None
        parts = [f"Task: {self.task}"] if self.task is not None else []
        if self._summary is not None:
            parts.append(f"Earlier summary: {self._summary}")
        parts.extend(_render(message) for message in older)
        prompt = [ChatMessage.system(_SUMMARIZER_PROMPT), ChatMessage.user("\n\n".join(parts))]
        settings = ModelSettings(max_tokens=max(64, self.budget_tokens // 4))
        try:
            response = await self.summarizer.complete(prompt, settings=settings)
        except (OctopussyError, TimeoutError, OSError) as exc:
            log.warning("summarizer failed, dropping old turns instead: %s", exc)
            return None
        text = response.text.strip()
        if not text:
            log.warning("summarizer returned nothing, dropping old turns instead")
            return None
        return text.removeprefix(SUMMARY_PREFIX.strip()).strip() or None


def _render(message: ChatMessage) -> str:
    """One message as plain text for the summarizer."""
    content = message.content
    if len(content) > _SUMMARIZER_MESSAGE_CHARS:
        content = content[:_SUMMARIZER_MESSAGE_CHARS] + " […]"
    if message.role == "tool":
        return f"[tool result from {message.name}] {content}"
    calls = "; ".join(
        f"{call.name}({json.dumps(call.arguments, ensure_ascii=False, default=str)})"
        for call in message.tool_calls
    )
    line = f"[{message.role}] {content}".rstrip()
    return f"{line} → calls {calls}" if calls else line
