"""The worker pool with real workers on a gated test model, the in-memory bus and SQLite.

Tasks are held inside the model by per-task ``asyncio.Event`` gates, so every ordering is
decided by the test; all waits are bounded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from octopussy.agents.worker import CANCELLED_TEXT, Worker
from octopussy.bus.base import Inbox
from octopussy.bus.memory import InMemoryBus
from octopussy.bus.messages import MessageType
from octopussy.llm.base import ChatMessage, ToolSpec
from octopussy.orchestration.pool import WorkerPool
from octopussy.store.base import TaskRecord, TaskStatus
from octopussy.store.sqlite import SqliteStore
from octopussy.testing import CallInfo, FunctionModel, ScriptItem

WAIT = 5.0


@dataclass(frozen=True)
class FakeResult:
    text: str
    is_error: bool = False


class NoTools:
    def tool_specs(self) -> list[ToolSpec]:
        return []

    async def call(self, name: str, arguments: Mapping[str, Any]) -> FakeResult:
        raise AssertionError("no tool calls expected")


class Gates:
    """A model whose answer for task text ``X`` waits until ``release(X)`` (if held)."""

    def __init__(self, *held: str) -> None:
        self.held = {text: asyncio.Event() for text in held}
        self.started: dict[str, asyncio.Event] = {}
        self.order: list[str] = []
        self.model = FunctionModel(self._answer)

    def _started(self, text: str) -> asyncio.Event:
        return self.started.setdefault(text, asyncio.Event())

    async def _answer(self, messages: list[ChatMessage], _info: CallInfo) -> ScriptItem:
        text = messages[1].content
        self.order.append(text)
        self._started(text).set()
        if text in self.held:
            await self.held[text].wait()
        return f"done {text}"

    async def wait_started(self, text: str) -> None:
        async with asyncio.timeout(WAIT):
            await self._started(text).wait()

    def release(self, *texts: str) -> None:
        for text in texts or tuple(self.held):
            self.held[text].set()


def make_pool(
    bus: InMemoryBus,
    store: SqliteStore,
    gates: Gates,
    *,
    max_workers: int = 2,
    max_idle_workers: int = 1,
) -> tuple[WorkerPool, list[str]]:
    made: list[str] = []

    def make_worker(name: str) -> Worker:
        made.append(name)
        return Worker(name, bus=bus, store=store, model=gates.model, tools=NoTools())

    pool = WorkerPool(
        make_worker=make_worker,
        store=store,
        max_workers=max_workers,
        max_idle_workers=max_idle_workers,
    )
    return pool, made


async def add(store: SqliteStore, *ids: str) -> None:
    for task_id in ids:
        await store.add_task(TaskRecord(id=task_id, description=task_id, created_at=time.time()))


async def status_of(store: SqliteStore, task_id: str) -> TaskStatus:
    record = await store.get_task(task_id)
    assert record is not None
    return record.status


async def messages_in(inbox: Inbox) -> list[tuple[MessageType, str | None, Any]]:
    out = []
    while inbox.qsize():
        message = await inbox.get()
        await inbox.ack(message)
        out.append((message.type, message.task_id, dict(message.payload)))
    return out


async def test_idle_worker_is_reused(
    bus: InMemoryBus, store: SqliteStore, coordinator: Inbox
) -> None:
    gates = Gates()
    pool, made = make_pool(bus, store, gates, max_workers=2, max_idle_workers=1)
    await add(store, "t1", "t2")
    await pool.submit("t1")
    await pool.wait_idle(WAIT)
    assert pool.status() == {"busy": {}, "idle": ["worker_1"], "queued": []}
    await pool.submit("t2")
    await pool.wait_idle(WAIT)
    assert made == ["worker_1"]
    for task_id in ("t1", "t2"):
        record = await store.get_task(task_id)
        assert record is not None
        assert record.status is TaskStatus.DONE
        assert record.assigned_to == "worker_1"
    kinds = [kind for kind, _, _ in await messages_in(coordinator)]
    assert kinds == [MessageType.TASK_RESULT, MessageType.TASK_RESULT]


async def test_idle_cap_drops_excess_workers(
    bus: InMemoryBus, store: SqliteStore, coordinator: Inbox
) -> None:
    gates = Gates("a", "b", "c")
    pool, made = make_pool(bus, store, gates, max_workers=3, max_idle_workers=1)
    await add(store, "a", "b", "c")
    for task_id in ("a", "b", "c"):
        await pool.submit(task_id)
    for task_id in ("a", "b", "c"):
        await gates.wait_started(task_id)
    assert made == ["worker_1", "worker_2", "worker_3"]
    assert sorted(pool.status()["busy"].values()) == made
    gates.release()
    await pool.wait_idle(WAIT)
    assert len(pool.status()["idle"]) == 1
    await add(store, "d")
    await pool.submit("d")
    await pool.wait_idle(WAIT)
    assert len(made) == 3  # the kept idle worker ran "d"


async def test_zero_idle_workers_means_a_fresh_worker_each_time(
    bus: InMemoryBus, store: SqliteStore, coordinator: Inbox
) -> None:
    pool, made = make_pool(bus, store, Gates(), max_workers=1, max_idle_workers=0)
    await add(store, "t1", "t2")
    await pool.submit("t1")
    await pool.wait_idle(WAIT)
    await pool.submit("t2")
    await pool.wait_idle(WAIT)
    assert made == ["worker_1", "worker_2"]
    assert pool.status()["idle"] == []


async def test_tasks_beyond_max_workers_queue_in_order(
    bus: InMemoryBus, store: SqliteStore, coordinator: Inbox
) -> None:
    gates = Gates("t1", "t2", "t3", "t4", "t5")
    pool, made = make_pool(bus, store, gates, max_workers=2, max_idle_workers=2)
    await add(store, "t1", "t2", "t3", "t4", "t5")
    for task_id in ("t1", "t2", "t3", "t4", "t5"):
        await pool.submit(task_id)
    await pool.submit("t3")  # a duplicate submit is ignored
    await gates.wait_started("t1")
    await gates.wait_started("t2")
    assert set(pool.status()["busy"]) == {"t1", "t2"}
    assert pool.status()["queued"] == ["t3", "t4", "t5"]
    assert await status_of(store, "t3") is TaskStatus.QUEUED

    gates.release("t2")
    await gates.wait_started("t3")
    assert pool.status()["queued"] == ["t4", "t5"]
    gates.release("t1")
    await gates.wait_started("t4")
    assert pool.status()["queued"] == ["t5"]
    gates.release()
    await pool.wait_idle(WAIT)
    assert gates.order == ["t1", "t2", "t3", "t4", "t5"]
    assert made == ["worker_1", "worker_2"]
    for task_id in ("t1", "t2", "t3", "t4", "t5"):
        assert await status_of(store, task_id) is TaskStatus.DONE


async def test_cancel_queued_task(bus: InMemoryBus, store: SqliteStore, coordinator: Inbox) -> None:
    gates = Gates("t1")
    pool, _ = make_pool(bus, store, gates, max_workers=1)
    await add(store, "t1", "t2", "t3")
    for task_id in ("t1", "t2", "t3"):
        await pool.submit(task_id)
    await gates.wait_started("t1")

    assert await pool.cancel("t2") is True
    assert await status_of(store, "t2") is TaskStatus.CANCELLED
    assert pool.status()["queued"] == ["t3"]
    assert await pool.cancel("nope") is False

    gates.release()
    await pool.wait_idle(WAIT)
    assert gates.order == ["t1", "t3"]
    assert await status_of(store, "t2") is TaskStatus.CANCELLED
    sent = await messages_in(coordinator)
    assert all(task_id != "t2" for _, task_id, _ in sent)  # no TASK_ERROR for a queued cancel
    assert await pool.cancel("t1") is False  # finished: nothing to cancel


async def test_cancel_running_task(
    bus: InMemoryBus, store: SqliteStore, coordinator: Inbox
) -> None:
    gates = Gates("t1")
    pool, made = make_pool(bus, store, gates, max_workers=1)
    await add(store, "t1", "t2")
    await pool.submit("t1")
    await pool.submit("t2")
    await gates.wait_started("t1")

    assert await pool.cancel("t1") is True
    assert await status_of(store, "t1") is TaskStatus.CANCELLED
    await pool.wait_idle(WAIT)  # the freed worker picked up t2
    assert await status_of(store, "t2") is TaskStatus.DONE
    assert made == ["worker_1"]
    sent = await messages_in(coordinator)
    assert (MessageType.TASK_ERROR, "t1", {"error": CANCELLED_TEXT}) in sent


async def test_cancel_of_a_run_before_its_first_step_is_silent(
    bus: InMemoryBus, store: SqliteStore, coordinator: Inbox
) -> None:
    gates = Gates()
    pool, _ = make_pool(bus, store, gates, max_workers=1)
    await add(store, "t1")
    await pool.submit("t1")  # dispatched: its asyncio task exists but has not run yet
    assert await pool.cancel("t1") is True
    await pool.wait_idle(WAIT)
    assert await status_of(store, "t1") is TaskStatus.CANCELLED  # not left QUEUED
    assert gates.order == []
    assert await messages_in(coordinator) == []


async def test_missing_and_finished_tasks_are_skipped(
    bus: InMemoryBus, store: SqliteStore, coordinator: Inbox
) -> None:
    gates = Gates()
    pool, _ = make_pool(bus, store, gates, max_workers=1)
    await add(store, "finished", "t1")
    await store.update_task("finished", status=TaskStatus.DONE)
    for task_id in ("missing", "finished", "t1"):
        await pool.submit(task_id)
    await pool.wait_idle(WAIT)
    assert gates.order == ["t1"]
    assert await store.get_task("missing") is None
    assert await store.results("finished") == []
    sent = await messages_in(coordinator)
    assert [(kind, task_id) for kind, task_id, _ in sent] == [(MessageType.TASK_RESULT, "t1")]


async def test_dropped_workers_leave_no_logger_behind(
    bus: InMemoryBus, store: SqliteStore, coordinator: Inbox
) -> None:
    def worker_loggers() -> set[str]:
        names = logging.Logger.manager.loggerDict
        return {name for name in names if name.startswith("octopussy.agent.worker_")}

    before = worker_loggers()
    pool, made = make_pool(bus, store, Gates(), max_workers=1, max_idle_workers=0)
    for i in range(5):
        await add(store, f"t{i}")
        await pool.submit(f"t{i}")
        await pool.wait_idle(WAIT)
    assert len(made) == 5
    assert worker_loggers() == before


async def test_resume_after_a_crash_runs_each_task_once(
    bus: InMemoryBus, store: SqliteStore, coordinator: Inbox
) -> None:
    # what a crashed process leaves behind: one task RUNNING, one still QUEUED, one DONE
    await add(store, "crashed", "waiting", "finished")
    await store.update_task("crashed", status=TaskStatus.RUNNING, assigned_to="worker_1")
    await store.update_task("finished", status=TaskStatus.DONE)

    gates = Gates()
    pool, _ = make_pool(bus, store, gates, max_workers=1)
    resumed = await pool.resume()
    assert resumed == ["crashed", "waiting"]
    assert await pool.resume() == []  # already held: not queued twice
    await pool.wait_idle(WAIT)

    assert gates.order == ["crashed", "waiting"]
    for task_id in ("crashed", "waiting"):
        assert await status_of(store, task_id) is TaskStatus.DONE
        kinds = [r.kind for r in await store.results(task_id)]
        assert kinds == ["result"]
    assert await status_of(store, "finished") is TaskStatus.DONE


async def test_stop_requeues_and_a_new_pool_resumes(
    bus: InMemoryBus, store: SqliteStore, coordinator: Inbox
) -> None:
    gates = Gates("t1")
    pool, _ = make_pool(bus, store, gates, max_workers=1)
    await add(store, "t1", "t2")
    await pool.submit("t1")
    await pool.submit("t2")
    await gates.wait_started("t1")

    await pool.stop()
    assert pool.status() == {"busy": {}, "idle": [], "queued": []}
    assert await status_of(store, "t1") is TaskStatus.QUEUED
    assert await status_of(store, "t2") is TaskStatus.QUEUED
    assert await messages_in(coordinator) == []  # a shutdown is not a failure
    with pytest.raises(RuntimeError):
        await pool.submit("t2")

    again = Gates()
    pool2, _ = make_pool(bus, store, again, max_workers=1)
    assert await pool2.resume() == ["t1", "t2"]
    await pool2.wait_idle(WAIT)
    assert again.order == ["t1", "t2"]
    assert await status_of(store, "t1") is TaskStatus.DONE


async def test_wait_idle_times_out(
    bus: InMemoryBus, store: SqliteStore, coordinator: Inbox
) -> None:
    gates = Gates("t1")
    pool, _ = make_pool(bus, store, gates)
    await add(store, "t1")
    await pool.submit("t1")
    with pytest.raises(TimeoutError):
        await pool.wait_idle(0.05)
    await pool.stop()


async def test_invalid_limits(store: SqliteStore) -> None:
    def never(name: str) -> Worker:
        raise AssertionError(name)

    with pytest.raises(ValueError, match="max_workers"):
        WorkerPool(make_worker=never, store=store, max_workers=0, max_idle_workers=0)
    with pytest.raises(ValueError, match="max_idle_workers"):
        WorkerPool(make_worker=never, store=store, max_workers=1, max_idle_workers=-1)
