"""The worker pool: runs queued tasks on at most ``max_workers`` workers at once.

    submit(id) ──► FIFO queue ──► idle worker (reused) or make_worker("worker_N")
                                   while busy < max_workers
                       ▲                     │ one owned asyncio task per run
                       │                     ▼ worker.run_task(id): claims it in the store
                       └── next queued ◄── run ends: worker idle (at most max_idle_workers
                                                     are kept, the rest are dropped)

The task must already be in the store as ``QUEUED``; the pool only holds ids, and the
worker claims the task (reads it and marks it ``RUNNING`` in one store call) when its run
starts: a task that reached an end state meanwhile is skipped.

Cancellation: ``cancel`` of a running task cancels its run (the worker marks it
``CANCELLED`` and sends ``TASK_ERROR`` "cancelled by the user"); of a queued task, or of a
run cancelled before its first step, removes it and marks it ``CANCELLED`` in the store
without any message (no worker ever saw it).

Stopping and resuming — the choice made here: ``stop`` is the *process* going away, not
the user giving up. Interrupted runs are therefore put back to ``QUEUED`` (the worker does
it when told via ``request_shutdown``; the pool re-checks afterwards) and queued tasks stay
``QUEUED`` in the store; nobody gets a ``TASK_ERROR``. After a crash no ``stop`` ran and
tasks may be left ``RUNNING``. ``resume`` in the next process re-queues both ``QUEUED``
and ``RUNNING`` tasks, oldest first, and returns their ids so the caller can tell the user.
The price: a task interrupted mid-way starts over, so tools with side effects may run twice.
Idle workers hold no resources of their own (the pool calls ``run_task`` directly and never
registers them on the bus), so dropping one is all "shutting it down" takes.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from octopussy.agents.worker import Worker
from octopussy.store.base import Store, TaskStatus

__all__ = ["WorkerPool"]

log = logging.getLogger("octopussy.pool")

_RESUME_LIMIT = 10_000


@dataclass(slots=True)
class _Run:
    worker: Worker
    task: asyncio.Task[None]


class WorkerPool:
    """Owns the workers and the asyncio tasks that run them."""

    def __init__(
        self,
        *,
        make_worker: Callable[[str], Worker],
        store: Store,
        max_workers: int,
        max_idle_workers: int,
    ) -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, got {max_workers}")
        if max_idle_workers < 0:
            raise ValueError(f"max_idle_workers must not be negative, got {max_idle_workers}")
        self._make_worker = make_worker
        self._store = store
        self.max_workers = max_workers
        self.max_idle_workers = max_idle_workers
        self._busy: dict[str, _Run] = {}
        self._idle: list[Worker] = []
        self._queue: deque[str] = deque()
        self._created = 0
        self._stopping = False
        self._quiet = asyncio.Event()
        self._quiet.set()

    # -- submitting

    async def submit(self, task_id: str) -> None:
        """Run ``task_id`` (already ``QUEUED`` in the store) now or when a worker frees up.

        A task that is already running or queued here is not added twice.
        """
        if self._stopping:
            raise RuntimeError("the worker pool is stopped")
        if task_id in self._busy or task_id in self._queue:
            return
        self._queue.append(task_id)
        self._dispatch()

    def _dispatch(self) -> None:
        """Start queued tasks while there is room."""
        while self._queue and len(self._busy) < self.max_workers and not self._stopping:
            task_id = self._queue.popleft()
            worker = self._idle.pop() if self._idle else self._new_worker()
            run = asyncio.create_task(worker.run_task(task_id), name=f"{worker.name}:{task_id}")
            self._busy[task_id] = _Run(worker, run)
            run.add_done_callback(functools.partial(self._finished, task_id))
        self._update_quiet()

    def _new_worker(self) -> Worker:
        self._created += 1
        worker = self._make_worker(f"worker_{self._created}")
        log.debug("created %s", worker.name)
        return worker

    def _finished(self, task_id: str, done: asyncio.Task[None]) -> None:
        run = self._busy.pop(task_id, None)
        if not done.cancelled() and (exc := done.exception()) is not None:
            log.error("run of task %s failed: %s", task_id, exc, exc_info=exc)
        if run is not None and not self._stopping:
            if len(self._idle) < self.max_idle_workers:
                self._idle.append(run.worker)
            else:
                log.debug("dropped idle %s (idle cap %d)", run.worker.name, self.max_idle_workers)
        self._dispatch()

    def _update_quiet(self) -> None:
        if self._busy or self._queue:
            self._quiet.clear()
        else:
            self._quiet.set()

    # -- control

    async def cancel(self, task_id: str) -> bool:
        """Cancel a running or queued task; False if the pool does not hold it."""
        run = self._busy.get(task_id)
        if run is not None:
            # A run that has not taken its first step never enters run_task (the worker sets
            # current_task on entry), so nobody would mark the task: do it here, silently.
            started = run.worker.current_task == task_id
            run.task.cancel()
            await asyncio.wait({run.task})
            if not started:
                await self._store.update_task(task_id, status=TaskStatus.CANCELLED)
            return True
        if task_id in self._queue:
            self._queue.remove(task_id)
            self._update_quiet()
            await self._store.update_task(task_id, status=TaskStatus.CANCELLED)
            return True
        return False

    def status(self) -> dict[str, Any]:
        """``busy`` (task id → worker name), ``idle`` (worker names), ``queued`` (task ids)."""
        return {
            "busy": {task_id: run.worker.name for task_id, run in self._busy.items()},
            "idle": [worker.name for worker in self._idle],
            "queued": list(self._queue),
        }

    async def resume(self) -> list[str]:
        """Re-queue tasks left ``QUEUED`` or ``RUNNING`` by an earlier process, oldest first."""
        found = await self._store.list_tasks(
            statuses=[TaskStatus.QUEUED, TaskStatus.RUNNING], limit=_RESUME_LIMIT
        )
        found.sort(key=lambda task: (task.created_at, task.id))
        resumed: list[str] = []
        for task in found:
            if task.id in self._busy or task.id in self._queue:
                continue
            if task.status is TaskStatus.RUNNING:
                await self._store.update_task(task.id, status=TaskStatus.QUEUED)
            resumed.append(task.id)
            await self.submit(task.id)
        if resumed:
            log.info("resumed %d task(s): %s", len(resumed), ", ".join(resumed))
        return resumed

    async def stop(self) -> None:
        """Cancel and await every run; interrupted and queued tasks stay ``QUEUED``."""
        self._stopping = True
        self._queue.clear()
        runs = dict(self._busy)
        for run in runs.values():
            run.worker.request_shutdown()
            run.task.cancel()
        if runs:
            await asyncio.wait({run.task for run in runs.values()})
        for task_id in runs:
            try:
                record = await self._store.get_task(task_id)
                if record is not None and record.status is TaskStatus.RUNNING:
                    await self._store.update_task(task_id, status=TaskStatus.QUEUED)
            except Exception:
                log.exception("could not re-queue task %s", task_id)
        self._idle.clear()
        self._update_quiet()

    async def wait_idle(self, timeout: float | None = None) -> None:
        """Return once nothing runs and nothing is queued; ``TimeoutError`` after ``timeout``."""
        async with asyncio.timeout(timeout):
            await self._quiet.wait()
