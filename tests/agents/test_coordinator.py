"""The coordinator: conversation, streaming, failures that keep history intact, display."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from octopussy.agents.base import supervise
from octopussy.agents.coordinator import Coordinator
from octopussy.bus.memory import InMemoryBus
from octopussy.bus.messages import Message, MessageType
from octopussy.errors import BackendUnavailable, ModelBehaviorError
from octopussy.llm.base import ChatMessage, ToolCall
from octopussy.memory.shortterm import SUMMARY_PREFIX
from octopussy.orchestration.schedule import parse_schedule
from octopussy.store.base import TaskRecord
from octopussy.testing import CallInfo, FunctionModel, ScriptedModel


class ListPresenter:
    def __init__(self) -> None:
        self.shown: list[Message] = []
        self.event = asyncio.Event()

    async def show(self, message: Message) -> None:
        self.shown.append(message)
        self.event.set()


def make(model: ScriptedModel, presenter: ListPresenter | None = None) -> Coordinator:
    return Coordinator(bus=InMemoryBus(), model=model, system_prompt="SYS", presenter=presenter)


async def test_chat_keeps_history_and_system_prompt() -> None:
    model = ScriptedModel(["Hello!", "You said hi before."])
    coordinator = make(model)
    assert await coordinator.chat("hi") == "Hello!"
    assert await coordinator.chat("what did I say?") == "You said hi before."
    second = model.calls[1].messages
    assert [m.role for m in second] == ["system", "user", "assistant", "user"]
    assert second[0].content == "SYS"
    assert second[1].content == "hi"


async def test_stream_yields_deltas_then_commits() -> None:
    coordinator = make(ScriptedModel(["one two three"]))
    parts = [part async for part in coordinator.chat_stream("count")]
    assert "".join(parts) == "one two three"
    assert len(parts) == 3
    assert [m.content for m in coordinator.history] == ["count", "one two three"]


@pytest.mark.parametrize(
    "failure",
    [BackendUnavailable("down", url="http://127.0.0.1:9"), ModelBehaviorError("garbage")],
)
async def test_failure_leaves_history_untouched(failure: Exception) -> None:
    coordinator = make(ScriptedModel(["first", failure, "again"]))
    await coordinator.chat("one")
    with pytest.raises(type(failure)):
        await coordinator.chat("two")
    assert [m.content for m in coordinator.history] == ["one", "first"]
    assert await coordinator.chat("two") == "again"


async def test_empty_answer_is_a_model_error() -> None:
    coordinator = make(ScriptedModel(["   "]))
    with pytest.raises(ModelBehaviorError, match="empty"):
        await coordinator.chat("hi")
    assert coordinator.history == []


async def test_cancelled_stream_leaves_history_untouched() -> None:
    called = asyncio.Event()

    async def slow(_messages: object, _info: object) -> str:
        called.set()
        await asyncio.sleep(60)
        return "never"

    coordinator = Coordinator(bus=InMemoryBus(), model=FunctionModel(slow), system_prompt="S")

    async def consume() -> None:
        async for _ in coordinator.chat_stream("hi"):
            pass

    task = asyncio.create_task(consume())
    async with asyncio.timeout(5):
        await called.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert coordinator.history == []


async def test_long_conversation_is_summarized_and_keeps_the_system_prompt() -> None:
    summaries: list[str] = []

    def reply(messages: list[ChatMessage], info: CallInfo) -> str:
        if messages[0].content.startswith("You compress"):
            summaries.append(messages[-1].content)
            return "the user asked q1..q3"
        return "answer " + info.last_user_text + " " + "x" * 600

    model = FunctionModel(reply)
    coordinator = Coordinator(
        bus=InMemoryBus(), model=model, system_prompt="SYS", history_tokens=250
    )
    for text in ("q1", "q2", "q3", "q4", "q5"):
        await coordinator.chat(text)
    assert summaries, "the conversation never got compacted"
    assert "q1" in summaries[0]
    sent = model.calls[-1].messages
    assert sent[0].content == "SYS"  # identity stays first
    assert any(m.content == SUMMARY_PREFIX + "the user asked q1..q3" for m in sent)
    assert sent[-1].content == "q5"
    assert "q1" not in [m.content for m in sent]


async def test_turn_cap_compacts_even_a_short_conversation() -> None:
    def reply(messages: list[ChatMessage], info: CallInfo) -> str:
        return "S" if messages[0].content.startswith("You compress") else "ok"

    model = FunctionModel(reply)
    coordinator = Coordinator(bus=InMemoryBus(), model=model, system_prompt="S", history_turns=3)
    for number in range(6):
        await coordinator.chat(f"q{number}")
    sent = model.calls[-1].messages
    # system, summary, at most 2 * history_turns messages, the new question
    assert len(sent) <= 1 + 1 + 2 * 3 + 1
    assert sent[1].content == SUMMARY_PREFIX + "S"


async def test_messages_from_agents_are_shown() -> None:
    presenter = ListPresenter()
    coordinator = make(ScriptedModel([]), presenter)
    await coordinator.register()
    task = asyncio.create_task(supervise(coordinator))
    message = Message(MessageType.MAIL_NOTIFICATION, "mail_agent", "coordinator", {"subject": "Hi"})
    await coordinator.bus.send(message)
    async with asyncio.timeout(5):
        await presenter.event.wait()
    assert presenter.shown == [message]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


# -- routing ---------------------------------------------------------------------------


class Desk:
    """A task desk that records what the coordinator handed it."""

    def __init__(self) -> None:
        self.tasks: list[str] = []
        self.questions: list[bool] = []
        self.schedules: list[tuple[str, str]] = []

    async def create_task(self, description: str, *, question: bool = False) -> TaskRecord:
        self.tasks.append(description)
        self.questions.append(question)
        return TaskRecord(id=f"t{len(self.tasks)}", description=description)

    async def schedule_task(self, description: str, spec: str) -> Any:
        parse_schedule(spec)  # raises ConfigError like the runtime's
        self.schedules.append((description, spec))
        return SimpleNamespace(id=f"s{len(self.schedules)}", next_run=1_800_000_000.0)


def routed(model: ScriptedModel, bus: InMemoryBus | None = None) -> tuple[Coordinator, Desk]:
    desk = Desk()
    coordinator = Coordinator(bus=bus or InMemoryBus(), model=model, system_prompt="S", desk=desk)
    return coordinator, desk


async def test_work_becomes_a_task_and_the_user_sees_its_id() -> None:
    call = ToolCall("create_task", {"description": "Count the lines of notes.txt"})
    coordinator, desk = routed(ScriptedModel([call]))
    reply = await coordinator.chat("how many lines has notes.txt?")
    assert reply == "Task assigned (ID: t1)."
    assert desk.tasks == ["Count the lines of notes.txt"]
    assert desk.questions == [True]  # the user only asked: a question task
    assert coordinator.last_turn is not None
    assert coordinator.last_turn.task_ids == ["t1"]
    assert [m.content for m in coordinator.history] == [
        "how many lines has notes.txt?",
        "Task assigned (ID: t1).",
    ]


async def test_routing_tools_are_offered_and_a_plain_answer_streams() -> None:
    model = ScriptedModel(["Paris is the capital."])
    coordinator, desk = routed(model)
    parts = [part async for part in coordinator.chat_stream("capital of France?")]
    assert "".join(parts) == "Paris is the capital."
    assert [tool.name for tool in model.calls[0].tools] == ["create_task", "schedule_task"]
    assert desk.tasks == []
    assert coordinator.last_turn is not None
    assert coordinator.last_turn.task_ids == []


async def test_no_desk_means_no_routing_tools() -> None:
    model = ScriptedModel(["hi"])
    await make(model).chat("hello")
    assert model.calls[0].tools == ()


@pytest.mark.parametrize(
    "decision",
    [
        ModelBehaviorError("the model's JSON was cut off", raw='{"tool": "create_ta'),
        ToolCall("launch_rockets", {}),
        ToolCall("schedule_task", {"description": "x"}),  # no schedule
        "   ",  # empty answer
    ],
    ids=["garbage", "unknown-action", "missing-argument", "empty"],
)
async def test_an_unusable_decision_falls_back_to_a_plain_answer(decision: Any) -> None:
    model = ScriptedModel([decision, "Here is my answer."])
    coordinator, desk = routed(model)
    assert await coordinator.chat("hello there") == "Here is my answer."
    assert model.calls[1].tools == ()  # the fallback is asked without tools
    assert desk.tasks == []
    assert desk.schedules == []
    assert coordinator.history[-1].content == "Here is my answer."


async def test_an_unusable_decision_on_a_work_request_becomes_a_task() -> None:
    cut_off = ModelBehaviorError("the model's JSON was cut off", raw='{"tool": "create_ta')
    model = ScriptedModel([cut_off])
    coordinator, desk = routed(model)
    text = "Add milk as a new last line of shopping.txt."
    assert await coordinator.chat(text) == "Task assigned (ID: t1)."
    assert desk.tasks == [text]
    assert desk.questions == [False]  # a request: it may change files
    assert len(model.calls) == 1  # no plain answer was asked for
    assert coordinator.last_turn is not None
    assert coordinator.last_turn.task_ids == ["t1"]
    assert coordinator.history[-1].content == "Task assigned (ID: t1)."


async def test_a_question_that_falls_back_to_a_task_stays_a_question() -> None:
    cut_off = ModelBehaviorError("the model's JSON was cut off", raw='{"tool": "create_ta')
    coordinator, desk = routed(ScriptedModel([cut_off]))
    await coordinator.chat("Which month has the highest revenue in sales.csv?")
    assert desk.questions == [True]


async def test_a_description_that_loses_a_file_name_is_replaced_by_the_users_words() -> None:
    text = "sum the second column of data/sales.csv"
    model = ScriptedModel(
        [
            ToolCall("create_task", {"description": "Sum a column of the sales file"}),
            ToolCall("create_task", {"description": ""}),
        ]
    )
    coordinator, desk = routed(model)
    await coordinator.chat(text)
    await coordinator.chat("do it again")
    assert desk.tasks == [text, "do it again"]


async def test_a_description_that_changes_quoted_text_is_replaced_by_the_users_words() -> None:
    text = 'Create todo.json containing a JSON list with the strings "a" and "b".'
    kept = "Don't touch notes.txt; replace 'colour' in essay.txt"
    model = ScriptedModel(
        [
            ToolCall("create_task", {"description": "Put 'a' and 'b' in todo.json"}),
            ToolCall("create_task", {"description": "In essay.txt replace 'colour' (notes.txt)"}),
        ]
    )
    coordinator, desk = routed(model)
    await coordinator.chat(text)
    await coordinator.chat(kept)
    assert desk.tasks == [text, "In essay.txt replace 'colour' (notes.txt)"]


async def test_a_description_that_invents_a_name_is_replaced_by_the_users_words() -> None:
    asked = "Which file in the workspace mentions the octopus?"
    total = "What is the total revenue in sales.csv?"
    model = ScriptedModel(
        [
            # Measured on the embedded model: a folder and CSV columns nobody mentioned.
            ToolCall("create_task", {"description": "Find the file in the 'data' directory"}),
            ToolCall("create_task", {"description": "Sum 'amount' in data/sales.csv"}),
            # A quoted value must be said in the same case: the header is "revenue", and
            # 'Revenue' is a KeyError (measured on the embedded model).
            ToolCall("create_task", {"description": "Sum the 'Revenue' column of sales.csv"}),
            # Names from the message (quotes added) or the conversation are fine.
            ToolCall("create_task", {"description": "Sum the 'revenue' column of sales.csv"}),
            ToolCall("create_task", {"description": "Open 'sales.csv' and add notes.txt"}),
        ]
    )
    coordinator, desk = routed(model)
    await coordinator.chat(asked)
    await coordinator.chat(total)
    await coordinator.chat(total)
    await coordinator.chat(total)
    coordinator.memory.append(ChatMessage.assistant("[task t1 result] notes.txt has 7 lines"))
    await coordinator.chat("now do the same with sales.csv too")
    assert desk.tasks == [
        asked,
        total,
        total,
        "Sum the 'revenue' column of sales.csv",
        "Open 'sales.csv' and add notes.txt",
    ]


async def test_several_actions_in_one_decision() -> None:
    calls = [
        ToolCall("create_task", {"description": "write a.txt"}),
        ToolCall("schedule_task", {"description": "check disk", "schedule": "every 30 minutes"}),
    ]
    coordinator, desk = routed(ScriptedModel([calls]))
    reply = await coordinator.chat("write a.txt and check the disk every 30 minutes")
    lines = reply.splitlines()
    assert lines[0] == "Task assigned (ID: t1)."
    assert lines[1].startswith("Scheduled (ID: s1), every 30 minutes; first run at ")
    assert desk.schedules == [("check disk", "every 30 minutes")]
    assert coordinator.last_turn is not None
    assert (coordinator.last_turn.task_ids, coordinator.last_turn.schedule_ids) == (["t1"], ["s1"])


async def test_a_bad_schedule_is_explained_not_raised() -> None:
    call = ToolCall("schedule_task", {"description": "ping", "schedule": "every blue moon"})
    coordinator, desk = routed(ScriptedModel([call]))
    reply = await coordinator.chat("ping every blue moon")
    assert reply.startswith("I could not schedule that: ")
    assert desk.schedules == []


async def test_tool_requests_go_to_the_tool_agent_when_it_runs() -> None:
    bus = InMemoryBus()
    call = ToolCall("create_tool", {"description": "convert PDFs to text"})
    model = ScriptedModel(["no tool agent yet", call])
    coordinator, _ = routed(model, bus)
    await coordinator.chat("hello")
    assert "create_tool" not in [tool.name for tool in model.calls[0].tools]
    inbox = await bus.register("tool_agent")
    reply = await coordinator.chat("make me a PDF to text tool")
    assert "create_tool" in [tool.name for tool in model.calls[1].tools]
    message = await asyncio.wait_for(inbox.get(), 5)
    assert message.type is MessageType.CREATE_TOOL
    assert message.payload["description"] == "convert PDFs to text"
    assert reply == f"Tool requested (ID: {message.task_id}); the tool agent will report back."


async def test_a_task_result_enters_the_conversation() -> None:
    model = ScriptedModel([ToolCall("create_task", {"description": "count"}), "It was 42."])
    coordinator, _ = routed(model)
    await coordinator.chat("count things")
    result = Message(
        MessageType.TASK_RESULT, "worker_1", "coordinator", {"result": "42"}, task_id="t1"
    )
    await coordinator.handle(result)
    await coordinator.chat("what was the result?")
    sent = [m.content for m in model.calls[1].messages]
    assert "[task t1 result] 42" in sent


@pytest.mark.parametrize(
    ("text", "prefer"),
    [
        ("How many lines has notes.txt?", True),
        ("use Python to add 2 and 2", True),
        ("list the files in the workspace", True),
        ("I need a tool that converts Celsius to Fahrenheit", True),
        ("hello!", False),
        ("What is the capital of Italy?", False),
        ("which tools do you have?", False),
    ],
)
async def test_messages_about_files_or_code_prefer_tools(text: str, prefer: bool) -> None:
    model = ScriptedModel(["ok"])
    coordinator, _ = routed(model)
    await coordinator.chat(text)
    settings = model.calls[0].settings
    assert (settings is not None and settings.prefer_tools is True) is prefer
