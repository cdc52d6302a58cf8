"""The ``Store`` Protocol: what must survive a restart.

    tasks      one row per task (status, description, prompt, who runs it, extra data);
               claimed (read + RUNNING) and finished (result + status + data) atomically
    results    numbered responses / errors / progress per task, append-only
    events     everything shown to the user (notifications, results), append-only
    seen keys  dedup keys per namespace (processed mail, notified events), prunable
    schedules  recurring tasks: spec, next/last run, run count; claimed atomically per run
    state      small JSON values per namespace and key (a mailbox's UIDVALIDITY and last UID)

Every backend passes the same contract suite (tests/store). Records are plain dataclasses;
``data``/``payload`` fields are JSON-compatible dicts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable


class TaskStatus(StrEnum):
    SCHEDULED = "scheduled"  # a recurring task waiting for its first run
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (TaskStatus.DONE, TaskStatus.FAILED, TaskStatus.CANCELLED)


@dataclass(slots=True)
class TaskRecord:
    id: str
    description: str
    status: TaskStatus = TaskStatus.QUEUED
    created_at: float = 0.0
    updated_at: float = 0.0
    assigned_to: str | None = None
    prompt: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TaskResult:
    task_id: str
    number: int
    kind: str  # "result" | "error" | "progress"
    content: str
    timestamp: float


@dataclass(frozen=True, slots=True)
class EventRecord:
    id: int
    timestamp: float
    kind: str
    agent: str | None
    task_id: str | None
    payload: dict[str, Any]


@dataclass(slots=True)
class ScheduleRecord:
    """A recurring task: ``task_id`` runs again each time ``next_run`` (epoch seconds) comes.

    ``spec`` is what ``parse_schedule`` reads ("every 30 minutes", a cron line); ``runs``
    counts the times it fired; an inactive schedule (unscheduled) never fires again.
    """

    id: str
    task_id: str
    spec: str
    description: str
    next_run: float
    created_at: float = 0.0
    last_run: float | None = None
    runs: int = 0
    active: bool = True


@runtime_checkable
class Store(Protocol):
    """Durable state shared by the agents of one ``OCTOPUSSY_HOME``."""

    async def open(self) -> None:
        """Create or migrate the schema; must be called before anything else."""
        ...

    async def close(self) -> None: ...

    # tasks -----------------------------------------------------------------
    async def add_task(self, task: TaskRecord) -> None:
        """Insert a new task; raises ``ValueError`` if the id exists."""
        ...

    async def get_task(self, task_id: str) -> TaskRecord | None: ...

    async def update_task(
        self,
        task_id: str,
        *,
        status: TaskStatus | None = None,
        assigned_to: str | None = None,
        prompt: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> TaskRecord:
        """Change the given fields (``data`` is merged key by key); raises ``KeyError``."""
        ...

    async def claim_task(self, task_id: str, *, worker: str) -> TaskRecord | None:
        """Mark a task that is not finished ``RUNNING`` with ``assigned_to = worker`` and
        return the new record; None if it is unknown or finished. Atomic: a task finished
        (or cancelled) concurrently is either claimed before or refused, never revived."""
        ...

    async def finish_task(
        self,
        task_id: str,
        *,
        status: TaskStatus,
        kind: str,
        content: str,
        data: Mapping[str, Any] | None = None,
    ) -> TaskResult:
        """Append the next result of ``kind`` (as ``add_result``), set ``status`` and merge
        ``data`` in one transaction; raises ``KeyError`` (and writes nothing) if unknown."""
        ...

    async def list_tasks(
        self, *, statuses: Sequence[TaskStatus] | None = None, limit: int = 100
    ) -> list[TaskRecord]:
        """Newest first."""
        ...

    # results ---------------------------------------------------------------
    async def add_result(
        self, task_id: str, kind: str, content: str, *, data: Mapping[str, Any] | None = None
    ) -> TaskResult:
        """Append a response; numbers count from 1 per task and kind. With ``data``, also
        merge it into the task's data in the same transaction (``KeyError`` if unknown)."""
        ...

    async def results(self, task_id: str) -> list[TaskResult]:
        """Oldest first."""
        ...

    # events ----------------------------------------------------------------
    async def add_event(
        self,
        kind: str,
        payload: Mapping[str, Any],
        *,
        agent: str | None = None,
        task_id: str | None = None,
        timestamp: float | None = None,
    ) -> int:
        """Append an event; returns its id (increasing)."""
        ...

    async def events(
        self, *, kind: str | None = None, after_id: int = 0, limit: int = 100
    ) -> list[EventRecord]:
        """Events with id > ``after_id``, oldest first."""
        ...

    # dedup keys -------------------------------------------------------------
    async def mark_seen(self, namespace: str, key: str, *, timestamp: float | None = None) -> bool:
        """Remember ``key``; True if it was new. Atomic: of two concurrent calls one wins."""
        ...

    async def is_seen(self, namespace: str, key: str) -> bool: ...

    async def prune_seen(self, namespace: str, *, older_than: float) -> int:
        """Forget keys marked before ``older_than``; returns how many were removed."""
        ...

    # schedules --------------------------------------------------------------
    async def add_schedule(self, schedule: ScheduleRecord) -> None:
        """Insert a new schedule; raises ``ValueError`` if the id exists."""
        ...

    async def get_schedule(self, schedule_id: str) -> ScheduleRecord | None: ...

    async def list_schedules(self, *, active_only: bool = False) -> list[ScheduleRecord]:
        """Oldest first."""
        ...

    async def update_schedule(
        self,
        schedule_id: str,
        *,
        next_run: float | None = None,
        last_run: float | None = None,
        runs: int | None = None,
        active: bool | None = None,
    ) -> ScheduleRecord:
        """Change the given fields (None: leave as is); raises ``KeyError`` if unknown."""
        ...

    async def claim_schedule(
        self, schedule_id: str, *, due: float, next_run: float, now: float
    ) -> ScheduleRecord | None:
        """Record one run of a schedule that is active and still due at ``due``: set
        ``next_run``, ``last_run = now``, ``runs + 1`` and return the new record. None if
        it is unknown, inactive or its ``next_run`` is no longer ``due`` (another scheduler
        claimed this run). Atomic: of two concurrent claims of one run exactly one wins."""
        ...

    # small state -------------------------------------------------------------
    async def get_state(self, namespace: str, key: str) -> dict[str, Any] | None:
        """The value last written by ``set_state``; None if there is none."""
        ...

    async def set_state(self, namespace: str, key: str, value: Mapping[str, Any]) -> None:
        """Replace the value of ``key`` (a JSON-compatible dict); durable when it returns."""
        ...
