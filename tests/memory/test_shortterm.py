"""Short-term memory: identity and task stay first, recent turns stay, old turns get
summarized (or dropped when the summarizer cannot help), tool calls keep their results."""

from __future__ import annotations

import pytest

from octopussy.errors import BackendUnavailable, ModelBehaviorError
from octopussy.llm.base import ChatMessage, ModelResponse, ToolCall
from octopussy.memory.shortterm import SUMMARY_PREFIX, ShortTermMemory, estimate_tokens
from octopussy.testing import ScriptedModel

IDENTITY = "You are worker-7, a careful file clerk."
TASK = "Tidy the reports folder."


def memory(
    summarizer: ScriptedModel | None, *, budget: int = 200, keep_recent: int = 4
) -> ShortTermMemory:
    return ShortTermMemory(
        identity=IDENTITY,
        task=TASK,
        budget_tokens=budget,
        summarizer=summarizer,
        keep_recent=keep_recent,
    )


def tool_turn(index: int, size: int = 200) -> list[ChatMessage]:
    """An assistant turn with two tool calls and their two results."""
    calls = [
        ToolCall("read_file", {"path": f"r{index}a.txt"}, id=f"c{index}a"),
        ToolCall("read_file", {"path": f"r{index}b.txt"}, id=f"c{index}b"),
    ]
    return [
        ChatMessage.assistant(f"step {index}", calls),
        ChatMessage.tool_result(calls[0], "a" * size),
        ChatMessage.tool_result(calls[1], "b" * size),
    ]


def assert_head(messages: list[ChatMessage]) -> None:
    assert messages[0] == ChatMessage.system(IDENTITY)
    assert messages[1] == ChatMessage.user(TASK)


def assert_pairs_intact(messages: list[ChatMessage]) -> None:
    """Every tool result answers a call made by an earlier assistant message that is present."""
    offered: set[str] = set()
    for message in messages:
        if message.role == "assistant":
            offered |= {call.id for call in message.tool_calls}
        if message.role == "tool":
            assert message.tool_call_id in offered, f"orphan tool result {message.tool_call_id}"
    for message in messages:  # and every call still has its results
        for call in message.tool_calls:
            assert any(m.tool_call_id == call.id for m in messages), f"call {call.id} lost"


def test_messages_start_with_identity_and_task() -> None:
    mem = memory(None)
    assert mem.messages() == [ChatMessage.system(IDENTITY), ChatMessage.user(TASK)]
    mem.append(ChatMessage.assistant("on it"))
    assert_head(mem.messages())
    assert mem.messages()[-1] == ChatMessage.assistant("on it")


async def test_under_budget_nothing_happens() -> None:
    summarizer = ScriptedModel()  # any call would fail loudly
    mem = memory(summarizer, budget=10_000)
    mem.extend(tool_turn(1))
    assert not await mem.compact_if_needed()
    assert summarizer.calls == []


async def test_compaction_summarizes_old_turns_and_keeps_head_and_recent() -> None:
    summarizer = ScriptedModel(["read r1a, r1b, r2a, r2b; all fine"])
    mem = memory(summarizer, keep_recent=4)
    for index in range(1, 4):
        mem.extend(tool_turn(index))
    mem.append(ChatMessage.assistant("thinking about step 4"))
    recent = mem.messages()[-4:]
    assert mem.tokens() > mem.budget_tokens

    assert await mem.compact_if_needed()

    messages = mem.messages()
    assert_head(messages)
    assert messages[2] == ChatMessage.user(SUMMARY_PREFIX + "read r1a, r1b, r2a, r2b; all fine")
    assert messages[3:] == recent
    assert mem.summary == "read r1a, r1b, r2a, r2b; all fine"
    assert_pairs_intact(messages)
    # The summarizer read the old turns, not the recent ones.
    prompt = summarizer.calls[0].messages[-1].content
    assert "r1a.txt" in prompt
    assert "r2b.txt" in prompt
    assert "thinking about step 4" not in prompt


async def test_a_tool_turn_is_never_split() -> None:
    summarizer = ScriptedModel(["summary"])
    # keep_recent=2 would start the recent part at the last tool result: extend back to the call.
    mem = memory(summarizer, keep_recent=2)
    for index in range(1, 4):
        mem.extend(tool_turn(index))
    assert await mem.compact_if_needed()
    messages = mem.messages()
    assert_pairs_intact(messages)
    assert [m.role for m in messages[3:]] == ["assistant", "tool", "tool"]
    assert messages[3].content == "step 3"


async def test_summarizer_failure_falls_back_to_dropping_oldest_turns() -> None:
    summarizer = ScriptedModel([BackendUnavailable("summarizer endpoint down")])
    mem = memory(summarizer, budget=300, keep_recent=3)
    for index in range(1, 5):
        mem.extend(tool_turn(index))
    recent = mem.messages()[-3:]

    assert await mem.compact_if_needed()

    messages = mem.messages()
    assert_head(messages)
    assert messages[2].role == "user"
    assert messages[2].content == f"[{mem.dropped} earlier messages dropped]"
    assert mem.dropped % 3 == 0  # whole turns only
    assert mem.dropped > 0
    assert messages[-3:] == recent
    assert mem.summary is None
    assert_pairs_intact(messages)


@pytest.mark.parametrize(
    "failure", [ModelBehaviorError("garbage"), ModelResponse(text="   ")], ids=["error", "empty"]
)
async def test_garbage_or_empty_summary_also_falls_back(
    failure: ModelBehaviorError | ModelResponse,
) -> None:
    mem = memory(ScriptedModel([failure]), keep_recent=3)
    for index in range(1, 4):
        mem.extend(tool_turn(index))
    assert await mem.compact_if_needed()
    assert mem.dropped > 0
    assert mem.summary is None
    assert_pairs_intact(mem.messages())


async def test_no_summarizer_drops_only_as_much_as_needed() -> None:
    mem = memory(None, budget=250, keep_recent=3)
    for index in range(1, 5):
        mem.extend(tool_turn(index, size=100))
    before = len(mem.messages())
    assert await mem.compact_if_needed()
    assert mem.tokens() <= mem.budget_tokens
    assert 0 < mem.dropped < 9  # not every older turn had to go
    assert len(mem.messages()) == before - mem.dropped + 1  # + the note
    assert_pairs_intact(mem.messages())


async def test_dropped_count_accumulates_across_compactions() -> None:
    mem = memory(None, budget=250, keep_recent=3)
    for index in range(1, 4):
        mem.extend(tool_turn(index, size=100))
    assert await mem.compact_if_needed()
    first = mem.dropped
    for index in range(4, 7):
        mem.extend(tool_turn(index, size=100))
    assert await mem.compact_if_needed()
    assert mem.dropped > first
    notes = [m for m in mem.messages() if m.content.endswith("earlier messages dropped]")]
    assert [m.content for m in notes] == [f"[{mem.dropped} earlier messages dropped]"]
    assert_head(mem.messages())


async def test_second_summary_includes_the_first() -> None:
    summarizer = ScriptedModel(["first summary", "second summary"])
    mem = memory(summarizer, keep_recent=3)
    for index in range(1, 4):
        mem.extend(tool_turn(index))
    assert await mem.compact_if_needed()
    for index in range(4, 7):
        mem.extend(tool_turn(index))
    assert await mem.compact_if_needed()
    assert "Earlier summary: first summary" in summarizer.calls[1].messages[-1].content
    summaries = [m for m in mem.messages() if m.content.startswith(SUMMARY_PREFIX)]
    assert [m.content for m in summaries] == [SUMMARY_PREFIX + "second summary"]
    assert_head(mem.messages())


async def test_nothing_old_enough_to_compact() -> None:
    summarizer = ScriptedModel()
    mem = memory(summarizer, budget=50, keep_recent=6)
    mem.extend(tool_turn(1))  # over budget, but all of it is recent
    assert not await mem.compact_if_needed()
    assert summarizer.calls == []


async def test_token_counter_is_pluggable() -> None:
    mem = ShortTermMemory(
        identity=IDENTITY,
        task=TASK,
        budget_tokens=3,
        summarizer=ScriptedModel(["s"]),
        keep_recent=1,
        count_tokens=lambda message: 1,
    )
    mem.extend([ChatMessage.user("a"), ChatMessage.assistant("b"), ChatMessage.user("c")])
    assert mem.tokens() == 5
    assert await mem.compact_if_needed()
    assert mem.tokens() == 4  # identity, task, summary, the one recent message


def test_estimate_counts_tool_call_arguments() -> None:
    plain = ChatMessage.assistant("")
    with_call = ChatMessage.assistant("", [ToolCall("write_file", {"content": "z" * 400})])
    assert estimate_tokens(with_call) >= estimate_tokens(plain) + 100


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="budget_tokens"):
        memory(None, budget=0)
    with pytest.raises(ValueError, match="keep_recent"):
        ShortTermMemory(identity="i", task="t", budget_tokens=10, summarizer=None, keep_recent=-1)
