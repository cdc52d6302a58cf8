"""Tasks from the shell: ``octopussy tasks``, ``octopussy cancel``, and ``ask`` waiting.

    octopussy tasks [--json]        newest tasks, one line each (or a JSON list)
    octopussy tasks ID [--json]     one task: status, prompt, tool calls, every response
    octopussy cancel ID             store: CANCELLED + a "cancel_request" event
                                        └─► a running chat/serve sees the event (Runtime
                                            watches for it) and stops the run at once
    octopussy ask "..."             the reply, then AskWaiter waits for the tasks it created
                                    and prints their results (progress on stderr)

A task that no process is running is simply marked ``CANCELLED``, so the next start does
not resume it. The store is SQLite in WAL mode, so these commands work while a chat runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import Callable, Iterable

from octopussy.bus.messages import Message, MessageType
from octopussy.config import LoadedConfig
from octopussy.display import format_task, format_task_list, task_json
from octopussy.errors import ConfigError
from octopussy.orchestration.requests import CANCEL_REQUEST
from octopussy.store.base import Store, TaskRecord, TaskStatus
from octopussy.store.sqlite import SqliteStore

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_TASK_FAILED = 3


async def _open_store(loaded: LoadedConfig) -> Store:
    loaded.paths.ensure()
    store = SqliteStore(loaded.paths.store)
    await store.open()
    return store


async def _find(store: Store, task_id: str) -> TaskRecord:
    task = await store.get_task(task_id)
    if task is None:
        raise ConfigError(f"no task {task_id!r}", hint="`octopussy tasks` lists the task ids")
    return task


async def show_tasks(loaded: LoadedConfig, args: argparse.Namespace) -> int:
    store = await _open_store(loaded)
    try:
        if args.task_id:
            task = await _find(store, args.task_id)
            results = await store.results(task.id)
            if args.json:
                print(json.dumps(task_json(task, results), ensure_ascii=False, indent=2))
            else:
                print("\n".join(format_task(task, results)))
            return EXIT_OK
        tasks = await store.list_tasks(limit=max(1, args.limit))
        if args.json:
            print(json.dumps([task_json(t) for t in tasks], ensure_ascii=False, indent=2))
        elif tasks:
            print("\n".join(format_task_list(tasks)))
        else:
            print("no tasks yet", file=sys.stderr)
        return EXIT_OK
    finally:
        await store.close()


async def cancel_task(loaded: LoadedConfig, args: argparse.Namespace) -> int:
    store = await _open_store(loaded)
    try:
        task = await _find(store, args.task_id)
        if task.status.finished:
            print(f"task {task.id} is already {task.status.value}; nothing to cancel")
            return EXIT_BAD_INPUT
        await store.update_task(task.id, status=TaskStatus.CANCELLED, data={"cancelled": "cli"})
        await store.add_event(CANCEL_REQUEST, {"from": "cli"}, task_id=task.id)
        print(f"task {task.id} cancelled")
        return EXIT_OK
    finally:
        await store.close()


class AskWaiter:
    """The presenter of ``octopussy ask``: progress lines to ``progress``, wakes waiters."""

    def __init__(self, progress: Callable[[str], None]) -> None:
        self.progress = progress
        self.changed = asyncio.Event()

    async def show(self, message: Message) -> None:
        if message.type is MessageType.TASK_PROGRESS:
            self.progress(f"[task {message.task_id}] {message.payload.get('text', '')}")
        elif message.type is MessageType.AGENT_NOTIFICATION:
            self.progress(f"[notice] {message.payload.get('text', '')}")
        self.changed.set()

    async def wait(
        self, store: Store, task_ids: Iterable[str], *, poll: float = 0.5
    ) -> list[TaskRecord]:
        """Wait until every task is finished; the store is the truth, messages wake us."""
        ids = list(task_ids)
        finished: dict[str, TaskRecord] = {}
        while len(finished) < len(ids):
            self.changed.clear()
            for task_id in ids:
                if task_id in finished:
                    continue
                task = await store.get_task(task_id)
                if task is None or task.status.finished:
                    finished[task_id] = task or TaskRecord(
                        id=task_id, description="", status=TaskStatus.FAILED
                    )
            if len(finished) < len(ids):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), poll)
        return [finished[task_id] for task_id in ids]


async def print_outcomes(store: Store, tasks: list[TaskRecord]) -> int:
    """Print each task's responses (stdout) or failure (stderr); the exit code."""
    code = EXIT_OK
    for task in tasks:
        results = await store.results(task.id)
        if task.status is TaskStatus.DONE:
            for result in results:
                if result.kind == "result":
                    print(result.content)
            continue
        code = EXIT_TASK_FAILED
        errors = [r.content for r in results if r.kind == "error"]
        reason = errors[-1] if errors else task.status.value
        print(f"octopussy: task {task.id} {task.status.value}: {reason}", file=sys.stderr)
    return code
