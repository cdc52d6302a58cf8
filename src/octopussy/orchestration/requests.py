"""Requests from other processes on the same data dir, passed through the store.

    octopussy cancel ID        ──► event "cancel_request" (task_id)  ─┐
    octopussy ask --no-wait    ──► event "task_request"   (task_id)  ─┤ RequestWatcher polls
                                                                      ▼ the events table
                               pool.cancel(ID)  /  pool.submit(ID) in the running chat/serve

There is no daemon socket: the SQLite store (WAL, safe across processes) is the channel.
A task request is claimed with ``mark_seen`` so that, of two running processes, exactly one
runs the task. Requests made while no process runs need no delivery: a cancelled task is
already ``CANCELLED`` in the store, and a queued one is resumed by the next start.
"""

from __future__ import annotations

import asyncio
import logging

from octopussy.orchestration.pool import WorkerPool
from octopussy.store.base import EventRecord, Store

__all__ = ["CANCEL_REQUEST", "TASK_REQUEST", "RequestWatcher"]

log = logging.getLogger("octopussy.requests")

CANCEL_REQUEST = "cancel_request"
TASK_REQUEST = "task_request"
_SCAN_LIMIT = 1000


class RequestWatcher:
    """Polls the store for requests newer than its start; ``run_tasks`` accepts new tasks."""

    def __init__(
        self, store: Store, pool: WorkerPool, *, run_tasks: bool, interval: float = 0.5
    ) -> None:
        self.store = store
        self.pool = pool
        self.run_tasks = run_tasks
        self.interval = interval
        self._after: dict[str, int] = {}

    async def _latest(self, kind: str) -> int:
        latest = 0
        while batch := await self.store.events(kind=kind, after_id=latest, limit=_SCAN_LIMIT):
            latest = batch[-1].id
        return latest

    async def mark_start(self) -> None:
        """Ignore what was requested before now (see the module docstring for why)."""
        for kind in (CANCEL_REQUEST, TASK_REQUEST):
            self._after[kind] = await self._latest(kind)

    async def poll(self) -> None:
        """Act on every request that arrived since the last poll."""
        if not self._after:
            await self.mark_start()
        for event in await self._new(CANCEL_REQUEST):
            if event.task_id and await self.pool.cancel(event.task_id):
                log.info("task %s cancelled by another process", event.task_id)
        if not self.run_tasks:
            return
        for event in await self._new(TASK_REQUEST):
            if event.task_id and await self.store.mark_seen(TASK_REQUEST, event.task_id):
                log.info("task %s handed over by another process", event.task_id)
                await self.pool.submit(event.task_id)

    async def _new(self, kind: str) -> list[EventRecord]:
        events = await self.store.events(kind=kind, after_id=self._after[kind], limit=_SCAN_LIMIT)
        if events:
            self._after[kind] = events[-1].id
        return events

    async def run(self) -> None:
        """Poll forever; a failing poll (store busy) is logged and retried."""
        while True:
            try:
                await self.poll()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("watching for requests failed; retrying")
            await asyncio.sleep(self.interval)
