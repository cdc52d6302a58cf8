"""The ReAct loop on scripted models and a fake tool source, plus one run against the real
built-in MCP server."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from octopussy.agents.react import (
    FinalAnswer,
    ModelStep,
    Step,
    ToolCallStep,
    ToolResultStep,
    ToolSource,
    react,
    truncate_result,
)
from octopussy.config import load_config
from octopussy.errors import BackendUnavailable, ModelBehaviorError, ToolError
from octopussy.llm.base import ChatMessage, ModelResponse, ToolCall, ToolSpec
from octopussy.mcp.registry import MCPRegistry
from octopussy.mcp.servers import server_specs
from octopussy.memory.shortterm import ShortTermMemory
from octopussy.runtime import builtin_command
from octopussy.testing import CallInfo, FunctionModel, ScriptedModel
from proctable import processes_mentioning


@dataclass(frozen=True)
class FakeResult:
    text: str
    is_error: bool = False


Handler = Callable[[dict[str, Any]], Awaitable[FakeResult]]


class FakeTools:
    """A tool source with ``add(a, b)``, ``fail()`` and whatever a test registers."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.handlers: dict[str, tuple[ToolSpec, Handler]] = {}
        self.register(
            ToolSpec(
                "add",
                "Add two numbers.",
                {
                    "type": "object",
                    "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                    "required": ["a", "b"],
                },
            ),
            self._add,
        )
        self.register(ToolSpec("fail", "Always fails."), self._fail)

    def register(self, spec: ToolSpec, handler: Handler) -> None:
        self.handlers[spec.name] = (spec, handler)

    def tool_specs(self) -> list[ToolSpec]:
        return [spec for spec, _ in self.handlers.values()]

    async def call(self, name: str, arguments: Mapping[str, Any]) -> FakeResult:
        self.calls.append((name, dict(arguments)))
        if name not in self.handlers:
            raise ToolError(f"unknown tool {name!r}", hint="did you mean 'add'?")
        return await self.handlers[name][1](dict(arguments))

    @staticmethod
    async def _add(arguments: dict[str, Any]) -> FakeResult:
        return FakeResult(str(arguments["a"] + arguments["b"]))

    @staticmethod
    async def _fail(arguments: dict[str, Any]) -> FakeResult:
        return FakeResult("disk is full", is_error=True)


def conversation() -> list[ChatMessage]:
    return [ChatMessage.system("You are a worker."), ChatMessage.user("What is 2 + 3?")]


async def collect(steps: Any) -> list[Step]:
    return [step async for step in steps]


def final(steps: list[Step]) -> FinalAnswer:
    last = steps[-1]
    assert isinstance(last, FinalAnswer)
    return last


def tool_messages(messages: list[ChatMessage]) -> list[ChatMessage]:
    return [m for m in messages if m.role == "tool"]


async def test_direct_answer() -> None:
    model = ScriptedModel(["Five."])
    messages = conversation()
    steps = await collect(react(model, FakeTools(), messages))
    assert [type(s) for s in steps] == [ModelStep, FinalAnswer]
    answer = final(steps)
    assert (answer.text, answer.partial, answer.steps) == ("Five.", False, 1)
    assert answer.usage.requests == 1
    assert messages[-1] == ChatMessage.assistant("Five.")
    assert [spec.name for spec in model.calls[0].tools] == ["add", "fail"]


async def test_one_tool_call_then_answer() -> None:
    call = ToolCall("add", {"a": 2, "b": 3})
    model = ScriptedModel([call, "2 + 3 = 5"])
    tools = FakeTools()
    messages = conversation()
    steps = await collect(react(model, tools, messages))
    assert [type(s) for s in steps] == [
        ModelStep,
        ToolCallStep,
        ToolResultStep,
        ModelStep,
        FinalAnswer,
    ]
    result = steps[2]
    assert isinstance(result, ToolResultStep)
    assert (result.call, result.result_text, result.is_error) == (call, "5", False)
    assert tools.calls == [("add", {"a": 2, "b": 3})]
    # The second model call saw the assistant's call and the tool's answer to it.
    seen = model.calls[1].messages
    assert seen[-2].tool_calls == (call,)
    assert (seen[-1].role, seen[-1].tool_call_id, seen[-1].content) == ("tool", call.id, "5")
    assert final(steps).text == "2 + 3 = 5"
    assert final(steps).steps == 2


async def test_several_calls_run_in_order() -> None:
    calls = [ToolCall("add", {"a": 1, "b": 1}), ToolCall("add", {"a": 2, "b": 2})]
    model = ScriptedModel([calls, "done"])
    tools = FakeTools()
    messages = conversation()
    await collect(react(model, tools, messages))
    assert [args for _, args in tools.calls] == [{"a": 1, "b": 1}, {"a": 2, "b": 2}]
    assert [m.content for m in tool_messages(messages)] == ["2", "4"]


async def test_unknown_tool_feedback_then_recovery() -> None:
    model = ScriptedModel([ToolCall("multiply", {"a": 2}), ToolCall("add", {"a": 2, "b": 3}), "5"])
    messages = conversation()
    steps = await collect(react(model, FakeTools(), messages))
    first = steps[2]
    assert isinstance(first, ToolResultStep)
    assert first.is_error
    assert first.result_text.startswith("error: calling multiply")
    assert "unknown tool 'multiply'" in first.result_text
    assert "fix the arguments or pick another tool" in first.result_text
    assert "Available tools: add, fail" in first.result_text
    assert model.calls[1].messages[-1].content == first.result_text
    answer = final(steps)
    assert (answer.text, answer.partial, answer.steps) == ("5", False, 3)


async def test_missing_required_argument_is_feedback_not_a_call() -> None:
    model = ScriptedModel([ToolCall("add", {"a": 2}), "gave up", "gave up again"])
    tools = FakeTools()
    steps = await collect(react(model, tools, conversation()))
    result = steps[2]
    assert isinstance(result, ToolResultStep)
    assert result.is_error
    assert "missing required argument(s): b" in result.result_text
    assert tools.calls == []
    assert final(steps).text == "gave up again"


async def test_error_result_goes_back_as_feedback() -> None:
    model = ScriptedModel([ToolCall("fail", {}), "Disk full.", "The disk is full, sorry."])
    messages = conversation()
    steps = await collect(react(model, FakeTools(), messages))
    result = steps[2]
    assert isinstance(result, ToolResultStep)
    assert result.is_error
    assert "disk is full" in result.result_text
    assert "fix the arguments or pick another tool" in result.result_text
    assert tool_messages(messages)[0].content == result.result_text
    assert not final(steps).partial
    assert final(steps).text == "The disk is full, sorry."


async def test_an_answer_right_after_a_failed_call_gets_one_retry_nudge() -> None:
    model = ScriptedModel(
        [ToolCall("fail", {}), "error: disk full", ToolCall("fail", {}), "it failed", "x"]
    )
    steps = await collect(react(model, FakeTools(), conversation()))
    nudge = model.calls[2].messages[-1]
    assert nudge.role == "user"
    assert nudge.content.startswith("Your fail call failed and has not succeeded since.")
    # Once per run: the second answer after a failure is final.
    assert final(steps).text == "it failed"
    assert len(model.calls) == 4


async def test_garbage_model_output_gets_one_corrective_retry() -> None:
    model = ScriptedModel([ModelBehaviorError("tool call arguments are not JSON"), "Five."])
    messages = conversation()
    steps = await collect(react(model, FakeTools(), messages))
    assert [type(s) for s in steps] == [ModelStep, ModelStep, FinalAnswer]
    bad = steps[0]
    assert isinstance(bad, ModelStep)
    assert bad.error == "tool call arguments are not JSON"
    corrective = model.calls[1].messages[-1]
    assert corrective.role == "user"
    assert "could not be used (tool call arguments are not JSON)" in corrective.content
    answer = final(steps)
    assert (answer.text, answer.steps) == ("Five.", 2)


async def test_empty_reply_counts_as_garbage() -> None:
    model = ScriptedModel([ModelResponse(text="  "), "ok"])
    steps = await collect(react(model, FakeTools(), conversation()))
    first = steps[0]
    assert isinstance(first, ModelStep)
    assert first.error == "empty reply"
    assert final(steps).text == "ok"


async def test_max_steps_ends_with_a_partial_answer() -> None:
    def looping(messages: list[ChatMessage], info: CallInfo) -> ModelResponse:
        step = len(info.messages)
        return ModelResponse(
            text=f"thinking {step}", tool_calls=[ToolCall("add", {"a": step, "b": 1})]
        )

    model = FunctionModel(looping)
    steps = await collect(react(model, FakeTools(), conversation(), max_steps=3))
    answer = final(steps)
    assert answer.partial
    assert answer.steps == 3
    assert len(model.calls) == 3
    assert answer.text.startswith("[partial answer]")
    assert "step limit" in answer.text
    # The last useful content is the last successful tool result of the last step.
    assert "add returned:\n7" in answer.text


async def test_partial_answer_without_any_progress_says_so() -> None:
    model = ScriptedModel([ModelBehaviorError("garbage")], repeat_last=True)
    answer = final(await collect(react(model, FakeTools(), conversation(), max_steps=2)))
    assert answer.partial
    assert "No useful output" in answer.text


async def test_huge_tool_results_are_truncated() -> None:
    tools = FakeTools()

    async def dump(arguments: dict[str, Any]) -> FakeResult:
        return FakeResult("x" * 50_000)

    tools.register(ToolSpec("dump", "Dump a lot."), dump)
    model = ScriptedModel([ToolCall("dump", {}), "ok"])
    messages = conversation()
    steps = await collect(react(model, tools, messages, max_result_chars=1_000))
    result = steps[2]
    assert isinstance(result, ToolResultStep)
    assert len(result.result_text) <= 1_000
    assert "truncated" in result.result_text
    assert "of 50000 characters" in result.result_text
    assert tool_messages(messages)[0].content == result.result_text


def test_truncate_result_keeps_short_text_and_respects_the_limit() -> None:
    assert truncate_result("short", 100) == "short"
    for limit in (80, 200, 8_000):
        assert len(truncate_result("y" * 10_000, limit)) <= limit


async def test_cancellation_mid_tool_propagates() -> None:
    tools = FakeTools()
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def slow(arguments: dict[str, Any]) -> FakeResult:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        raise AssertionError("unreachable")

    tools.register(ToolSpec("slow", "Never returns."), slow)
    model = ScriptedModel([ToolCall("slow", {})])
    task = asyncio.create_task(collect(react(model, tools, conversation())))
    async with asyncio.timeout(5):
        await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cancelled.is_set()


async def test_our_own_bugs_are_raised() -> None:
    tools = FakeTools()

    async def buggy(arguments: dict[str, Any]) -> FakeResult:
        raise KeyError("oops")

    tools.register(ToolSpec("buggy", "Has a bug."), buggy)
    model = ScriptedModel([ToolCall("buggy", {})])
    with pytest.raises(KeyError):
        await collect(react(model, tools, conversation()))


async def test_backend_down_is_raised() -> None:
    model = ScriptedModel([BackendUnavailable("endpoint refused", url="http://127.0.0.1:1")])
    with pytest.raises(BackendUnavailable):
        await collect(react(model, FakeTools(), conversation()))


async def test_max_steps_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_steps"):
        await collect(react(ScriptedModel(), FakeTools(), conversation(), max_steps=0))


async def test_runs_on_short_term_memory() -> None:
    memory = ShortTermMemory(
        identity="You are a worker.", task="What is 2 + 3?", budget_tokens=10_000, summarizer=None
    )
    model = ScriptedModel([ToolCall("add", {"a": 2, "b": 3}), "5"])
    answer = final(await collect(react(model, FakeTools(), memory)))
    assert answer.text == "5"
    roles = [m.role for m in memory.messages()]
    assert roles == ["system", "user", "assistant", "tool", "assistant"]


# --------------------------------------------------------------------------- real MCP server


async def test_react_against_the_real_builtin_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (tmp_path / "config.yaml").write_text(f"llm:\n  provider: scripted\nworkspace: {ws}\n")
    monkeypatch.chdir(tmp_path)
    loaded = load_config(None, cwd=tmp_path)
    specs = server_specs(loaded, builtin_command=builtin_command(loaded))

    def script(messages: list[ChatMessage], info: CallInfo) -> ModelResponse | str:
        done = len(tool_messages(messages))
        if done == 0:
            return ModelResponse(
                tool_calls=[
                    ToolCall("write_file", {"path": "notes/hello.txt", "content": "hello react"})
                ]
            )
        if done == 1:
            return ModelResponse(tool_calls=[ToolCall("read_file", {"path": "notes/hello.txt"})])
        return f"The file says: {messages[-1].content}"

    model = FunctionModel(script)
    async with MCPRegistry(specs) as registry:
        assert await registry.wait_ready("builtin", timeout=30)
        tools: ToolSource = registry
        steps = await collect(react(model, tools, conversation()))
    results = [s for s in steps if isinstance(s, ToolResultStep)]
    assert [r.is_error for r in results] == [False, False]
    assert (ws / "notes" / "hello.txt").read_text() == "hello react"
    assert "hello react" in results[1].result_text
    answer = final(steps)
    assert not answer.partial
    assert "hello react" in answer.text
    assert {spec.name for spec in model.calls[0].tools} >= {"write_file", "read_file"}
    assert not processes_mentioning(str(ws)), "the builtin server outlived the registry"


async def test_a_repeated_call_with_the_same_result_is_called_out() -> None:
    call = ToolCall("add", {"a": 1, "b": 2})
    model = ScriptedModel([call, ToolCall("add", {"b": 2, "a": 1}), "3"])
    messages = conversation()
    steps = await collect(react(model, FakeTools(), messages))
    first, second = tool_messages(messages)
    assert first.content == "3"
    assert second.content.startswith("add returned exactly the same as in step 1;")
    assert final(steps).text == "3"


async def test_a_second_repeat_takes_the_tools_away_for_one_step() -> None:
    call = ToolCall("add", {"a": 1, "b": 2})
    model = ScriptedModel([call, call, call, "it is 3"])
    messages = conversation()
    steps = await collect(react(model, FakeTools(), messages))
    third = tool_messages(messages)[2]
    assert third.content.startswith("You called add again with the same arguments")
    assert [len(c.tools) for c in model.calls] == [2, 2, 2, 0]
    answer = final(steps)
    assert answer.text == "it is 3"
    assert not answer.partial


async def test_a_repeat_is_recognised_when_only_the_timing_differs() -> None:
    runs = iter(["0.10 s", "0.09 s", "12 ms"])

    async def run(arguments: dict[str, Any]) -> FakeResult:
        return FakeResult(f"exit code 1 (sandboxed, {next(runs)})\nSyntaxError", is_error=True)

    tools = FakeTools()
    tools.register(ToolSpec("run", "Run code."), run)
    call = ToolCall("run", {"code": "for x in y; print(x)"})
    model = ScriptedModel([call, call, call, "it failed"])
    messages = conversation()
    steps = await collect(react(model, tools, messages))
    first, second, third = tool_messages(messages)
    assert "0.10 s" in first.content
    assert second.content.startswith("run returned exactly the same as in step 1;")
    assert third.content.startswith("You called run again with the same arguments")
    assert [len(c.tools) for c in model.calls] == [3, 3, 3, 0]
    answer = final(steps)
    assert (answer.text, answer.partial) == ("it failed", False)  # no "try again" after


async def test_a_tool_call_written_as_text_when_tools_are_gone_ends_partial() -> None:
    call = ToolCall("add", {"a": 1, "b": 2})
    model = ScriptedModel([call, call, call, '{"tool": "add", "arguments": {"a": 1}}'])
    answer = final(await collect(react(model, FakeTools(), conversation())))
    assert answer.partial
    assert answer.text.startswith("[partial answer]")
    assert "add returned:\n3" in answer.text
