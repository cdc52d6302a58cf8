"""The worker on scripted models, a fake tool source, the in-memory bus and SQLite."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from octopussy.agents.worker import CANCELLED_TEXT, Worker
from octopussy.bus.base import Inbox
from octopussy.bus.memory import InMemoryBus
from octopussy.bus.messages import Message, MessageType
from octopussy.errors import BackendUnavailable, ToolError
from octopussy.llm.base import ChatMessage, ToolCall, ToolSpec
from octopussy.store.base import TaskRecord, TaskStatus
from octopussy.store.sqlite import SqliteStore
from octopussy.testing import CallInfo, FunctionModel, ScriptedModel, ScriptItem

WAIT = 5.0


@dataclass(frozen=True)
class FakeResult:
    text: str
    is_error: bool = False


class FakeTools:
    """``add(a, b)`` and ``fail()`` (the tool runs and reports an error)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def tool_specs(self) -> list[ToolSpec]:
        return [
            ToolSpec(
                "add",
                "Add two numbers.",
                {
                    "type": "object",
                    "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                    "required": ["a", "b"],
                },
            ),
            ToolSpec("fail", "Always fails."),
        ]

    async def call(self, name: str, arguments: Mapping[str, Any]) -> FakeResult:
        self.calls.append((name, dict(arguments)))
        if name == "add":
            return FakeResult(str(arguments["a"] + arguments["b"]))
        if name == "fail":
            return FakeResult("disk on fire", is_error=True)
        raise ToolError(f"unknown tool {name!r}")


async def add_task(
    store: SqliteStore, task_id: str = "t1", text: str = "add 2 and 3"
) -> TaskRecord:
    task = TaskRecord(id=task_id, description=text, created_at=time.time())
    await store.add_task(task)
    return task


def make_worker(
    bus: InMemoryBus, store: SqliteStore, model: ScriptedModel | FunctionModel, name: str = "w1"
) -> Worker:
    return Worker(name, bus=bus, store=store, model=model, tools=FakeTools(), max_steps=5)


async def drain(inbox: Inbox, count: int) -> list[Message]:
    messages = []
    async with asyncio.timeout(WAIT):
        for _ in range(count):
            message = await inbox.get()
            await inbox.ack(message)
            messages.append(message)
    return messages


async def test_success_with_a_tool_call(
    bus: InMemoryBus, store: SqliteStore, coordinator: Inbox
) -> None:
    task = await add_task(store)
    model = ScriptedModel([ToolCall("add", {"a": 2, "b": 3}), "The sum is 5."])
    worker = make_worker(bus, store, model)

    await worker.run_task(task)

    progress, result = await drain(coordinator, 2)
    assert progress.type is MessageType.TASK_PROGRESS
    assert progress.payload["text"].startswith("calling tool add with")
    assert progress.task_id == "t1"
    assert progress.sender == "w1"
    assert result.type is MessageType.TASK_RESULT
    assert dict(result.payload) == {
        "result": "The sum is 5.",
        "response_number": 1,
        "partial": False,
    }
    record = await store.get_task("t1")
    assert record is not None
    assert record.status is TaskStatus.DONE
    assert record.assigned_to == "w1"
    assert record.data["tool_calls"] == [
        {"name": "add", "arguments": {"a": 2, "b": 3}, "is_error": False}
    ]
    assert record.data["usage"]["requests"] == 2
    results = await store.results("t1")
    assert [(r.kind, r.number) for r in results] == [("progress", 1), ("result", 1)]
    # the task text is what the model saw, after the identity
    first = model.calls[0].messages
    assert first[0].role == "system"
    assert "w1" in first[0].content
    assert first[1].content == "add 2 and 3"
    # the same worker runs the next task; its results are numbered from 1 again
    await add_task(store, "t2", "again")
    worker.model = ScriptedModel(["again done"])
    await worker.run_task(TaskRecord(id="t2", description="again"))
    assert worker.tasks_run == 2
    assert [(r.kind, r.number) for r in await store.results("t2")] == [("result", 1)]
    (again,) = await drain(coordinator, 1)
    assert again.payload["response_number"] == 1


class CountingStore:
    """Wraps a store and counts the calls made to it, by method name."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.store, name)

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return await method(*args, **kwargs)

        return counted


async def test_a_task_with_one_tool_call_takes_three_store_calls(
    bus: InMemoryBus, store: SqliteStore, coordinator: Inbox
) -> None:
    await add_task(store)
    counting = CountingStore(store)
    model = ScriptedModel([ToolCall("add", {"a": 2, "b": 3}), "The sum is 5."])
    worker = Worker("w1", bus=bus, store=counting, model=model, tools=FakeTools())  # type: ignore[arg-type]
    await worker.run_task("t1")  # an id is enough: the claim reads the record
    # claim (read + RUNNING), progress row + tool calls so far, result + DONE + data
    assert counting.calls == ["claim_task", "add_result", "finish_task"]
    record = await store.get_task("t1")
    assert record is not None
    assert (record.status, record.assigned_to) == (TaskStatus.DONE, "w1")
    assert record.data["tool_calls"] == [
        {"name": "add", "arguments": {"a": 2, "b": 3}, "is_error": False}
    ]


async def test_tool_calls_are_in_the_store_while_the_task_runs(
    bus: InMemoryBus, store: SqliteStore, coordinator: Inbox
) -> None:
    await add_task(store)
    second_call, release = asyncio.Event(), asyncio.Event()

    async def answer(messages: list[ChatMessage], _info: CallInfo) -> ScriptItem:
        if messages[-1].role != "tool":
            return ToolCall("add", {"a": 2, "b": 3})
        second_call.set()
        await release.wait()
        return "The sum is 5."

    worker = make_worker(bus, store, FunctionModel(answer))
    run = asyncio.create_task(worker.run_task("t1"))
    async with asyncio.timeout(WAIT):
        await second_call.wait()
    # What a task view (or a crash) sees mid-task: the call, its outcome still to come.
    record = await store.get_task("t1")
    assert record is not None
    assert record.status is TaskStatus.RUNNING
    assert record.data["tool_calls"] == [{"name": "add", "arguments": {"a": 2, "b": 3}}]
    assert record.data["usage"]["requests"] == 1
    release.set()
    async with asyncio.timeout(WAIT):
        await run
    record = await store.get_task("t1")
    assert record is not None
    assert record.data["tool_calls"][0]["is_error"] is False
    assert record.data["usage"]["requests"] == 2


@pytest.mark.parametrize("status", [TaskStatus.DONE, TaskStatus.FAILED, TaskStatus.CANCELLED])
async def test_a_finished_task_is_not_run_again(
    bus: InMemoryBus, store: SqliteStore, coordinator: Inbox, status: TaskStatus
) -> None:
    task = await add_task(store)
    await store.update_task("t1", status=status, assigned_to="someone")
    model = ScriptedModel([])  # any model call fails the test
    worker = make_worker(bus, store, model)
    await worker.run_task(task)
    await worker.run_task("missing")
    assert model.calls == []
    assert worker.tasks_run == 0
    assert coordinator.qsize() == 0
    record = await store.get_task("t1")
    assert record is not None
    assert (record.status, record.assigned_to) == (status, "someone")


async def test_prompt_wins_over_description(
    bus: InMemoryBus, store: SqliteStore, coordinator: Inbox
) -> None:
    await store.add_task(TaskRecord(id="t1", description="short", prompt="the full prompt"))
    model = ScriptedModel(["ok"])
    record = await store.get_task("t1")
    assert record is not None
    await make_worker(bus, store, model).run_task(record)
    assert model.calls[0].messages[1].content == "the full prompt"


async def test_tool_error_is_fed_back_and_the_task_still_finishes(
    bus: InMemoryBus, store: SqliteStore, coordinator: Inbox
) -> None:
    task = await add_task(store)
    model = ScriptedModel([ToolCall("fail", {}), "failed", "it failed, sorry"])  # one nudge
    await make_worker(bus, store, model).run_task(task)

    progress, result = await drain(coordinator, 2)
    assert progress.type is MessageType.TASK_PROGRESS
    assert result.type is MessageType.TASK_RESULT
    assert result.payload["result"] == "it failed, sorry"
    fed_back = model.calls[1].messages[-1]
    assert fed_back.role == "tool"
    assert "disk on fire" in fed_back.content
    record = await store.get_task("t1")
    assert record is not None
    assert record.status is TaskStatus.DONE
    assert record.data["tool_calls"][0]["is_error"] is True


async def test_partial_answer_when_steps_run_out(
    bus: InMemoryBus, store: SqliteStore, coordinator: Inbox
) -> None:
    task = await add_task(store)
    model = ScriptedModel([ToolCall("add", {"a": 1, "b": 1})], repeat_last=True)
    await make_worker(bus, store, model).run_task(task)
    messages = await drain(coordinator, 6)
    assert [m.type for m in messages[:5]] == [MessageType.TASK_PROGRESS] * 5
    assert messages[5].type is MessageType.TASK_RESULT
    assert messages[5].payload["partial"] is True
    results = await store.results("t1")
    assert [r.number for r in results if r.kind == "progress"] == [1, 2, 3, 4, 5]


async def test_backend_unavailable_fails_the_task(
    bus: InMemoryBus, store: SqliteStore, coordinator: Inbox
) -> None:
    task = await add_task(store)
    model = ScriptedModel([BackendUnavailable("llama-server is down")])
    worker = make_worker(bus, store, model)
    await worker.run_task(task)  # does not raise

    (error,) = await drain(coordinator, 1)
    assert error.type is MessageType.TASK_ERROR
    assert "llama-server is down" in error.payload["error"]
    record = await store.get_task("t1")
    assert record is not None
    assert record.status is TaskStatus.FAILED
    assert [(r.kind, r.number) for r in await store.results("t1")] == [("error", 1)]
    # the worker is still usable
    await add_task(store, "t2")
    worker.model = ScriptedModel(["fine now"])
    record2 = await store.get_task("t2")
    assert record2 is not None
    await worker.run_task(record2)
    (result,) = await drain(coordinator, 1)
    assert result.type is MessageType.TASK_RESULT


async def test_our_bug_fails_the_task_without_crashing(
    bus: InMemoryBus, store: SqliteStore, coordinator: Inbox
) -> None:
    task = await add_task(store)
    await make_worker(bus, store, ScriptedModel([RuntimeError("oops")])).run_task(task)
    (error,) = await drain(coordinator, 1)
    assert error.type is MessageType.TASK_ERROR
    assert "RuntimeError: oops" in error.payload["error"]


async def test_missing_coordinator_does_not_crash(bus: InMemoryBus, store: SqliteStore) -> None:
    task = await add_task(store)
    await make_worker(bus, store, ScriptedModel(["done"])).run_task(task)
    record = await store.get_task("t1")
    assert record is not None
    assert record.status is TaskStatus.DONE


def held_model(started: asyncio.Event, release: asyncio.Event) -> FunctionModel:
    async def answer(_messages: list[ChatMessage], _info: CallInfo) -> ScriptItem:
        started.set()
        await release.wait()
        return "released"

    return FunctionModel(answer)


async def test_cancel_running_task(
    bus: InMemoryBus, store: SqliteStore, coordinator: Inbox
) -> None:
    task = await add_task(store)
    started, release = asyncio.Event(), asyncio.Event()
    worker = make_worker(bus, store, held_model(started, release))
    run = asyncio.create_task(worker.run_task(task))
    async with asyncio.timeout(WAIT):
        await started.wait()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(WAIT):
            await run

    (error,) = await drain(coordinator, 1)
    assert error.type is MessageType.TASK_ERROR
    assert error.payload["error"] == CANCELLED_TEXT
    record = await store.get_task("t1")
    assert record is not None
    assert record.status is TaskStatus.CANCELLED


async def test_shutdown_cancel_requeues_silently(
    bus: InMemoryBus, store: SqliteStore, coordinator: Inbox
) -> None:
    task = await add_task(store)
    started, release = asyncio.Event(), asyncio.Event()
    worker = make_worker(bus, store, held_model(started, release))
    run = asyncio.create_task(worker.run_task(task))
    async with asyncio.timeout(WAIT):
        await started.wait()
    worker.request_shutdown()
    run.cancel()
    await asyncio.wait({run}, timeout=WAIT)
    assert run.cancelled()
    assert coordinator.qsize() == 0
    record = await store.get_task("t1")
    assert record is not None
    assert record.status is TaskStatus.QUEUED


async def test_assign_task_over_the_bus(
    bus: InMemoryBus, store: SqliteStore, coordinator: Inbox
) -> None:
    await add_task(store)
    worker = make_worker(bus, store, ScriptedModel(["5"]))
    await worker.register()
    runner = asyncio.create_task(worker.run())
    try:
        await bus.send(
            Message(
                type=MessageType.ASSIGN_TASK,
                sender="coordinator",
                recipient="w1",
                payload={"description": "add 2 and 3"},
                task_id="t1",
            )
        )
        (result,) = await drain(coordinator, 1)
        assert result.type is MessageType.TASK_RESULT
        assert result.payload["result"] == "5"
    finally:
        runner.cancel()
        await asyncio.wait({runner}, timeout=WAIT)
    record = await store.get_task("t1")
    assert record is not None
    assert record.status is TaskStatus.DONE


async def test_assign_task_creates_an_unknown_task_and_skips_finished_ones(
    bus: InMemoryBus, store: SqliteStore, coordinator: Inbox
) -> None:
    model = ScriptedModel(["done"])
    worker = make_worker(bus, store, model)
    message = Message(
        type=MessageType.ASSIGN_TASK,
        sender="coordinator",
        recipient="w1",
        payload={"description": "new work"},
        task_id="fresh",
    )
    await worker.handle(message)
    record = await store.get_task("fresh")
    assert record is not None
    assert record.status is TaskStatus.DONE
    await worker.handle(message)  # finished: not run again (the script has no second item)
    assert len(model.calls) == 1


class FileTools:
    """``read_file`` answering as the built-in server does (tests/agents/test_sources.py)."""

    def tool_specs(self) -> list[ToolSpec]:
        return [ToolSpec("read_file", "Read a file.", {"type": "object", "properties": {}})]

    async def call(self, name: str, arguments: Mapping[str, Any]) -> FakeResult:
        return FakeResult(
            "     1\tThe octopus has three hearts and blue blood.\n[end of animals.txt]"
        )


async def test_an_answer_quoting_a_file_line_cites_the_file(
    bus: InMemoryBus, store: SqliteStore, coordinator: Inbox
) -> None:
    await add_task(store, text="Which file mentions the octopus?")
    model = ScriptedModel(
        [
            ToolCall("read_file", {"path": "animals.txt"}),
            "The octopus has three hearts and blue blood.",
        ]
    )
    worker = Worker("w1", bus=bus, store=store, model=model, tools=FileTools(), max_steps=5)

    await worker.run_task("t1")

    _, result = await drain(coordinator, 2)
    cited = "The octopus has three hearts and blue blood. (from animals.txt, line 1)"
    assert result.payload["result"] == cited
    assert [r.content for r in await store.results("t1") if r.kind == "result"] == [cited]


class WritingTools(FakeTools):
    """FakeTools plus a ``write_file`` that records what it was asked to write."""

    def tool_specs(self) -> list[ToolSpec]:
        return [*super().tool_specs(), ToolSpec("write_file", "Write a file.")]

    async def call(self, name: str, arguments: Mapping[str, Any]) -> FakeResult:
        if name == "write_file":
            self.calls.append((name, dict(arguments)))
            return FakeResult("written")
        return await super().call(name, arguments)


async def test_a_question_task_runs_without_the_withheld_tools(
    bus: InMemoryBus, store: SqliteStore, coordinator: Inbox
) -> None:
    task = TaskRecord(
        id="q1", description="Which is bigger?", created_at=time.time(), data={"question": True}
    )
    await store.add_task(task)
    model = ScriptedModel([ToolCall("write_file", {"path": "sales.csv"}), "It is 5."])
    tools = WritingTools()
    worker = Worker(
        "w1",
        bus=bus,
        store=store,
        model=model,
        tools=tools,
        question_withholds=frozenset({"write_file"}),
    )

    await worker.run_task("q1")

    assert [spec.name for spec in model.calls[0].tools] == ["add", "fail"]
    assert tools.calls == []  # the call of the withheld tool never reached the tool source
    refused = model.calls[1].messages[-1]
    assert refused.role == "tool"
    assert "the user asked a question" in refused.content
    _, result = await drain(coordinator, 2)
    assert result.payload["result"] == "It is 5."
    # a task that is not a question has every tool
    await add_task(store, "t2", "write it down")
    worker.model = model = ScriptedModel(["done"])
    await worker.run_task("t2")
    assert [spec.name for spec in model.calls[0].tools] == ["add", "fail", "write_file"]
