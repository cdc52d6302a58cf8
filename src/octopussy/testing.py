"""Deterministic models for tests, demos and benchmarks (STYLE.md §6).

    ScriptedModel(["hello", ToolCall(...), RuntimeError("boom")])
        answers call N with item N; records every call; an unexpected extra call fails loudly.
        A text item '{"tool": NAME, "arguments": {...}}' is a tool call when tools are
        offered (that is how a ``provider: scripted`` config script names one).
    FunctionModel(fn)
        answers every call with ``fn(messages, info)`` (sync or async).

Both are real ``Model`` implementations, selectable in config (``provider: scripted``) so
end-to-end tests drive the real CLI, runtime and agents without a network or weights.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from octopussy.errors import ModelBehaviorError, OctopussyError
from octopussy.llm.base import (
    ChatMessage,
    Model,
    ModelResponse,
    ModelSettings,
    Stopwatch,
    StreamEvent,
    ToolCall,
    ToolSpec,
    Usage,
)
from octopussy.llm.jsontools import parse_tool_choice

#: What a script item may be: plain text, a full response, tool calls, or an error to raise.
ScriptItem = str | ModelResponse | ToolCall | Sequence[ToolCall] | BaseException


class UnexpectedModelCall(OctopussyError):
    """A scripted model was called more often than its script allows."""


@dataclass(frozen=True, slots=True)
class CallInfo:
    """What one call to a test model received."""

    messages: tuple[ChatMessage, ...]
    tools: tuple[ToolSpec, ...]
    output_schema: dict[str, Any] | None
    settings: ModelSettings | None

    @property
    def last_user_text(self) -> str:
        for message in reversed(self.messages):
            if message.role == "user":
                return message.content
        return ""


def _estimate_tokens(text: str) -> int:
    return max(1, len(text) // 4) if text else 0


def _to_response(item: ScriptItem, info: CallInfo, model_name: str) -> ModelResponse:
    if isinstance(item, BaseException):
        raise item
    if isinstance(item, ModelResponse):
        response = item
    elif isinstance(item, ToolCall):
        response = ModelResponse(tool_calls=[item])
    elif isinstance(item, str) and info.tools and item.lstrip().startswith('{"tool"'):
        # A config script names tool calls the way JSON-mode models write them.
        response = parse_tool_choice(item, info.tools)
    elif isinstance(item, str):
        response = ModelResponse(text=item)
    else:
        response = ModelResponse(tool_calls=list(item))
    if info.output_schema is not None and response.data is None and response.text:
        try:
            response.data = json.loads(response.text)
        except json.JSONDecodeError as exc:
            raise ModelBehaviorError(
                "scripted model returned text that is not JSON", raw=response.text
            ) from exc
    if not response.model:
        response.model = model_name
    if response.usage.requests == 0:
        prompt = sum(_estimate_tokens(m.content) for m in info.messages)
        response.usage = Usage(prompt, _estimate_tokens(response.text), 0.0, 1)
    return response


class _RecordingModel(Model):
    """Shared plumbing: call recording, optional latency, word-by-word streaming."""

    def __init__(self, *, name: str, delay: float = 0.0) -> None:
        self.name = name
        self.delay = delay
        self.calls: list[CallInfo] = []

    async def _answer(self, info: CallInfo) -> ModelResponse:
        raise NotImplementedError

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] = (),
        output_schema: dict[str, Any] | None = None,
        settings: ModelSettings | None = None,
    ) -> ModelResponse:
        info = CallInfo(tuple(messages), tuple(tools), output_schema, settings)
        self.calls.append(info)
        watch = Stopwatch()
        if self.delay:
            await asyncio.sleep(self.delay)
        response = await self._answer(info)
        if not response.usage.seconds:
            response.usage.seconds = watch.elapsed()
        return response

    async def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] = (),
        output_schema: dict[str, Any] | None = None,
        settings: ModelSettings | None = None,
    ) -> AsyncIterator[StreamEvent]:
        response = await self.complete(
            messages, tools=tools, output_schema=output_schema, settings=settings
        )
        if response.text and not response.tool_calls:
            words = response.text.split(" ")
            for index, word in enumerate(words):
                yield StreamEvent("delta", word if index == 0 else " " + word)
                await asyncio.sleep(0)
        yield StreamEvent("done", response=response)


class ScriptedModel(_RecordingModel):
    """Answers calls in order from a script; fails on a call the script does not cover.

    ``repeat_last=True`` keeps answering with the last item instead (useful for a REPL
    demo that should answer anything).
    """

    def __init__(
        self,
        script: Sequence[ScriptItem] = (),
        *,
        name: str = "scripted",
        delay: float = 0.0,
        repeat_last: bool = False,
    ) -> None:
        super().__init__(name=name, delay=delay)
        self.script: list[ScriptItem] = list(script)
        self.repeat_last = repeat_last
        self._position = 0

    @property
    def remaining(self) -> int:
        return len(self.script) - self._position

    async def _answer(self, info: CallInfo) -> ModelResponse:
        if self._position >= len(self.script):
            if not (self.repeat_last and self.script):
                raise UnexpectedModelCall(
                    f"scripted model {self.name!r} got call #{len(self.calls)} but its script "
                    f"has {len(self.script)} item(s); last user text: {info.last_user_text!r}"
                )
            item = self.script[-1]
        else:
            item = self.script[self._position]
            self._position += 1
        return _to_response(item, info, self.name)


ModelFunction = Callable[[list[ChatMessage], CallInfo], "ScriptItem | Awaitable[ScriptItem]"]


class FunctionModel(_RecordingModel):
    """Answers every call with ``function(messages, info)``; the function may be async."""

    def __init__(
        self, function: ModelFunction, *, name: str = "function", delay: float = 0.0
    ) -> None:
        super().__init__(name=name, delay=delay)
        self.function = function

    async def _answer(self, info: CallInfo) -> ModelResponse:
        result = self.function(list(info.messages), info)
        if inspect.isawaitable(result):
            result = await result
        return _to_response(result, info, self.name)


def echo_model(*, name: str = "echo", delay: float = 0.0) -> FunctionModel:
    """A model that answers "echo: <last user text>" (config ``provider: scripted``)."""
    return FunctionModel(
        lambda _messages, info: f"echo: {info.last_user_text}", name=name, delay=delay
    )
