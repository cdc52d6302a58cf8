"""The one narrow seam between agents and language models.

    agent ──► Model.complete(messages, tools=, output_schema=, settings=) ──► ModelResponse
                                                                              text | tool_calls
          ──► Model.stream(...) ──► StreamEvent(text delta) ... StreamEvent(done, response)

Every provider (OpenAI-compatible endpoint, embedded llama.cpp, scripted test models)
implements this interface and nothing else; agents never see a provider's SDK. Messages
are plain dataclasses; conversion to a wire format is the provider's business.

``output_schema`` asks for JSON that matches a JSON schema (constrained decoding where
the provider can do it, prompt + parse + one repair otherwise); the parsed value is in
``ModelResponse.data``. ``tools`` offers tools; the model may answer with text or with
tool calls.
"""

from __future__ import annotations

import logging
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]

_usage_log = logging.getLogger("octopussy.usage")


def new_call_id() -> str:
    """A fresh id for a tool call the provider did not name itself."""
    return "call_" + uuid.uuid4().hex[:16]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """The model asks to call ``name`` with ``arguments`` (already parsed JSON)."""

    name: str
    arguments: dict[str, Any]
    id: str = field(default_factory=new_call_id)


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One turn of a conversation."""

    role: Role
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None  # role == "tool": which call this answers
    name: str | None = None  # role == "tool": the tool's name

    @classmethod
    def system(cls, content: str) -> ChatMessage:
        return cls("system", content)

    @classmethod
    def user(cls, content: str) -> ChatMessage:
        return cls("user", content)

    @classmethod
    def assistant(cls, content: str = "", tool_calls: Sequence[ToolCall] = ()) -> ChatMessage:
        return cls("assistant", content, tuple(tool_calls))

    @classmethod
    def tool_result(cls, call: ToolCall, content: str) -> ChatMessage:
        return cls("tool", content, tool_call_id=call.id, name=call.name)


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool the model may call: name, what it does, and a JSON schema for its input."""

    name: str
    description: str
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass(frozen=True, slots=True)
class ModelSettings:
    """Per-call knobs. ``None`` means "the provider's configured default"."""

    temperature: float | None = None
    max_tokens: int | None = None
    timeout: float | None = None
    #: The caller expects a tool call more than a direct answer. JSON-mode tool calling
    #: (small local models) then presents the answer option last, against their habit
    #: of answering; native tool calling ignores it.
    prefer_tools: bool | None = None

    def merged(self, override: ModelSettings | None) -> ModelSettings:
        """This settings object with every non-None field of ``override`` applied."""
        if override is None:
            return self
        changes = {
            name: getattr(override, name)
            for name in ("temperature", "max_tokens", "timeout", "prefer_tools")
            if getattr(override, name) is not None
        }
        return replace(self, **changes)


@dataclass(slots=True)
class Usage:
    """Tokens and wall time spent on model calls; adds up across calls."""

    input_tokens: int = 0
    output_tokens: int = 0
    seconds: float = 0.0
    requests: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.seconds + other.seconds,
            self.requests + other.requests,
        )

    def as_dict(self) -> dict[str, float | int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "seconds": round(self.seconds, 4),
            "requests": self.requests,
        }


@dataclass(slots=True)
class ModelResponse:
    """What one model call produced."""

    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    finish_reason: str | None = None
    data: Any = None  # the parsed JSON when an output_schema was asked for

    @property
    def message(self) -> ChatMessage:
        """The assistant turn to append to the conversation."""
        return ChatMessage.assistant(self.text, self.tool_calls)


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """A streamed piece: ``delta`` text while generating, then one ``done`` with the response."""

    kind: Literal["delta", "done"]
    text: str = ""
    response: ModelResponse | None = None


class Model(ABC):
    """A chat model. Implementations hold their own client; agents hold a ``Model``."""

    #: A short name for logs, usage records and ``doctor`` ("openai:llama3.2", "embedded:qwen").
    name: str = "model"

    @abstractmethod
    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] = (),
        output_schema: dict[str, Any] | None = None,
        settings: ModelSettings | None = None,
    ) -> ModelResponse:
        """One model call. Raises ``BackendUnavailable`` or ``ModelBehaviorError``."""

    async def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] = (),
        output_schema: dict[str, Any] | None = None,
        settings: ModelSettings | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """Yield text deltas as they are generated, then one ``done`` event.

        The default implementation makes one ``complete`` call and yields its text as a
        single delta; providers that can stream override it.
        """
        response = await self.complete(
            messages, tools=tools, output_schema=output_schema, settings=settings
        )
        if response.text and not response.tool_calls:
            yield StreamEvent("delta", response.text)
        yield StreamEvent("done", response=response)

    async def start(self) -> None:  # noqa: B027 - optional hook, empty on purpose
        """Load weights or open connections ahead of the first call (optional)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, empty on purpose
        """Release what ``start`` or the calls acquired."""


class UsageMeter:
    """Adds up usage per agent name; the runtime owns one and shows it in `/usage`.

    Every call is also logged (DEBUG, ``octopussy.usage``) with its agent, model and numbers.
    """

    def __init__(self) -> None:
        self._by_agent: dict[str, Usage] = {}

    def record(self, agent: str, usage: Usage, *, model: str = "") -> None:
        self._by_agent[agent] = self._by_agent.get(agent, Usage()) + usage
        _usage_log.debug(
            "model call: agent=%s model=%s in=%d out=%d seconds=%.3f",
            agent,
            model,
            usage.input_tokens,
            usage.output_tokens,
            usage.seconds,
        )

    def for_agent(self, agent: str) -> Usage:
        return self._by_agent.get(agent, Usage())

    def snapshot(self) -> dict[str, Usage]:
        return dict(self._by_agent)


class MeteredModel(Model):
    """Wraps a shared model for one agent: every call's usage is recorded under the agent."""

    def __init__(self, inner: Model, *, agent: str, meter: UsageMeter) -> None:
        self.inner = inner
        self.agent = agent
        self.meter = meter
        self.name = inner.name

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] = (),
        output_schema: dict[str, Any] | None = None,
        settings: ModelSettings | None = None,
    ) -> ModelResponse:
        response = await self.inner.complete(
            messages, tools=tools, output_schema=output_schema, settings=settings
        )
        self.meter.record(self.agent, response.usage, model=self.name)
        return response

    async def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] = (),
        output_schema: dict[str, Any] | None = None,
        settings: ModelSettings | None = None,
    ) -> AsyncIterator[StreamEvent]:
        async for event in self.inner.stream(
            messages, tools=tools, output_schema=output_schema, settings=settings
        ):
            if event.kind == "done" and event.response is not None:
                self.meter.record(self.agent, event.response.usage, model=self.name)
            yield event


class Stopwatch:
    """Measures one call's wall time for ``Usage.seconds``."""

    __slots__ = ("started",)

    def __init__(self) -> None:
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.started
