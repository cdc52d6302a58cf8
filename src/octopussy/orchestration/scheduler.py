"""The scheduler: fires recurring tasks when they are due, across restarts.

    add(description, spec) ──► store: ScheduleRecord(next_run) ──► wake the loop
    run(): ┌► run_due(): for each active schedule with next_run <= now, soonest first:
           │     claim: next_run, last_run, runs + 1 persisted ──► fire(record)
           └─ sleep until the earliest next_run (at most a minute), or until woken

The store is the source of truth: every pass reads the active schedules again, so one
added or removed elsewhere (another process, ``octopussy unschedule``) is seen at the next
pass, and a claim is a compare-and-set on ``next_run``, so two schedulers on one store never
fire the same run twice. The run is recorded *before* ``fire`` is called: a crash between
the two loses that run instead of repeating it. A ``fire`` that raises is logged and the
schedule stays on.

Missed runs (the process was down, the machine asleep) are coalesced: an overdue schedule
fires once, the run times it skipped are counted and logged, and its next run is the first
time after now. Sleeps are capped at a minute, so a jump of the wall clock (suspend, NTP,
daylight saving) is noticed. ``clock`` and ``sleep`` are injected: tests drive the loop
with a fake clock. ``fire`` runs on the loop, one at a time: it should queue work, not do it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, tzinfo

from octopussy.errors import ConfigError
from octopussy.orchestration.schedule import catch_up, next_time, parse_schedule
from octopussy.store.base import ScheduleRecord, Store, TaskStatus

__all__ = [
    "MAX_SLEEP",
    "Fire",
    "Scheduler",
    "active_schedules",
    "format_schedule",
    "stop_schedule",
]

log = logging.getLogger("octopussy.scheduler")

Fire = Callable[[ScheduleRecord], Awaitable[None]]

#: The longest the loop sleeps without looking at the clock again (seconds).
MAX_SLEEP = 60.0
#: How long the loop waits after a failed pass (the store is down, ...) (seconds).
RETRY_DELAY = 30.0


class Scheduler:
    """Keeps the schedules of one store and calls ``fire`` each time one is due."""

    def __init__(
        self,
        store: Store,
        fire: Fire,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        zone: tzinfo | None = None,
    ) -> None:
        """``clock`` gives epoch seconds; cron is read in ``zone`` (default: local time)."""
        self._store = store
        self._fire = fire
        self._clock = clock
        self._sleep = sleep
        self._zone = zone
        self._wake = asyncio.Event()

    # -- managing schedules

    def first_run(self, spec: str) -> float:
        """When a schedule of ``spec`` added now would first fire; ``ConfigError`` (one clear
        line) if ``spec`` cannot be read or never matches."""
        return next_time(parse_schedule(spec), self._clock(), self._zone)

    async def add(
        self, description: str, spec: str, *, task_id: str = "", schedule_id: str | None = None
    ) -> ScheduleRecord:
        """Store a new schedule whose first run is one period from now; ``ConfigError`` for
        a bad ``spec`` (nothing is stored then)."""
        first = self.first_run(spec)
        record = ScheduleRecord(
            id=schedule_id or uuid.uuid4().hex[:8],
            task_id=task_id,
            spec=" ".join(spec.split()),
            description=description,
            next_run=first,
            created_at=self._clock(),
        )
        await self._store.add_schedule(record)
        self._wake.set()
        log.info("schedule %s added (%s): %s", record.id, record.spec, description)
        return record

    async def remove(self, schedule_id: str) -> bool:
        """``stop_schedule`` and re-plan; False if it is unknown or already stopped."""
        stopped = await stop_schedule(self._store, schedule_id)
        if stopped:
            self._wake.set()
        return stopped

    async def schedules(self) -> list[ScheduleRecord]:
        """The active schedules, soonest first."""
        return await active_schedules(self._store)

    # -- firing

    async def run(self) -> None:
        """Fire due schedules until cancelled (its owner cancels it on shutdown)."""
        log.info("scheduler started")
        while True:
            self._wake.clear()  # before reading: a change made during the pass wakes us
            try:
                await self.run_due()
                delay = await self._delay()
            except Exception:
                log.exception("scheduler pass failed; next try in %.0fs", RETRY_DELAY)
                delay = RETRY_DELAY
            if delay > 0:
                await self._sleep_or_wake(delay)

    async def run_due(self) -> list[ScheduleRecord]:
        """Fire every active schedule whose time has come, once each however late it is;
        returns the records fired (as stored after the claim)."""
        now = self._clock()
        fired: list[ScheduleRecord] = []
        for record in await self.schedules():
            if record.next_run > now:
                break
            claimed = await self._claim(record, now)
            if claimed is None:
                continue
            fired.append(claimed)
            try:
                await self._fire(claimed)
            except Exception:
                log.exception("schedule %s: run %d failed to start", claimed.id, claimed.runs)
        return fired

    async def _claim(self, record: ScheduleRecord, now: float) -> ScheduleRecord | None:
        try:
            following, missed = catch_up(
                parse_schedule(record.spec), record.next_run, now, self._zone
            )
        except ConfigError as exc:
            # Stored by an older version that read specs differently: stop it, loudly.
            log.error("schedule %s stopped: %s", record.id, exc)
            await self._store.update_schedule(record.id, active=False)
            return None
        claimed = await self._store.claim_schedule(
            record.id, due=record.next_run, next_run=following, now=now
        )
        if claimed is None:
            log.debug("schedule %s: run claimed elsewhere or stopped", record.id)
        elif missed:
            log.warning("schedule %s: %d missed run(s) coalesced into this one", record.id, missed)
        return claimed

    async def _delay(self) -> float:
        """Seconds until the soonest active schedule is due (0: now), at most MAX_SLEEP."""
        found = await self._store.list_schedules(active_only=True)
        if not found:
            return MAX_SLEEP
        soonest = min(record.next_run for record in found)
        return min(max(soonest - self._clock(), 0.0), MAX_SLEEP)

    async def _sleep_or_wake(self, delay: float) -> None:
        sleeper = asyncio.ensure_future(self._sleep(delay))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()
            await asyncio.wait({sleeper, waker})


# -- without a running scheduler (the CLI, another process) --------------------------------


async def active_schedules(store: Store) -> list[ScheduleRecord]:
    """The active schedules of ``store``, soonest first."""
    found = await store.list_schedules(active_only=True)
    return sorted(found, key=lambda record: (record.next_run, record.created_at))


async def stop_schedule(store: Store, schedule_id: str) -> bool:
    """Stop ``schedule_id`` for good (kept in the store, inactive; a run in progress
    finishes). Its task, if it never ran, becomes ``CANCELLED``. False if the schedule is
    unknown or already stopped. A scheduler in another process never fires it again (its
    claim checks ``active``)."""
    record = await store.get_schedule(schedule_id)
    if record is None or not record.active:
        return False
    await store.update_schedule(schedule_id, active=False)
    task = await store.get_task(record.task_id) if record.task_id else None
    if task is not None and task.status is TaskStatus.SCHEDULED:
        await store.update_task(task.id, status=TaskStatus.CANCELLED)
    log.info("schedule %s stopped after %d run(s)", schedule_id, record.runs)
    return True


def format_schedule(record: ScheduleRecord) -> str:
    """One line: id, spec, next run (local time), runs so far, the description."""
    when = datetime.fromtimestamp(record.next_run).strftime("%Y-%m-%d %H:%M")
    state = "" if record.active else " (stopped)"
    return (
        f"{record.id}  {record.spec}  next {when}  runs {record.runs}{state}  "
        f"task {record.task_id}  {record.description}"
    )
