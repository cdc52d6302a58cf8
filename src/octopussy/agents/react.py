"""The worker's ReAct loop: an async generator of typed steps (STYLE.md §7).

    messages ──► model.complete(tools=…) ──► ModelStep
                   │ text, no tool calls ──────────────────────────► FinalAnswer(partial=False)
                   │ tool calls ──► ToolCallStep ──► tools.call ──► ToolResultStep ─┐
                   │ ModelBehaviorError ──► corrective user message ─────────────────┤
                   ▲                                                                 │
                   └──────────────── next step (≤ max_steps) ◄───────────────────────┘
                                     max_steps used up ──────────► FinalAnswer(partial=True)

Who is at fault decides what happens to an error:

- The *model* misused a tool (unknown name, missing arguments, the tool answered
  ``is_error``, ``ToolError``) or produced garbage (``ModelBehaviorError``, an empty reply):
  the problem goes back to the model as text and the loop goes on. It never raises.
- The model *loops* (a call with the same arguments and the same result as before): the
  first repeat is answered with "you have that already"; the second takes the tools away
  for one step so the model has to answer from what it has.
- *Our* code failed (any other exception) or a backend is down (``BackendUnavailable``
  from the model): it is raised to the caller. Cancellation always propagates.

Policy — step limits beyond ``max_steps``, tracing, progress reports, usage accounting —
wraps the loop by consuming its steps; it does not live here.

The conversation is extended in place: pass a plain ``list[ChatMessage]`` or anything shaped
like a :class:`Conversation` (``ShortTermMemory`` is one), which is then compacted before
every model call.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias

from octopussy.errors import ModelBehaviorError, ToolError
from octopussy.llm.base import (
    ChatMessage,
    Model,
    ModelResponse,
    ModelSettings,
    ToolCall,
    ToolSpec,
    Usage,
)

__all__ = [
    "DEFAULT_MAX_RESULT_CHARS",
    "Conversation",
    "FinalAnswer",
    "ModelStep",
    "Step",
    "ToolCallStep",
    "ToolResultLike",
    "ToolResultStep",
    "ToolSource",
    "react",
    "truncate_result",
]

log = logging.getLogger("octopussy.agents.react")

#: How much of one tool result goes back to the model (characters).
DEFAULT_MAX_RESULT_CHARS = 8_000
#: How much of the last useful content a partial answer quotes (characters).
_PARTIAL_EXCERPT_CHARS = 2_000
_FIX_HINT = "fix the arguments or pick another tool"
_REPEAT_FEEDBACK = (
    "{name} returned exactly the same as in step {step}; calling it again will not help. "
    "Use that result: answer with the final answer now, or take a different next step."
)
_ANSWER_NOW = (
    "You called {name} again with the same arguments and got the same result. No more "
    "tool calls: answer the task now from the results above."
)
#: Timings in a result ("exit code 1 (sandboxed, 0.10 s)") that differ between two runs of
#: the same call; left in, they hid a loop on one failing script (three identical calls).
_TIMING = re.compile(r"\b\d+(?:\.\d+)?\s?(?:ms|s)\b")
_RETRY_NUDGE = (
    "Your {name} call failed and has not succeeded since. Fix the call as its error says "
    "(for example the path: use paths relative to the workspace) and try again. Only if "
    "the task truly cannot be done, answer with the reason."
)


# --------------------------------------------------------------------------- protocols


class ToolResultLike(Protocol):
    """What a tool call returns; ``octopussy.mcp.registry.ToolResult`` fits."""

    @property
    def text(self) -> str: ...

    @property
    def is_error(self) -> bool: ...


class ToolSource(Protocol):
    """Where tools come from; ``MCPRegistry`` fits, and so does a small fake in tests.

    ``call`` raises ``ToolError`` when the call cannot be made (unknown tool, server down)
    and returns ``is_error=True`` when the tool ran and failed.
    """

    def tool_specs(self) -> list[ToolSpec]: ...

    async def call(self, name: str, arguments: Mapping[str, Any]) -> ToolResultLike: ...


class Conversation(Protocol):
    """A conversation the loop can extend and shrink; ``ShortTermMemory`` fits."""

    def messages(self) -> list[ChatMessage]: ...

    def append(self, message: ChatMessage) -> None: ...

    async def compact_if_needed(self) -> bool: ...


class _ListConversation:
    """A plain list as a conversation that never compacts."""

    def __init__(self, messages: list[ChatMessage]) -> None:
        self._messages = messages

    def messages(self) -> list[ChatMessage]:
        return list(self._messages)

    def append(self, message: ChatMessage) -> None:
        self._messages.append(message)

    async def compact_if_needed(self) -> bool:
        return False


# --------------------------------------------------------------------------- steps


@dataclass(frozen=True, slots=True)
class ModelStep:
    """One model call. ``error`` is set (and ``response`` empty) when the reply was garbage."""

    response: ModelResponse
    usage: Usage
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ToolCallStep:
    """The model asked for this call; it runs next."""

    call: ToolCall


@dataclass(frozen=True, slots=True)
class ToolResultStep:
    """What went back to the model for ``call`` (already truncated, errors as feedback)."""

    call: ToolCall
    result_text: str
    is_error: bool


@dataclass(frozen=True, slots=True)
class FinalAnswer:
    """The last step. ``partial`` when ``max_steps`` ran out before the model answered;
    ``after_failure`` names a tool whose last call failed before the answer (the answer
    may then be made up: measured, a failed script was followed by an invented total)."""

    text: str
    partial: bool
    steps: int
    usage: Usage = field(default_factory=Usage)
    after_failure: str | None = None


Step: TypeAlias = ModelStep | ToolCallStep | ToolResultStep | FinalAnswer


# --------------------------------------------------------------------------- the loop


async def react(
    model: Model,
    tools: ToolSource,
    messages: list[ChatMessage] | Conversation,
    *,
    max_steps: int = 10,
    settings: ModelSettings | None = None,
    max_result_chars: int = DEFAULT_MAX_RESULT_CHARS,
) -> AsyncIterator[Step]:
    """Run the ReAct loop over ``messages`` (extended in place); yield every step.

    A step is one model call (a garbage reply that is corrected counts too). The last item
    is always a :class:`FinalAnswer` unless an exception (ours, a backend being down, or
    cancellation) ends the generator.
    """
    if max_steps < 1:
        raise ValueError(f"max_steps must be at least 1, got {max_steps}")
    conversation = _ListConversation(messages) if isinstance(messages, list) else messages
    total = Usage()
    last_useful = ""
    steps = 0
    unresolved: str | None = None  # a tool that failed and has not succeeded since
    nudged = False
    seen: dict[tuple[str, str, str], int] = {}  # (tool, arguments, result) -> first step
    repeats = 0  # calls that repeated an earlier one exactly
    answer_now = False  # the next model call gets no tools
    while steps < max_steps:
        steps += 1
        await conversation.compact_if_needed()
        specs = [] if answer_now else tools.tool_specs()
        try:
            response = await model.complete(conversation.messages(), tools=specs, settings=settings)
        except ModelBehaviorError as exc:
            log.info("step %d: unusable model reply: %s", steps, exc)
            yield ModelStep(ModelResponse(), Usage(), error=str(exc))
            conversation.append(ChatMessage.user(_garbage_feedback(str(exc), specs)))
            continue
        total = total + response.usage
        if not response.tool_calls and not response.text.strip():
            yield ModelStep(response, response.usage, error="empty reply")
            conversation.append(ChatMessage.user(_garbage_feedback("the reply was empty", specs)))
            continue
        yield ModelStep(response, response.usage)
        conversation.append(response.message)
        if answer_now and not response.tool_calls and _looks_like_a_tool_call(response.text):
            # Without tools it may still write a call as text: that is no answer for the
            # user; the best is the labelled partial answer with the last real result.
            text = _partial_text(steps, last_useful, why="the model kept calling the same tool")
            yield FinalAnswer(text, partial=True, steps=steps, usage=total)
            return
        forced, answer_now = answer_now, False
        if response.text.strip():
            last_useful = response.text.strip()
        if not response.tool_calls:
            if unresolved is not None and not nudged and not forced and steps < max_steps:
                # Measured on the embedded model: after a failed call it tends to hand the
                # error (or the unchanged file) to the user as the answer. One reminder,
                # but not after "no more tool calls: answer now" (that answer is the one).
                nudged = True
                conversation.append(ChatMessage.user(_RETRY_NUDGE.format(name=unresolved)))
                continue
            yield FinalAnswer(
                response.text, partial=False, steps=steps, usage=total, after_failure=unresolved
            )
            return
        by_name = {spec.name: spec for spec in specs}
        for call in response.tool_calls:
            yield ToolCallStep(call)
            text, is_error = await _run_tool(tools, call, by_name.get(call.name), specs)
            text = truncate_result(text, max_result_chars)
            key = (
                call.name,
                json.dumps(call.arguments, sort_keys=True, default=str),
                _TIMING.sub("#", text),
            )
            repeated = key in seen
            if repeated:
                # Small models loop on a call whose result they already have; the same
                # result again will not help, so say that instead of repeating it. Measured
                # on the embedded model: once told, it may still loop until the step limit,
                # so a second repeat takes the tools away for one step and asks for the answer.
                repeats += 1
                text = _REPEAT_FEEDBACK.format(name=call.name, step=seen[key])
                if repeats >= 2:
                    text = _ANSWER_NOW.format(name=call.name)
                    answer_now = True
            else:
                seen[key] = steps
            conversation.append(ChatMessage.tool_result(call, text))
            yield ToolResultStep(call, text, is_error)
            if is_error and call.name in by_name:  # an unknown tool is not worth a retry
                unresolved = call.name
            elif call.name == unresolved:
                unresolved = None
            if not is_error and not repeated and text.strip():
                last_useful = f"{call.name} returned:\n{text.strip()}"
    yield FinalAnswer(_partial_text(steps, last_useful), partial=True, steps=steps, usage=total)


async def _run_tool(
    tools: ToolSource, call: ToolCall, spec: ToolSpec | None, specs: Sequence[ToolSpec]
) -> tuple[str, bool]:
    """Run one call; the model's mistakes come back as ``(feedback, True)``."""
    problem = _argument_problem(call, spec)
    if problem is not None:
        return _tool_feedback(call, problem, specs), True
    try:
        result = await tools.call(call.name, call.arguments)
    except ToolError as exc:
        return _tool_feedback(call, str(exc), specs), True
    if result.is_error:
        return _tool_feedback(call, result.text or "the tool failed without a message", specs), True
    return result.text, False


def _argument_problem(call: ToolCall, spec: ToolSpec | None) -> str | None:
    """A cheap check against the tool's schema: arguments are an object with every required key.

    Unknown names are left to the tool source (it may know aliases the specs do not show);
    deeper validation is the server's business and comes back as ``is_error``.
    """
    arguments: object = call.arguments
    if not isinstance(arguments, dict):
        return f"arguments must be a JSON object, got {type(arguments).__name__}"
    if spec is None:
        return None
    required = spec.parameters.get("required", [])
    missing = [name for name in required if isinstance(name, str) and name not in arguments]
    if missing:
        return f"missing required argument(s): {', '.join(missing)}"
    properties = spec.parameters.get("properties")
    if spec.parameters.get("additionalProperties") is False and isinstance(properties, dict):
        extra = sorted(name for name in arguments if name not in properties)
        if extra:
            return f"unknown argument(s): {', '.join(extra)}; allowed: {', '.join(properties)}"
    return None


def _tool_names(specs: Sequence[ToolSpec]) -> str:
    return ", ".join(spec.name for spec in specs) or "none"


def _tool_feedback(call: ToolCall, problem: str, specs: Sequence[ToolSpec]) -> str:
    arguments = json.dumps(call.arguments, ensure_ascii=False, default=str)
    if len(arguments) > 300:
        arguments = arguments[:300] + "…"
    return (
        f"error: calling {call.name} with {arguments} failed: {problem} — {_FIX_HINT}. "
        f"Available tools: {_tool_names(specs)}."
    )


def _garbage_feedback(problem: str, specs: Sequence[ToolSpec]) -> str:
    return (
        f"Your last reply could not be used ({problem}). Answer with plain text, or call one "
        f"of the available tools with JSON arguments. Available tools: {_tool_names(specs)}."
    )


def _looks_like_a_tool_call(text: str) -> bool:
    return bool(re.match(r'\s*(?:```\w*\s*)?\{\s*"(?:tool|name)"\s*:', text))


def _partial_text(steps: int, last_useful: str, why: str = "the step limit was reached") -> str:
    head = f"[partial answer] Stopped after {steps} step(s) without a final answer ({why})."
    if not last_useful:
        return head + " No useful output was produced."
    excerpt = truncate_result(last_useful, _PARTIAL_EXCERPT_CHARS)
    return f"{head}\nLast progress:\n{excerpt}"


def truncate_result(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, ending with a note that says so."""
    if len(text) <= limit:
        return text
    note = f"\n[… truncated: showing the first {{kept}} of {len(text)} characters]"
    kept = max(0, limit - len(note.format(kept=limit)))
    return text[:kept] + note.format(kept=kept)
