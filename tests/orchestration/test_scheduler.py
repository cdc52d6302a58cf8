"""The scheduler on a fake clock: firing, coalescing missed runs, removing, surviving errors;
and recurring tasks through the runtime (one task, numbered results, kept across restarts).

Nothing here sleeps for real: ``FakeClock.sleep`` returns when the test moves the clock, and
every wait for something to happen is bounded by ``WAIT``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from octopussy.bus.messages import Message, MessageType
from octopussy.cli import main
from octopussy.config import Config, LoadedConfig, load_config
from octopussy.errors import BackendUnavailable, ConfigError
from octopussy.llm.base import ChatMessage
from octopussy.orchestration.schedule import catch_up, next_time, parse_schedule
from octopussy.orchestration.scheduler import RETRY_DELAY, Scheduler
from octopussy.runtime import Runtime
from octopussy.store.base import ScheduleRecord, TaskRecord, TaskStatus
from octopussy.store.sqlite import SqliteStore
from octopussy.testing import CallInfo, FunctionModel, ScriptedModel

WAIT = 20.0
T0 = 1_800_000_000.0  # a fixed epoch second
HALF_HOUR = 1800.0


class FakeClock:
    """Epoch seconds that move only when the test says so; ``sleep`` waits for that."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.sleepers = 0
        self._changed = asyncio.Condition()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        deadline = self.now + delay
        async with self._changed:
            self.sleepers += 1
            self._changed.notify_all()
            try:
                await self._changed.wait_for(lambda: self.now >= deadline)
            finally:
                self.sleepers -= 1

    async def advance(self, seconds: float) -> None:
        async with self._changed:
            self.now += seconds
            self._changed.notify_all()

    async def until_sleeping(self) -> None:
        async with asyncio.timeout(WAIT), self._changed:
            await self._changed.wait_for(lambda: self.sleepers > 0)


class Fired:
    """A fire callback that records what it was given."""

    def __init__(self) -> None:
        self.records: list[ScheduleRecord] = []
        self._queue: asyncio.Queue[ScheduleRecord] = asyncio.Queue()

    async def __call__(self, record: ScheduleRecord) -> None:
        self.records.append(record)
        self._queue.put_nowait(record)

    async def next(self) -> ScheduleRecord:
        async with asyncio.timeout(WAIT):
            return await self._queue.get()


@asynccontextmanager
async def running(scheduler: Scheduler) -> AsyncIterator[asyncio.Task[None]]:
    loop = asyncio.create_task(scheduler.run(), name="scheduler")
    try:
        yield loop
    finally:
        loop.cancel()
        await asyncio.wait({loop})
    assert loop.cancelled(), "the loop ended on its own"


def make(store: SqliteStore, fired: Fired, clock: FakeClock, **kwargs: object) -> Scheduler:
    return Scheduler(store, fired, clock=clock, sleep=clock.sleep, **kwargs)  # type: ignore[arg-type]


# pure: where the next run goes --------------------------------------------------------


def test_catch_up_of_an_interval_keeps_its_phase_and_counts_misses() -> None:
    every = parse_schedule("every 30 minutes")
    assert catch_up(every, due=T0, now=T0) == (T0 + HALF_HOUR, 0)
    assert catch_up(every, due=T0, now=T0 + 7) == (T0 + HALF_HOUR, 0)  # woke up late
    assert catch_up(every, due=T0, now=T0 + 2 * HALF_HOUR + 5) == (T0 + 3 * HALF_HOUR, 2)


def test_catch_up_of_cron_counts_the_matching_minutes_skipped() -> None:
    quarter = parse_schedule("*/15 * * * *")
    due = datetime(2026, 11, 22, 10, 15, tzinfo=UTC).timestamp()
    now = datetime(2026, 11, 22, 11, 5, tzinfo=UTC).timestamp()
    following, missed = catch_up(quarter, due, now, UTC)
    assert following == datetime(2026, 11, 22, 11, 15, tzinfo=UTC).timestamp()
    assert missed == 3  # 10:30, 10:45, 11:00


def test_cron_never_goes_back_when_daylight_saving_time_ends() -> None:
    zone = ZoneInfo("America/New_York")  # 2026-11-01 01:00-01:59 happens twice
    half_hours = parse_schedule("*/30 * * * *")
    moment = datetime(2026, 11, 1, 0, 10, tzinfo=zone).timestamp()
    runs = []
    for _ in range(6):
        moment = next_time(half_hours, moment, zone)
        runs.append(datetime.fromtimestamp(moment, zone).strftime("%H:%M%z"))
    # Each wall-clock time runs once; the repeated hour is not run again.
    assert runs == ["00:30-0400", "01:00-0400", "01:30-0400", "02:00-0500", "02:30-0500",
                    "03:00-0500"]  # fmt: skip
    local = next_time(half_hours, T0)  # the machine's zone
    assert T0 < local <= T0 + HALF_HOUR


# the scheduler ------------------------------------------------------------------------


async def test_scheduled_task_fires_twice_on_a_fake_clock(store: SqliteStore) -> None:
    clock, fired = FakeClock(T0), Fired()
    scheduler = make(store, fired, clock)
    record = await scheduler.add("check X", "every 30 minutes", task_id="t1")
    assert (record.next_run, record.runs, record.last_run, record.active) == (
        T0 + HALF_HOUR,
        0,
        None,
        True,
    )
    async with running(scheduler):
        await clock.advance(HALF_HOUR - 1)
        await clock.advance(1)
        first = await fired.next()
        await clock.advance(HALF_HOUR)
        second = await fired.next()
    assert (first.id, first.task_id, first.runs) == (record.id, "t1", 1)
    assert (first.last_run, first.next_run) == (T0 + HALF_HOUR, T0 + 2 * HALF_HOUR)
    assert (second.runs, second.last_run, second.next_run) == (
        2,
        T0 + 2 * HALF_HOUR,
        T0 + 3 * HALF_HOUR,
    )
    assert fired.records == [first, second]
    assert await store.get_schedule(record.id) == second


async def test_the_run_is_stored_before_fire_is_called(store: SqliteStore) -> None:
    clock = FakeClock(T0)
    seen: list[ScheduleRecord | None] = []

    async def fire(record: ScheduleRecord) -> None:
        seen.append(await store.get_schedule(record.id))

    scheduler = Scheduler(store, fire, clock=clock, sleep=clock.sleep)
    record = await scheduler.add("check X", "every 30 minutes")
    await clock.advance(HALF_HOUR)
    (fired,) = await scheduler.run_due()
    assert seen == [fired]
    assert (fired.runs, fired.next_run) == (1, T0 + 2 * HALF_HOUR)
    assert await scheduler.run_due() == []  # the same run is not fired again
    assert fired.id == record.id


async def test_missed_runs_fire_once_after_a_restart(
    store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    before, fired = FakeClock(T0), Fired()
    record = await make(store, Fired(), before).add("check X", "every 30 minutes")
    # Down for a little over four periods: the runs due at +1, +2, +3 and +4 were missed.
    clock = FakeClock(T0 + 4 * HALF_HOUR + 100)
    scheduler = make(store, fired, clock)
    with caplog.at_level(logging.WARNING, logger="octopussy.scheduler"):
        async with running(scheduler):
            first = await fired.next()
            await clock.advance(HALF_HOUR - 100)
            second = await fired.next()
    assert (first.id, first.runs, first.last_run) == (record.id, 1, T0 + 4 * HALF_HOUR + 100)
    assert first.next_run == T0 + 5 * HALF_HOUR  # the phase is kept
    assert (second.runs, second.last_run) == (2, T0 + 5 * HALF_HOUR)
    assert fired.records == [first, second]  # one run for all the missed ones
    assert "3 missed run(s)" in caplog.text


async def test_bad_specs_are_config_errors_and_store_nothing(store: SqliteStore) -> None:
    scheduler = make(store, Fired(), FakeClock(T0))
    for spec in ("every banana", "every 2 seconds", "61 * * * *", "0 0 31 2 *"):
        with pytest.raises(ConfigError) as caught:
            await scheduler.add("check X", spec)
        assert "\n" not in str(caught.value)
        assert spec in str(caught.value)
    assert await store.list_schedules() == []


async def test_removed_schedule_stops_firing(store: SqliteStore) -> None:
    clock, fired = FakeClock(T0), Fired()
    scheduler = make(store, fired, clock)
    often = await scheduler.add("often", "every 30 minutes")
    hourly = await scheduler.add("hourly", "every hour")
    assert [s.id for s in await scheduler.schedules()] == [often.id, hourly.id]
    async with running(scheduler):
        await clock.until_sleeping()
        assert await scheduler.remove(often.id)
        assert not await scheduler.remove(often.id)
        assert not await scheduler.remove("nope")
        await clock.advance(2 * HALF_HOUR)
        only = await fired.next()
    # "often" was due first; had it fired, it would have come first.
    assert only.id == hourly.id
    assert fired.records == [only]
    assert [s.id for s in await scheduler.schedules()] == [hourly.id]
    stopped = await store.get_schedule(often.id)
    assert stopped is not None
    assert (stopped.active, stopped.runs) == (False, 0)


async def test_a_schedule_added_while_sleeping_wakes_the_loop(store: SqliteStore) -> None:
    clock, fired = FakeClock(T0), Fired()
    scheduler = make(store, fired, clock)
    async with running(scheduler):
        await clock.until_sleeping()  # nothing scheduled: a long sleep
        record = await scheduler.add("soon", "every 10 seconds")
        await clock.advance(10)  # short of that long sleep: only the wake-up re-plans it
        assert (await fired.next()).id == record.id


async def test_a_failing_fire_does_not_stop_the_scheduler(
    store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    clock, fired = FakeClock(T0), Fired()

    async def fire(record: ScheduleRecord) -> None:
        await fired(record)
        if record.runs == 1:
            raise RuntimeError("the pool is gone")

    scheduler = Scheduler(store, fire, clock=clock, sleep=clock.sleep)
    await scheduler.add("check X", "every 30 minutes")
    with caplog.at_level(logging.ERROR, logger="octopussy.scheduler"):
        async with running(scheduler):
            await clock.advance(HALF_HOUR)
            assert (await fired.next()).runs == 1
            await clock.advance(HALF_HOUR)
            assert (await fired.next()).runs == 2
    assert "the pool is gone" in caplog.text


class FlakyStore(SqliteStore):
    """Its first ``list_schedules`` fails as if the database were unreachable."""

    failed = False

    async def list_schedules(self, *, active_only: bool = False) -> list[ScheduleRecord]:
        if not self.failed:
            self.failed = True
            raise BackendUnavailable("the store is down")
        return await super().list_schedules(active_only=active_only)


async def test_a_failing_store_is_retried(tmp_path: Path) -> None:
    store = FlakyStore(tmp_path / "flaky.db")
    await store.open()
    try:
        clock, fired = FakeClock(T0), Fired()
        scheduler = make(store, fired, clock)
        await store.add_schedule(
            ScheduleRecord("s1", "t1", "every 30 minutes", "check X", next_run=T0)
        )
        async with running(scheduler):
            await clock.until_sleeping()  # the retry pause, counted from the failure
            await clock.advance(RETRY_DELAY)
            assert (await fired.next()).id == "s1"
        assert store.failed
    finally:
        await store.close()


async def test_two_schedulers_on_one_store_fire_each_run_once(tmp_path: Path) -> None:
    stores = [SqliteStore(tmp_path / "shared.db") for _ in range(2)]
    for store in stores:
        await store.open()
    try:
        clock, fired = FakeClock(T0), Fired()
        schedulers = [make(store, fired, clock) for store in stores]
        await schedulers[0].add("check X", "every 30 minutes")
        for _ in range(3):
            await clock.advance(HALF_HOUR)
            async with asyncio.timeout(WAIT):
                await asyncio.gather(*(s.run_due() for s in schedulers))
        assert [record.runs for record in fired.records] == [1, 2, 3]
    finally:
        for store in stores:
            await store.close()


async def test_cron_runs_at_matching_minutes_of_its_zone(store: SqliteStore) -> None:
    start = datetime(2026, 11, 22, 10, 7, 30, tzinfo=UTC).timestamp()
    clock, fired = FakeClock(start), Fired()
    scheduler = make(store, fired, clock, zone=UTC)
    record = await scheduler.add("standup", "*/15 * * * *")
    assert record.next_run == datetime(2026, 11, 22, 10, 15, tzinfo=UTC).timestamp()
    async with running(scheduler):
        await clock.advance(record.next_run - start)
        first = await fired.next()
    assert first.next_run == datetime(2026, 11, 22, 10, 30, tzinfo=UTC).timestamp()


# through the runtime ------------------------------------------------------------------


class Results:
    """A presenter that hands the test each TASK_RESULT as it is shown."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Message] = asyncio.Queue()

    async def show(self, message: Message) -> None:
        if message.type in (MessageType.TASK_RESULT, MessageType.TASK_ERROR):
            self._queue.put_nowait(message)

    async def next(self) -> Message:
        async with asyncio.timeout(WAIT):
            message = await self._queue.get()
        assert message.type is MessageType.TASK_RESULT, message.payload
        return message


def _config(tmp_path: Path, *, optimize: bool = False) -> LoadedConfig:
    workspace = tmp_path / "ws"
    workspace.mkdir(exist_ok=True)
    text = (
        f"llm:\n  provider: scripted\nworkspace: {workspace}\n"
        f"workers:\n  optimize_prompts: {str(optimize).lower()}\nmcp:\n  builtin: false\n"
    )
    if "memory" in Config.model_fields:  # long-term memory would load an encoder
        text += "memory:\n  enabled: false\n"
    (tmp_path / "config.yaml").write_text(text)
    return load_config(None, cwd=tmp_path)


def _runtime(loaded: LoadedConfig, clock: FakeClock, results: Results, **models: object) -> Runtime:
    runtime = Runtime(loaded, presenter=results, models=models)  # type: ignore[arg-type]
    runtime.scheduler = Scheduler(
        runtime.store, runtime.fire_schedule, clock=clock, sleep=clock.sleep
    )
    return runtime


async def test_each_run_adds_a_numbered_result_to_one_task(tmp_path: Path) -> None:
    clock, results = FakeClock(time.time()), Results()
    optimizer = ScriptedModel(["Check the status of X and report it briefly."])
    worker = ScriptedModel(["X is fine.", "X is still fine."])
    runtime = _runtime(
        _config(tmp_path, optimize=True), clock, results, worker=worker, prompt_optimizer=optimizer
    )
    async with runtime:
        schedule = await runtime.schedule_task("check X", "every 30 minutes")
        task = await runtime.store.get_task(schedule.task_id)
        assert task is not None
        assert task.status is TaskStatus.SCHEDULED
        assert task.prompt == "Check the status of X and report it briefly."
        assert task.data["schedule_id"] == schedule.id

        await clock.advance(HALF_HOUR)
        first = await results.next()
        await runtime.pool.wait_idle(WAIT)  # else the next fire finds run 1 still going
        await clock.advance(HALF_HOUR)
        second = await results.next()
        await runtime.pool.wait_idle(WAIT)

        stored = await runtime.store.results(schedule.task_id)
        (listed,) = await runtime.schedules()
    assert (first.task_id, first.payload["response_number"]) == (schedule.task_id, 1)
    assert (second.task_id, second.payload["response_number"]) == (schedule.task_id, 2)
    assert [(r.number, r.content) for r in stored if r.kind == "result"] == [
        (1, "X is fine."),
        (2, "X is still fine."),
    ]
    assert len(optimizer.calls) == 1  # optimized once, at schedule time
    assert [c.last_user_text for c in worker.calls] == [task.prompt] * 2
    assert (listed.id, listed.runs) == (schedule.id, 2)


async def test_schedules_survive_a_restart_and_catch_up_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    loaded = _config(tmp_path)
    start = time.time()
    clock, results = FakeClock(start), Results()
    async with _runtime(loaded, clock, results, worker=ScriptedModel(["first"])) as runtime:
        schedule = await runtime.schedule_task("check X", "every 30 minutes")
        await clock.advance(HALF_HOUR)
        assert (await results.next()).payload["response_number"] == 1
        await runtime.pool.wait_idle(WAIT)

    # Back after five periods: the four runs missed meanwhile become one.
    clock, results = FakeClock(start + 5 * HALF_HOUR + 60), Results()
    worker = ScriptedModel(["after the restart"])
    with caplog.at_level(logging.WARNING, logger="octopussy.scheduler"):
        async with _runtime(loaded, clock, results, worker=worker) as runtime:
            message = await results.next()
            await runtime.pool.wait_idle(WAIT)
            (listed,) = await runtime.schedules()
            assert await runtime.unschedule(schedule.id)
            assert not await runtime.unschedule(schedule.id)
            assert await runtime.schedules() == []
            task = await runtime.store.get_task(schedule.task_id)
    assert (message.task_id, message.payload["response_number"]) == (schedule.task_id, 2)
    assert message.payload["result"] == "after the restart"
    assert (listed.id, listed.runs, listed.next_run) == (schedule.id, 2, start + 6 * HALF_HOUR)
    assert "3 missed run(s)" in caplog.text
    assert task is not None
    assert task.status is TaskStatus.DONE  # unscheduling leaves past runs alone


async def test_unscheduled_before_its_first_run_and_bad_specs(tmp_path: Path) -> None:
    clock, results = FakeClock(time.time()), Results()
    async with _runtime(_config(tmp_path), clock, results) as runtime:
        with pytest.raises(ConfigError, match="every fortnight-ish"):
            await runtime.schedule_task("check X", "every fortnight-ish")
        assert await runtime.store.list_tasks() == []
        schedule = await runtime.schedule_task("check X", "0 9 * * mon-fri")
        assert [s.id for s in await runtime.schedules()] == [schedule.id]
        assert await runtime.unschedule(schedule.id)
        task = await runtime.store.get_task(schedule.task_id)
        assert await runtime.schedules() == []
    assert task is not None
    assert task.status is TaskStatus.CANCELLED


async def test_a_fire_while_the_last_run_still_goes_is_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow(_messages: list[ChatMessage], _info: CallInfo) -> str:
        entered.set()
        await release.wait()
        return "done at last"

    clock, results = FakeClock(time.time()), Results()
    async with _runtime(_config(tmp_path), clock, results, worker=FunctionModel(slow)) as runtime:
        schedule = await runtime.schedule_task("check X", "every 30 minutes")
        await clock.advance(HALF_HOUR)
        async with asyncio.timeout(WAIT):
            await entered.wait()
        with caplog.at_level(logging.WARNING, logger="octopussy.runtime"):
            record = await runtime.store.get_schedule(schedule.id)
            assert record is not None
            await runtime.fire_schedule(record)
        assert runtime.pool.status()["busy"] == {schedule.task_id: "worker_1"}
        release.set()
        message = await results.next()
        await runtime.pool.wait_idle(WAIT)
    assert message.payload["response_number"] == 1
    assert "skipped" in caplog.text


# from the shell -----------------------------------------------------------------------


def test_cli_lists_and_stops_schedules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    loaded = _config(tmp_path)
    config = str(tmp_path / "config.yaml")

    async def stored_schedule() -> ScheduleRecord:
        loaded.paths.ensure()
        store = SqliteStore(loaded.paths.store)
        await store.open()
        try:
            await store.add_task(TaskRecord("t1", "check X", status=TaskStatus.SCHEDULED))
            return await Scheduler(store, Fired()).add("check X", "every 30 minutes", task_id="t1")
        finally:
            await store.close()

    async def task_status() -> TaskStatus:
        store = SqliteStore(loaded.paths.store)
        await store.open()
        try:
            task = await store.get_task("t1")
            assert task is not None
            return task.status
        finally:
            await store.close()

    record = asyncio.run(stored_schedule())
    assert main(["--config", config, "schedules"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{record.id}  every 30 minutes  next ")
    assert line.endswith("check X")
    assert main(["--config", config, "schedules", "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert (listed["id"], listed["task_id"], listed["runs"]) == (record.id, "t1", 0)

    assert main(["--config", config, "unschedule", record.id]) == 0
    assert capsys.readouterr().out == f"schedule {record.id} stopped\n"
    assert main(["--config", config, "unschedule", record.id]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "no active schedule" in error
    assert main(["--config", config, "schedules", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert asyncio.run(task_status()) is TaskStatus.CANCELLED  # it never ran
