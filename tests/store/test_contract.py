"""The ``Store`` contract: every backend must pass this suite unchanged.

``store_factory`` builds unopened stores that all share one backing storage (one SQLite
file; later one Redis database and key prefix), so a test can reopen it or run two
instances side by side. A backend joins by adding one builder to ``_BUILDERS``.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from octopussy.store import (
    EventRecord,
    ScheduleRecord,
    Store,
    TaskRecord,
    TaskResult,
    TaskStatus,
)
from octopussy.store.sqlite import SqliteStore

#: Upper bound for any wait in this suite (seconds).
WAIT = 10.0

StoreFactory = Callable[[], Store]


def _sqlite(tmp_path: Path) -> StoreFactory:
    path = tmp_path / "state" / "octopussy.db"
    return lambda: SqliteStore(path)


#: One builder per backend, given a per-test temp dir; returns a factory of stores that all
#: share the same storage.
_BUILDERS: dict[str, Callable[[Path], StoreFactory]] = {"sqlite": _sqlite}


@pytest.fixture(params=list(_BUILDERS))
async def store_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StoreFactory]:
    """Unopened stores on one shared storage; every store made is closed after the test."""
    build = _BUILDERS[request.param](tmp_path)
    made: list[Store] = []

    def make() -> Store:
        store = build()
        made.append(store)
        return store

    yield make
    for store in made:
        await store.close()


@pytest.fixture
async def store(store_factory: StoreFactory) -> Store:
    opened = store_factory()
    async with asyncio.timeout(WAIT):
        await opened.open()
    return opened


def task(task_id: str = "t1", **fields: Any) -> TaskRecord:
    return TaskRecord(id=task_id, description=f"do {task_id}", **fields)


def schedule(schedule_id: str = "s1", **fields: Any) -> ScheduleRecord:
    fields.setdefault("next_run", 2000.0)
    return ScheduleRecord(
        id=schedule_id,
        task_id=f"task-{schedule_id}",
        spec="every 30 minutes",
        description=f"check {schedule_id}",
        **fields,
    )


# lifecycle --------------------------------------------------------------------------


async def test_implements_the_protocol(store: Store) -> None:
    assert isinstance(store, Store)


async def test_close_is_idempotent(store: Store) -> None:
    await store.close()
    await store.close()


# tasks ------------------------------------------------------------------------------


async def test_add_and_get_task_round_trip(store: Store) -> None:
    record = TaskRecord(
        id="t1",
        description="summarise the inbox — ünïcödé",
        status=TaskStatus.RUNNING,
        created_at=1000.5,
        updated_at=1001.25,
        assigned_to="worker-1",
        prompt="You are a worker.",
        data={"depth": 2, "tags": ["a", "b"], "nested": {"x": None, "y": 1.5}},
    )
    await store.add_task(record)
    assert await store.get_task("t1") == record


async def test_add_task_fills_in_times(store: Store) -> None:
    before = time.time()
    await store.add_task(task("t1"))
    got = await store.get_task("t1")
    assert got is not None
    assert got.status is TaskStatus.QUEUED
    assert got.data == {}
    assert before <= got.created_at <= time.time()
    assert got.updated_at >= got.created_at


async def test_get_unknown_task_is_none(store: Store) -> None:
    assert await store.get_task("nope") is None


async def test_add_task_with_existing_id_is_an_error(store: Store) -> None:
    await store.add_task(task("t1"))
    with pytest.raises(ValueError, match="t1"):
        await store.add_task(TaskRecord(id="t1", description="other"))
    got = await store.get_task("t1")
    assert got is not None
    assert got.description == "do t1"


async def test_update_task_changes_given_fields_and_merges_data(store: Store) -> None:
    await store.add_task(
        task("t1", created_at=1000.0, updated_at=1000.0, prompt="p0", data={"a": 1, "b": 2})
    )
    updated = await store.update_task(
        "t1", status=TaskStatus.RUNNING, assigned_to="worker-2", data={"b": 3, "c": [4]}
    )
    assert updated.status is TaskStatus.RUNNING
    assert updated.assigned_to == "worker-2"
    assert updated.prompt == "p0"  # not given: unchanged
    assert updated.data == {"a": 1, "b": 3, "c": [4]}
    assert updated.created_at == 1000.0
    assert updated.updated_at > 1000.0
    assert await store.get_task("t1") == updated

    again = await store.update_task("t1", prompt="p1")
    assert again.prompt == "p1"
    assert again.status is TaskStatus.RUNNING
    assert again.data == {"a": 1, "b": 3, "c": [4]}
    assert again.updated_at >= updated.updated_at


async def test_update_unknown_task_is_a_key_error(store: Store) -> None:
    with pytest.raises(KeyError):
        await store.update_task("nope", status=TaskStatus.DONE)


async def test_concurrent_data_updates_are_all_merged(store: Store) -> None:
    await store.add_task(task("t1"))
    async with asyncio.timeout(WAIT):
        await asyncio.gather(*(store.update_task("t1", data={f"k{i}": i}) for i in range(30)))
    got = await store.get_task("t1")
    assert got is not None
    assert got.data == {f"k{i}": i for i in range(30)}


async def test_claim_task_marks_it_running_for_the_worker(store: Store) -> None:
    await store.add_task(task("t1", created_at=1000.0, updated_at=1000.0, data={"a": 1}))
    claimed = await store.claim_task("t1", worker="worker_3")
    assert claimed is not None
    assert (claimed.status, claimed.assigned_to) == (TaskStatus.RUNNING, "worker_3")
    assert (claimed.description, claimed.data, claimed.created_at) == ("do t1", {"a": 1}, 1000.0)
    assert claimed.updated_at > 1000.0
    assert await store.get_task("t1") == claimed
    # Claimed again (a resumed or re-run task): the new worker takes it over.
    again = await store.claim_task("t1", worker="worker_4")
    assert again is not None
    assert again.assigned_to == "worker_4"
    assert again.updated_at >= claimed.updated_at


@pytest.mark.parametrize("status", [TaskStatus.QUEUED, TaskStatus.SCHEDULED, TaskStatus.RUNNING])
async def test_claim_task_takes_any_unfinished_task(store: Store, status: TaskStatus) -> None:
    await store.add_task(task("t1", status=status))
    claimed = await store.claim_task("t1", worker="w")
    assert claimed is not None
    assert claimed.status is TaskStatus.RUNNING


@pytest.mark.parametrize("status", [TaskStatus.DONE, TaskStatus.FAILED, TaskStatus.CANCELLED])
async def test_claim_task_refuses_a_finished_task(store: Store, status: TaskStatus) -> None:
    await store.add_task(task("t1", status=status, assigned_to="before", updated_at=1000.0))
    before = await store.get_task("t1")
    assert await store.claim_task("t1", worker="w") is None
    assert await store.get_task("t1") == before  # untouched


async def test_claim_unknown_task_is_none(store: Store) -> None:
    assert await store.claim_task("nope", worker="w") is None
    assert await store.get_task("nope") is None


async def test_finish_task_writes_result_status_and_data_together(store: Store) -> None:
    await store.add_task(task("t1", status=TaskStatus.RUNNING, updated_at=1000.0, data={"a": 1}))
    await store.add_result("t1", "result", "an earlier run")
    await store.add_result("t1", "progress", "calling a tool")
    stored = await store.finish_task(
        "t1", status=TaskStatus.DONE, kind="result", content="five", data={"a": 2, "b": [3]}
    )
    assert isinstance(stored, TaskResult)
    assert (stored.task_id, stored.number, stored.kind, stored.content) == (
        "t1",
        2,
        "result",
        "five",
    )
    assert (await store.results("t1"))[-1] == stored
    got = await store.get_task("t1")
    assert got is not None
    assert (got.status, got.data) == (TaskStatus.DONE, {"a": 2, "b": [3]})
    assert got.updated_at >= stored.timestamp > 1000.0

    failed = await store.finish_task("t1", status=TaskStatus.FAILED, kind="error", content="boom")
    assert failed.number == 1  # numbered per kind
    got = await store.get_task("t1")
    assert got is not None
    assert (got.status, got.data) == (TaskStatus.FAILED, {"a": 2, "b": [3]})  # no data: kept


async def test_finish_unknown_task_is_a_key_error_and_writes_nothing(store: Store) -> None:
    with pytest.raises(KeyError):
        await store.finish_task(
            "nope", status=TaskStatus.DONE, kind="result", content="x", data={"k": 1}
        )
    assert await store.results("nope") == []
    assert await store.get_task("nope") is None


async def test_concurrent_finishes_number_results_and_merge_all_data(store: Store) -> None:
    await store.add_task(task("t1"))
    async with asyncio.timeout(WAIT):
        made = await asyncio.gather(
            *(
                store.finish_task(
                    "t1", status=TaskStatus.DONE, kind="result", content=f"r{i}", data={f"k{i}": i}
                )
                for i in range(30)
            )
        )
    assert sorted(r.number for r in made) == list(range(1, 31))
    got = await store.get_task("t1")
    assert got is not None
    assert got.data == {f"k{i}": i for i in range(30)}


async def test_add_result_with_data_merges_it_into_the_task(store: Store) -> None:
    await store.add_task(task("t1", status=TaskStatus.RUNNING, updated_at=1000.0, data={"a": 1}))
    stored = await store.add_result("t1", "progress", "step 1", data={"calls": ["x"]})
    assert (stored.number, stored.kind) == (1, "progress")
    got = await store.get_task("t1")
    assert got is not None
    assert got.status is TaskStatus.RUNNING  # unchanged
    assert got.data == {"a": 1, "calls": ["x"]}
    assert got.updated_at > 1000.0
    assert (await store.add_result("t1", "progress", "step 2", data={})).number == 2
    with pytest.raises(KeyError):
        await store.add_result("nope", "progress", "x", data={"k": 1})
    assert await store.results("nope") == []


async def test_list_tasks_newest_first_with_filter_and_limit(store: Store) -> None:
    for i, status in enumerate(
        [TaskStatus.DONE, TaskStatus.RUNNING, TaskStatus.QUEUED, TaskStatus.DONE]
    ):
        await store.add_task(task(f"t{i}", status=status, created_at=1000.0 + i))
    assert [t.id for t in await store.list_tasks()] == ["t3", "t2", "t1", "t0"]
    assert [t.id for t in await store.list_tasks(limit=2)] == ["t3", "t2"]
    done = await store.list_tasks(statuses=[TaskStatus.DONE])
    assert [t.id for t in done] == ["t3", "t0"]
    active = await store.list_tasks(statuses=[TaskStatus.QUEUED, TaskStatus.RUNNING])
    assert [t.id for t in active] == ["t2", "t1"]
    assert await store.list_tasks(statuses=[TaskStatus.CANCELLED]) == []
    assert await store.list_tasks(statuses=[]) == []


async def test_list_tasks_created_in_the_same_instant_newest_first(store: Store) -> None:
    for i in range(5):
        await store.add_task(task(f"t{i}", created_at=1000.0))
    assert [t.id for t in await store.list_tasks()] == ["t4", "t3", "t2", "t1", "t0"]


async def test_list_tasks_sees_status_updates(store: Store) -> None:
    await store.add_task(task("t1"))
    await store.update_task("t1", status=TaskStatus.FAILED)
    assert [t.id for t in await store.list_tasks(statuses=[TaskStatus.FAILED])] == ["t1"]
    assert await store.list_tasks(statuses=[TaskStatus.QUEUED]) == []


# results ----------------------------------------------------------------------------


async def test_results_are_numbered_per_task_and_kind(store: Store) -> None:
    await store.add_task(task("t1"))
    await store.add_task(task("t2"))
    first = await store.add_result("t1", "result", "four")
    assert isinstance(first, TaskResult)
    assert (first.task_id, first.number, first.kind, first.content) == ("t1", 1, "result", "four")
    assert (await store.add_result("t1", "progress", "halfway")).number == 1
    assert (await store.add_result("t1", "result", "five")).number == 2
    assert (await store.add_result("t2", "result", "x")).number == 1
    assert (await store.add_result("t1", "error", "boom")).number == 1

    got = await store.results("t1")
    assert [(r.kind, r.number, r.content) for r in got] == [
        ("result", 1, "four"),
        ("progress", 1, "halfway"),
        ("result", 2, "five"),
        ("error", 1, "boom"),
    ]
    assert got[0] == first
    assert all(earlier.timestamp <= later.timestamp for earlier, later in itertools.pairwise(got))
    assert await store.results("no-such-task") == []


async def test_result_numbers_are_unique_under_concurrency(store: Store) -> None:
    await store.add_task(task("t1"))
    async with asyncio.timeout(WAIT):
        made = await asyncio.gather(*(store.add_result("t1", "result", f"r{i}") for i in range(50)))
    assert sorted(r.number for r in made) == list(range(1, 51))
    assert [r.number for r in await store.results("t1")] == list(range(1, 51))


# events -----------------------------------------------------------------------------


async def test_events_oldest_first_with_kind_after_and_limit(store: Store) -> None:
    ids = [
        await store.add_event("notification", {"text": "hi"}, agent="mail"),
        await store.add_event("result", {"text": "4"}, agent="worker-1", task_id="t1"),
        await store.add_event("notification", {"text": "meeting"}, timestamp=1234.5),
    ]
    assert ids == sorted(ids)
    assert len(set(ids)) == 3

    everything = await store.events()
    assert [e.id for e in everything] == ids
    first = everything[0]
    assert isinstance(first, EventRecord)
    assert (first.kind, first.agent, first.task_id, first.payload) == (
        "notification",
        "mail",
        None,
        {"text": "hi"},
    )
    assert everything[1].task_id == "t1"
    assert everything[2].timestamp == 1234.5

    assert [e.id for e in await store.events(kind="notification")] == [ids[0], ids[2]]
    assert [e.id for e in await store.events(after_id=ids[0])] == ids[1:]
    assert [e.id for e in await store.events(kind="notification", after_id=ids[0])] == [ids[2]]
    assert [e.id for e in await store.events(limit=2)] == ids[:2]
    assert await store.events(after_id=ids[-1]) == []


async def test_event_payload_round_trips(store: Store) -> None:
    payload = {"text": "ünïcödé ✓", "n": 3, "f": 0.5, "list": [1, None, {"deep": True}]}
    event_id = await store.add_event("notification", payload)
    (event,) = await store.events(after_id=event_id - 1)
    assert event.payload == payload


async def test_events_paging_with_after_id(store: Store) -> None:
    ids = [await store.add_event("tick", {"i": i}) for i in range(25)]
    seen: list[int] = []
    after = 0
    while page := await store.events(after_id=after, limit=10):
        seen.extend(e.id for e in page)
        after = page[-1].id
    assert seen == ids


# dedup keys -------------------------------------------------------------------------


async def test_mark_seen_is_true_only_the_first_time(store: Store) -> None:
    assert not await store.is_seen("mail", "<id-1@example>")
    assert await store.mark_seen("mail", "<id-1@example>")
    assert not await store.mark_seen("mail", "<id-1@example>")
    assert await store.is_seen("mail", "<id-1@example>")
    # Namespaces are independent.
    assert not await store.is_seen("calendar", "<id-1@example>")
    assert await store.mark_seen("calendar", "<id-1@example>")


async def test_mark_seen_concurrently_exactly_one_wins(store: Store) -> None:
    async with asyncio.timeout(WAIT):
        outcomes = await asyncio.gather(*(store.mark_seen("mail", "k") for _ in range(50)))
    assert outcomes.count(True) == 1


async def test_prune_seen_forgets_old_keys_of_one_namespace(store: Store) -> None:
    await store.mark_seen("mail", "old-1", timestamp=100.0)
    await store.mark_seen("mail", "old-2", timestamp=150.0)
    await store.mark_seen("mail", "new", timestamp=300.0)
    await store.mark_seen("calendar", "old", timestamp=100.0)

    assert await store.prune_seen("mail", older_than=200.0) == 2
    assert not await store.is_seen("mail", "old-1")
    assert not await store.is_seen("mail", "old-2")
    assert await store.is_seen("mail", "new")
    assert await store.is_seen("calendar", "old")
    assert await store.prune_seen("mail", older_than=200.0) == 0
    # A forgotten key is new again.
    assert await store.mark_seen("mail", "old-1")


async def test_mark_seen_defaults_to_now(store: Store) -> None:
    await store.mark_seen("mail", "k")
    assert await store.prune_seen("mail", older_than=time.time() - 60) == 0
    assert await store.prune_seen("mail", older_than=time.time() + 60) == 1


# small state ------------------------------------------------------------------------


async def test_state_is_none_until_set_then_replaced(store: Store) -> None:
    assert await store.get_state("mail", "acct|INBOX") is None
    await store.set_state("mail", "acct|INBOX", {"uidvalidity": 7, "last_uid": 3})
    assert await store.get_state("mail", "acct|INBOX") == {"uidvalidity": 7, "last_uid": 3}
    await store.set_state("mail", "acct|INBOX", {"uidvalidity": 8, "last_uid": 0})
    assert await store.get_state("mail", "acct|INBOX") == {"uidvalidity": 8, "last_uid": 0}
    # Namespaces and keys are separate.
    assert await store.get_state("calendar", "acct|INBOX") is None
    assert await store.get_state("mail", "acct|Work") is None


async def test_state_nested_values_round_trip(store: Store) -> None:
    value = {"list": [1, "two", None], "nested": {"ünï": 1.5}, "flag": True}
    await store.set_state("x", "k", value)
    assert await store.get_state("x", "k") == value


# schedules --------------------------------------------------------------------------


async def test_add_and_get_schedule_round_trip(store: Store) -> None:
    record = ScheduleRecord(
        id="s1",
        task_id="t1",
        spec="*/15 9-17 * * mon-fri",
        description="check the build — ünïcödé",
        next_run=2000.25,
        created_at=1000.5,
        last_run=1100.75,
        runs=3,
        active=False,
    )
    await store.add_schedule(record)
    assert await store.get_schedule("s1") == record


async def test_add_schedule_fills_in_defaults(store: Store) -> None:
    before = time.time()
    await store.add_schedule(schedule("s1"))
    got = await store.get_schedule("s1")
    assert got is not None
    assert (got.next_run, got.last_run, got.runs, got.active) == (2000.0, None, 0, True)
    assert before <= got.created_at <= time.time()


async def test_get_unknown_schedule_is_none(store: Store) -> None:
    assert await store.get_schedule("nope") is None


async def test_add_schedule_with_existing_id_is_an_error(store: Store) -> None:
    await store.add_schedule(schedule("s1"))
    with pytest.raises(ValueError, match="s1"):
        await store.add_schedule(schedule("s1", next_run=5.0))
    got = await store.get_schedule("s1")
    assert got is not None
    assert got.next_run == 2000.0


async def test_list_schedules_oldest_first_and_active_only(store: Store) -> None:
    for schedule_id in ("s1", "s2", "s3"):
        await store.add_schedule(schedule(schedule_id))
    await store.update_schedule("s2", active=False)
    assert [s.id for s in await store.list_schedules()] == ["s1", "s2", "s3"]
    assert [s.id for s in await store.list_schedules(active_only=True)] == ["s1", "s3"]


async def test_update_schedule_changes_given_fields(store: Store) -> None:
    await store.add_schedule(schedule("s1", created_at=1000.0))
    updated = await store.update_schedule("s1", next_run=3800.0, last_run=2000.5, runs=1)
    assert (updated.next_run, updated.last_run, updated.runs, updated.active) == (
        3800.0,
        2000.5,
        1,
        True,
    )
    stopped = await store.update_schedule("s1", active=False)
    assert (stopped.next_run, stopped.runs, stopped.active) == (3800.0, 1, False)
    assert await store.get_schedule("s1") == stopped
    assert stopped.created_at == 1000.0
    assert await store.update_schedule("s1") == stopped  # nothing given: nothing changes


async def test_update_unknown_schedule_is_a_key_error(store: Store) -> None:
    with pytest.raises(KeyError):
        await store.update_schedule("nope", active=False)


async def test_claim_schedule_records_one_run(store: Store) -> None:
    await store.add_schedule(schedule("s1", next_run=2000.0))
    claimed = await store.claim_schedule("s1", due=2000.0, next_run=3800.0, now=2001.0)
    assert claimed is not None
    assert (claimed.next_run, claimed.last_run, claimed.runs) == (3800.0, 2001.0, 1)
    assert await store.get_schedule("s1") == claimed
    # The same run again (its next_run has moved on): refused, nothing changes.
    assert await store.claim_schedule("s1", due=2000.0, next_run=3800.0, now=2002.0) is None
    again = await store.claim_schedule("s1", due=3800.0, next_run=5600.0, now=3800.0)
    assert again is not None
    assert again.runs == 2


async def test_claim_of_an_inactive_or_unknown_schedule_is_refused(store: Store) -> None:
    await store.add_schedule(schedule("s1", next_run=2000.0, active=False))
    assert await store.claim_schedule("s1", due=2000.0, next_run=3800.0, now=2001.0) is None
    assert await store.claim_schedule("nope", due=2000.0, next_run=3800.0, now=2001.0) is None
    got = await store.get_schedule("s1")
    assert got is not None
    assert (got.runs, got.next_run) == (0, 2000.0)


async def test_concurrent_claims_of_one_run_exactly_one_wins(store: Store) -> None:
    await store.add_schedule(schedule("s1", next_run=2000.0))
    async with asyncio.timeout(WAIT):
        outcomes = await asyncio.gather(
            *(
                store.claim_schedule("s1", due=2000.0, next_run=3800.0, now=2001.0)
                for _ in range(20)
            )
        )
    assert sum(outcome is not None for outcome in outcomes) == 1
    got = await store.get_schedule("s1")
    assert got is not None
    assert got.runs == 1


# durability and sharing -------------------------------------------------------------


async def test_everything_survives_close_and_reopen(store_factory: StoreFactory) -> None:
    first = store_factory()
    await first.open()
    await first.add_task(task("t1", data={"k": "v"}))
    await first.add_result("t1", "result", "one")
    event_id = await first.add_event("notification", {"text": "hi"})
    await first.mark_seen("mail", "m1")
    await first.add_schedule(schedule("s1"))
    await first.set_state("mail", "box", {"last_uid": 5})
    await first.close()

    second = store_factory()
    await second.open()
    got = await second.get_task("t1")
    assert got is not None
    assert got.data == {"k": "v"}
    assert [r.content for r in await second.results("t1")] == ["one"]
    assert (await second.add_result("t1", "result", "two")).number == 2
    assert [e.id for e in await second.events()] == [event_id]
    assert await second.add_event("notification", {}) > event_id
    assert not await second.mark_seen("mail", "m1")
    assert [s.id for s in await second.list_schedules(active_only=True)] == ["s1"]
    assert await second.get_state("mail", "box") == {"last_uid": 5}
    with pytest.raises(ValueError, match="t1"):
        await second.add_task(task("t1"))


async def test_two_instances_share_state(store_factory: StoreFactory) -> None:
    a, b = store_factory(), store_factory()
    async with asyncio.timeout(WAIT):
        await asyncio.gather(a.open(), b.open())

        await a.add_task(task("t1"))
        assert await b.get_task("t1") is not None
        await b.update_task("t1", status=TaskStatus.DONE, data={"by": "b"})
        got = await a.get_task("t1")
        assert got is not None
        assert (got.status, got.data) == (TaskStatus.DONE, {"by": "b"})

        event_id = await b.add_event("notification", {"from": "b"})
        assert [e.id for e in await a.events()] == [event_id]

        with pytest.raises(ValueError, match="t1"):
            await b.add_task(task("t1"))


async def test_two_instances_mark_seen_exactly_one_wins(store_factory: StoreFactory) -> None:
    a, b = store_factory(), store_factory()
    async with asyncio.timeout(WAIT):
        await asyncio.gather(a.open(), b.open())
        for key in ("k1", "k2", "k3"):
            outcomes = await asyncio.gather(
                *(s.mark_seen("mail", key) for _ in range(25) for s in (a, b))
            )
            assert outcomes.count(True) == 1, key


async def test_two_instances_number_results_without_gaps(store_factory: StoreFactory) -> None:
    a, b = store_factory(), store_factory()
    async with asyncio.timeout(WAIT):
        await asyncio.gather(a.open(), b.open())
        await a.add_task(task("t1"))
        made = await asyncio.gather(
            *(s.add_result("t1", "progress", f"{i}") for i in range(20) for s in (a, b))
        )
    assert sorted(r.number for r in made) == list(range(1, 41))


async def test_a_task_finished_by_one_instance_is_never_revived_by_a_claim(
    store_factory: StoreFactory,
) -> None:
    a, b = store_factory(), store_factory()
    async with asyncio.timeout(WAIT):
        await asyncio.gather(a.open(), b.open())
        ids = [f"t{i}" for i in range(20)]
        for task_id in ids:
            await a.add_task(task(task_id))
        await asyncio.gather(
            *(
                work
                for task_id in ids
                for work in (
                    b.claim_task(task_id, worker="w"),
                    a.finish_task(task_id, status=TaskStatus.CANCELLED, kind="error", content="x"),
                )
            )
        )
        statuses = {t.status for t in await a.list_tasks()}
    assert statuses == {TaskStatus.CANCELLED}


async def test_two_instances_claim_each_run_once(store_factory: StoreFactory) -> None:
    a, b = store_factory(), store_factory()
    async with asyncio.timeout(WAIT):
        await asyncio.gather(a.open(), b.open())
        await a.add_schedule(schedule("s1", next_run=0.0))
        for run in range(5):
            due, following = run * 60.0, (run + 1) * 60.0
            outcomes = await asyncio.gather(
                *(
                    s.claim_schedule("s1", due=due, next_run=following, now=due)
                    for _ in range(10)
                    for s in (a, b)
                )
            )
            assert sum(outcome is not None for outcome in outcomes) == 1, run
        got = await b.get_schedule("s1")
    assert got is not None
    assert got.runs == 5
