"""``SqliteStore``: the embedded ``Store`` backend, one SQLite file in WAL mode.

    async method ──run_in_executor──► the store's one thread ──► its own sqlite3 connection
                                         (FIFO: calls run in the order they were made)

sqlite3 blocks, so every statement runs on a single dedicated thread that opens, uses and
closes the connection; the connection never crosses threads and one store's calls never
race each other. Atomicity across processes (two stores on one file) comes from SQLite
itself: single statements (``INSERT OR IGNORE``, ``INSERT ... SELECT MAX``) or
``BEGIN IMMEDIATE`` transactions that take the write lock before reading. WAL lets readers
run beside the one writer; ``synchronous=NORMAL`` is durable against a process crash (a
power cut may lose the last commits, never corrupt the file). The schema is versioned with
``PRAGMA user_version`` and migrated step by step in ``open()``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from os import PathLike
from pathlib import Path
from typing import Any, Final, TypeVar

from octopussy.errors import BackendUnavailable
from octopussy.store.base import (
    EventRecord,
    ScheduleRecord,
    TaskRecord,
    TaskResult,
    TaskStatus,
)

__all__ = ["SCHEMA_VERSION", "SqliteStore"]

_T = TypeVar("_T")

_log = logging.getLogger(__name__)

#: Migration N (0-based) takes the schema from ``user_version`` N to N + 1. Append, never edit.
_MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        """CREATE TABLE tasks (
            seq         INTEGER PRIMARY KEY AUTOINCREMENT,
            id          TEXT NOT NULL UNIQUE,
            description TEXT NOT NULL,
            status      TEXT NOT NULL,
            created_at  REAL NOT NULL,
            updated_at  REAL NOT NULL,
            assigned_to TEXT,
            prompt      TEXT,
            data        TEXT NOT NULL DEFAULT '{}'
        )""",
        "CREATE INDEX tasks_created ON tasks (created_at, seq)",
        "CREATE INDEX tasks_status ON tasks (status, created_at)",
        """CREATE TABLE results (
            seq       INTEGER PRIMARY KEY AUTOINCREMENT,
            task_id   TEXT NOT NULL,
            kind      TEXT NOT NULL,
            number    INTEGER NOT NULL,
            content   TEXT NOT NULL,
            timestamp REAL NOT NULL,
            UNIQUE (task_id, kind, number)
        )""",
        "CREATE INDEX results_task ON results (task_id, seq)",
        """CREATE TABLE events (
            id        INTEGER PRIMARY KEY AUTOINCREMENT,
            timestamp REAL NOT NULL,
            kind      TEXT NOT NULL,
            agent     TEXT,
            task_id   TEXT,
            payload   TEXT NOT NULL
        )""",
        "CREATE INDEX events_kind ON events (kind, id)",
        """CREATE TABLE seen (
            namespace TEXT NOT NULL,
            key       TEXT NOT NULL,
            seen_at   REAL NOT NULL,
            PRIMARY KEY (namespace, key)
        ) WITHOUT ROWID""",
        "CREATE INDEX seen_age ON seen (namespace, seen_at)",
    ),
    (
        """CREATE TABLE schedules (
            seq         INTEGER PRIMARY KEY AUTOINCREMENT,
            id          TEXT NOT NULL UNIQUE,
            task_id     TEXT NOT NULL,
            spec        TEXT NOT NULL,
            description TEXT NOT NULL,
            created_at  REAL NOT NULL,
            next_run    REAL NOT NULL,
            last_run    REAL,
            runs        INTEGER NOT NULL DEFAULT 0,
            active      INTEGER NOT NULL DEFAULT 1
        )""",
        "CREATE INDEX schedules_due ON schedules (active, next_run)",
    ),
    (
        """CREATE TABLE state (
            namespace  TEXT NOT NULL,
            key        TEXT NOT NULL,
            value      TEXT NOT NULL,
            updated_at REAL NOT NULL,
            PRIMARY KEY (namespace, key)
        ) WITHOUT ROWID""",
    ),
)

#: The schema version this code writes (``PRAGMA user_version`` after ``open()``).
SCHEMA_VERSION: Final = len(_MIGRATIONS)

_TASK_COLUMNS: Final = "id, description, status, created_at, updated_at, assigned_to, prompt, data"
_FINISHED: Final = tuple(status.value for status in TaskStatus if status.finished)
_CLAIM_TASK: Final = (
    "UPDATE tasks SET status = ?, assigned_to = ?, updated_at = MAX(updated_at, ?)"
    f" WHERE id = ? AND status NOT IN ({', '.join('?' * len(_FINISHED))})"
    f" RETURNING {_TASK_COLUMNS}"
)
_SCHEDULE_COLUMNS: Final = (
    "id, task_id, spec, description, created_at, next_run, last_run, runs, active"
)
_HINT_DAMAGED: Final = "the file is damaged or not a database: move it away to start empty"
_HINT_PATH: Final = "check that the path is a file in a writable directory"
_HINT_LOCKED: Final = "another process holds the write lock; is a stuck octopussy still running?"


def _hint_for(exc: sqlite3.Error) -> str:
    """What the user can do about ``exc`` (sqlite3 exceptions carry only a message in 3.11)."""
    text = str(exc).lower()
    if "unable to open" in text or "readonly" in text or "read-only" in text:
        return _HINT_PATH
    if "locked" in text or "busy" in text:
        return _HINT_LOCKED
    return _HINT_DAMAGED


def _dumps(value: Mapping[str, Any]) -> str:
    return json.dumps(dict(value), ensure_ascii=False, separators=(",", ":"))


def _task_from_row(row: sqlite3.Row) -> TaskRecord:
    return TaskRecord(
        id=row["id"],
        description=row["description"],
        status=TaskStatus(row["status"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        assigned_to=row["assigned_to"],
        prompt=row["prompt"],
        data=json.loads(row["data"]),
    )


def _schedule_from_row(row: sqlite3.Row) -> ScheduleRecord:
    return ScheduleRecord(
        id=row["id"],
        task_id=row["task_id"],
        spec=row["spec"],
        description=row["description"],
        created_at=row["created_at"],
        next_run=row["next_run"],
        last_run=row["last_run"],
        runs=row["runs"],
        active=bool(row["active"]),
    )


@contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """A write transaction that takes the lock up front, so read-modify-write is atomic
    across processes (a deferred one could fail with SQLITE_BUSY halfway through)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _insert_result(
    conn: sqlite3.Connection, task_id: str, kind: str, content: str, timestamp: float
) -> int:
    """Append a result numbered inside the one INSERT statement, so concurrent writers
    (even other processes) never get the same number; returns the number."""
    number: int = conn.execute(
        "INSERT INTO results (task_id, kind, number, content, timestamp)"
        " SELECT ?, ?, COALESCE(MAX(number), 0) + 1, ?, ?"
        " FROM results WHERE task_id = ? AND kind = ?"
        " RETURNING number",
        (task_id, kind, content, timestamp, task_id, kind),
    ).fetchone()[0]
    return number


def _merge_task(
    conn: sqlite3.Connection,
    task_id: str,
    *,
    status: TaskStatus | None,
    patch: Mapping[str, Any],
    now: float,
) -> bool:
    """Merge ``patch`` into the task's data key by key, set ``status`` (unless None) and
    bump ``updated_at``; False if the task is unknown. Call inside ``_immediate``."""
    row = conn.execute("SELECT data, updated_at FROM tasks WHERE id = ?", (task_id,)).fetchone()
    if row is None:
        return False
    data = json.loads(row["data"])
    data.update(patch)
    # Only the columns that change: an UPDATE of ``status`` also rewrites its index entry.
    columns, values = ["data = ?", "updated_at = ?"], [_dumps(data), max(now, row["updated_at"])]
    if status is not None:
        columns.append("status = ?")
        values.append(status.value)
    conn.execute(f"UPDATE tasks SET {', '.join(columns)} WHERE id = ?", (*values, task_id))
    return True


class SqliteStore:
    """The embedded ``Store``: everything in one SQLite file at ``path`` (WAL mode).

    ``busy_timeout`` is how long (seconds) a statement waits for another process's write
    lock before failing. Call ``open()`` first and ``close()`` last; a store may be opened
    again after closing. Several stores (and processes) may share one file.
    """

    def __init__(self, path: str | PathLike[str], *, busy_timeout: float = 5.0) -> None:
        self._path = Path(path)
        self._busy_timeout = busy_timeout
        self._executor: ThreadPoolExecutor | None = None
        # Touched only on the executor's thread (set by _open_sync, cleared by _close_sync).
        self._conn: sqlite3.Connection | None = None

    @property
    def path(self) -> Path:
        return self._path

    # lifecycle ------------------------------------------------------------------

    async def open(self) -> None:
        """Open the file (created if missing, with its parent directories), switch it to WAL
        and migrate the schema. Raises ``BackendUnavailable`` if the file cannot be used."""
        if self._executor is not None:
            return
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="octopussy-sqlite")
        self._executor = executor
        try:
            await self._run(self._open_sync)
        except BaseException as exc:
            self._executor = None
            # Close whatever the open job left open, on its own thread. If we are being
            # cancelled the job may still be running: let the thread finish it alone rather
            # than block the loop; otherwise it is idle and joining it is immediate.
            executor.submit(self._close_sync)
            executor.shutdown(wait=not isinstance(exc, asyncio.CancelledError))
            if isinstance(exc, OSError):  # the parent directory cannot be created
                raise BackendUnavailable(
                    f"cannot open the SQLite store {self._path}: cannot create directory "
                    f"{exc.filename or self._path.parent}: {exc.strerror or exc}",
                    hint=_HINT_PATH,
                ) from exc
            raise

    async def close(self) -> None:
        """Close the connection and stop the thread; idempotent. Calls made before
        ``close()`` still complete (the thread runs jobs in order); later ones fail."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        closing = executor.submit(self._close_sync)
        try:
            await asyncio.wrap_future(closing)
        finally:
            # Once the close job is done the thread is idle and the join immediate; if we
            # were cancelled before that, the thread finishes the queue on its own.
            executor.shutdown(wait=closing.done())

    def _open_sync(self) -> None:
        if str(self._path) != ":memory:":
            self._path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self._path, timeout=self._busy_timeout, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            self._enable_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
            self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        """Switch the file to WAL (a persistent property of the file).

        The switch needs an exclusive lock and SQLite answers SQLITE_BUSY at once, without
        the busy handler, when another connection is opening the same new file: so retry
        with a short backoff (on this worker thread) until ``busy_timeout``.
        """
        deadline = time.monotonic() + self._busy_timeout
        delay = 0.002
        while True:
            # The first statement that reads the file: a damaged file fails here.
            mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()
            if mode in ("wal", "memory"):  # "memory": a ":memory:" database has no WAL
                return
            try:
                mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
                continue
            if mode != "wal":
                # E.g. a file system without shared memory: still correct, less concurrent.
                _log.warning("SQLite store %s stays in journal mode %r, not WAL", self._path, mode)
            return

    def _migrate(self, conn: sqlite3.Connection) -> None:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version == SCHEMA_VERSION:
            return  # the common case: no write lock needed to open
        with _immediate(conn):
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            if version > SCHEMA_VERSION:
                raise BackendUnavailable(
                    f"store {self._path} has schema version {version}, "
                    f"newer than this program's {SCHEMA_VERSION}",
                    hint="upgrade octopussy, or move the file away to start empty",
                )
            for step in _MIGRATIONS[version:]:
                for statement in step:
                    conn.execute(statement)
            if version != SCHEMA_VERSION:
                # Inside the transaction: the new tables and the version commit together.
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _close_sync(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def _run(self, job: Callable[[], _T]) -> _T:
        """Run ``job`` on the store's thread; sqlite failures become ``BackendUnavailable``.

        A cancelled caller stops waiting, but a job already running finishes (and commits).
        """
        if self._executor is None:
            raise RuntimeError(f"store {self._path} is not open; call open() first")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, job)
        except (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError):
            raise  # our own bugs (or handled by the caller): keep them as they are
        except sqlite3.Error as exc:
            detail = " ".join(str(exc).split()) or type(exc).__name__
            raise BackendUnavailable(
                f"cannot use the SQLite store {self._path}: {detail}", hint=_hint_for(exc)
            ) from exc

    def _db(self) -> sqlite3.Connection:
        conn = self._conn
        if conn is None:
            raise RuntimeError(f"store {self._path} is not open; call open() first")
        return conn

    async def diagnostics(self) -> dict[str, Any]:
        """Path, journal mode, synchronous level, schema and SQLite versions (for `/status`)."""

        def job() -> dict[str, Any]:
            conn = self._db()
            return {
                "path": str(self._path),
                "journal_mode": conn.execute("PRAGMA journal_mode").fetchone()[0],
                "synchronous": conn.execute("PRAGMA synchronous").fetchone()[0],
                "busy_timeout_ms": conn.execute("PRAGMA busy_timeout").fetchone()[0],
                "user_version": conn.execute("PRAGMA user_version").fetchone()[0],
                "sqlite_version": sqlite3.sqlite_version,
            }

        return await self._run(job)

    # tasks ----------------------------------------------------------------------

    async def add_task(self, task: TaskRecord) -> None:
        """Insert ``task``; a zero ``created_at`` means now, a zero ``updated_at`` means
        ``created_at``. Raises ``ValueError`` if the id exists."""
        created = task.created_at or time.time()
        row = (
            task.id,
            task.description,
            TaskStatus(task.status).value,
            created,
            task.updated_at or created,
            task.assigned_to,
            task.prompt,
            _dumps(task.data),
        )

        def job() -> None:
            self._db().execute(
                f"INSERT INTO tasks ({_TASK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row
            )

        try:
            await self._run(job)
        except sqlite3.IntegrityError as exc:
            if "UNIQUE" not in str(exc):
                raise
            raise ValueError(f"a task with id {task.id!r} already exists") from None

    async def get_task(self, task_id: str) -> TaskRecord | None:
        def job() -> TaskRecord | None:
            row = (
                self._db()
                .execute(f"SELECT {_TASK_COLUMNS} FROM tasks WHERE id = ?", (task_id,))
                .fetchone()
            )
            return None if row is None else _task_from_row(row)

        return await self._run(job)

    async def update_task(
        self,
        task_id: str,
        *,
        status: TaskStatus | None = None,
        assigned_to: str | None = None,
        prompt: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> TaskRecord:
        """Change the given fields (None means "leave as is"; ``data`` is merged key by key)
        and bump ``updated_at``; returns the new record. Raises ``KeyError`` if unknown."""
        new_status = None if status is None else TaskStatus(status)
        patch = None if data is None else dict(data)

        def job() -> TaskRecord | None:
            conn = self._db()
            with _immediate(conn):
                row = conn.execute(
                    f"SELECT {_TASK_COLUMNS} FROM tasks WHERE id = ?", (task_id,)
                ).fetchone()
                if row is None:
                    return None
                task = _task_from_row(row)
                if new_status is not None:
                    task.status = new_status
                if assigned_to is not None:
                    task.assigned_to = assigned_to
                if prompt is not None:
                    task.prompt = prompt
                if patch:
                    task.data.update(patch)
                # Never move backwards, even if the clock does.
                task.updated_at = max(time.time(), task.updated_at)
                conn.execute(
                    "UPDATE tasks SET status = ?, assigned_to = ?, prompt = ?, data = ?,"
                    " updated_at = ? WHERE id = ?",
                    (
                        task.status.value,
                        task.assigned_to,
                        task.prompt,
                        _dumps(task.data),
                        task.updated_at,
                        task_id,
                    ),
                )
                return task

        task = await self._run(job)
        if task is None:
            raise KeyError(task_id)
        return task

    async def claim_task(self, task_id: str, *, worker: str) -> TaskRecord | None:
        """Mark the task ``RUNNING`` for ``worker`` unless it is unknown or finished; returns
        the new record or None. One conditional ``UPDATE ... RETURNING``: a concurrent finish
        or cancel (in any process) lands either before (refused) or after the claim."""
        params = (TaskStatus.RUNNING.value, worker, time.time(), task_id, *_FINISHED)

        def job() -> TaskRecord | None:
            row = self._db().execute(_CLAIM_TASK, params).fetchone()
            return None if row is None else _task_from_row(row)

        return await self._run(job)

    async def finish_task(
        self,
        task_id: str,
        *,
        status: TaskStatus,
        kind: str,
        content: str,
        data: Mapping[str, Any] | None = None,
    ) -> TaskResult:
        """Append the next result of ``kind``, set ``status`` and merge ``data`` in one
        ``BEGIN IMMEDIATE`` transaction. Raises ``KeyError`` (nothing written) if unknown."""
        patch = {} if data is None else dict(data)
        return await self._result_with_task(task_id, kind, content, TaskStatus(status), patch)

    async def _result_with_task(
        self,
        task_id: str,
        kind: str,
        content: str,
        status: TaskStatus | None,
        patch: Mapping[str, Any],
    ) -> TaskResult:
        """One transaction: merge ``patch`` (and ``status``) into the task, append the result."""
        timestamp = time.time()

        def job() -> int | None:
            conn = self._db()
            with _immediate(conn):
                if not _merge_task(conn, task_id, status=status, patch=patch, now=timestamp):
                    return None
                return _insert_result(conn, task_id, kind, content, timestamp)

        number = await self._run(job)
        if number is None:
            raise KeyError(task_id)
        return TaskResult(task_id, number, kind, content, timestamp)

    async def list_tasks(
        self, *, statuses: Sequence[TaskStatus] | None = None, limit: int = 100
    ) -> list[TaskRecord]:
        """Newest first (by ``created_at``, then insertion order); ``statuses`` filters."""
        sql = f"SELECT {_TASK_COLUMNS} FROM tasks"
        params: list[Any] = []
        if statuses is not None:
            wanted = [TaskStatus(s).value for s in statuses]
            if not wanted:
                return []
            sql += f" WHERE status IN ({', '.join('?' * len(wanted))})"
            params.extend(wanted)
        sql += " ORDER BY created_at DESC, seq DESC LIMIT ?"
        params.append(max(limit, 0))

        def job() -> list[TaskRecord]:
            return [_task_from_row(row) for row in self._db().execute(sql, params)]

        return await self._run(job)

    # results --------------------------------------------------------------------

    async def add_result(
        self, task_id: str, kind: str, content: str, *, data: Mapping[str, Any] | None = None
    ) -> TaskResult:
        """Append a response numbered from 1 per (task, kind); the number is chosen inside
        the INSERT itself. With ``data``, also merge it into the task's data, in one
        transaction with the row (``KeyError``, nothing written, if the task is unknown)."""
        if data is not None:
            return await self._result_with_task(task_id, kind, content, None, dict(data))
        timestamp = time.time()

        def job() -> int:  # one statement: no transaction needed
            return _insert_result(self._db(), task_id, kind, content, timestamp)

        number = await self._run(job)
        return TaskResult(task_id, number, kind, content, timestamp)

    async def results(self, task_id: str) -> list[TaskResult]:
        """Every result of ``task_id``, oldest first."""

        def job() -> list[TaskResult]:
            rows = self._db().execute(
                "SELECT task_id, number, kind, content, timestamp FROM results"
                " WHERE task_id = ? ORDER BY seq",
                (task_id,),
            )
            return [
                TaskResult(
                    task_id=row["task_id"],
                    number=row["number"],
                    kind=row["kind"],
                    content=row["content"],
                    timestamp=row["timestamp"],
                )
                for row in rows
            ]

        return await self._run(job)

    # events ---------------------------------------------------------------------

    async def add_event(
        self,
        kind: str,
        payload: Mapping[str, Any],
        *,
        agent: str | None = None,
        task_id: str | None = None,
        timestamp: float | None = None,
    ) -> int:
        """Append an event; returns its id (AUTOINCREMENT: increasing, never reused)."""
        row = (time.time() if timestamp is None else timestamp, kind, agent, task_id)
        body = _dumps(payload)

        def job() -> int:
            event_id: int = (
                self._db()
                .execute(
                    "INSERT INTO events (timestamp, kind, agent, task_id, payload)"
                    " VALUES (?, ?, ?, ?, ?) RETURNING id",
                    (*row, body),
                )
                .fetchone()[0]
            )
            return event_id

        return await self._run(job)

    async def events(
        self, *, kind: str | None = None, after_id: int = 0, limit: int = 100
    ) -> list[EventRecord]:
        """Events with id > ``after_id`` (of ``kind`` if given), oldest first."""
        sql = "SELECT id, timestamp, kind, agent, task_id, payload FROM events WHERE id > ?"
        params: list[Any] = [after_id]
        if kind is not None:
            sql += " AND kind = ?"
            params.append(kind)
        sql += " ORDER BY id LIMIT ?"
        params.append(max(limit, 0))

        def job() -> list[EventRecord]:
            return [
                EventRecord(
                    id=row["id"],
                    timestamp=row["timestamp"],
                    kind=row["kind"],
                    agent=row["agent"],
                    task_id=row["task_id"],
                    payload=json.loads(row["payload"]),
                )
                for row in self._db().execute(sql, params)
            ]

        return await self._run(job)

    # dedup keys -----------------------------------------------------------------

    async def mark_seen(self, namespace: str, key: str, *, timestamp: float | None = None) -> bool:
        """Remember ``key``; True if it was new. One ``INSERT OR IGNORE``: of concurrent
        callers (in any process) exactly one inserts the row."""
        seen_at = time.time() if timestamp is None else timestamp

        def job() -> bool:
            cursor = self._db().execute(
                "INSERT OR IGNORE INTO seen (namespace, key, seen_at) VALUES (?, ?, ?)",
                (namespace, key, seen_at),
            )
            return cursor.rowcount == 1

        return await self._run(job)

    async def is_seen(self, namespace: str, key: str) -> bool:
        def job() -> bool:
            row = (
                self._db()
                .execute("SELECT 1 FROM seen WHERE namespace = ? AND key = ?", (namespace, key))
                .fetchone()
            )
            return row is not None

        return await self._run(job)

    async def prune_seen(self, namespace: str, *, older_than: float) -> int:
        """Forget keys of ``namespace`` marked before ``older_than``; returns how many."""

        def job() -> int:
            cursor = self._db().execute(
                "DELETE FROM seen WHERE namespace = ? AND seen_at < ?", (namespace, older_than)
            )
            return cursor.rowcount

        return await self._run(job)

    # small state ----------------------------------------------------------------

    async def get_state(self, namespace: str, key: str) -> dict[str, Any] | None:
        def job() -> dict[str, Any] | None:
            row = (
                self._db()
                .execute(
                    "SELECT value FROM state WHERE namespace = ? AND key = ?", (namespace, key)
                )
                .fetchone()
            )
            return None if row is None else dict(json.loads(row["value"]))

        return await self._run(job)

    async def set_state(self, namespace: str, key: str, value: Mapping[str, Any]) -> None:
        """One upsert: a concurrent reader sees the old value or the new one, never a mix."""
        text, now = _dumps(value), time.time()

        def job() -> None:
            self._db().execute(
                "INSERT INTO state (namespace, key, value, updated_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (namespace, key) DO UPDATE"
                " SET value = excluded.value, updated_at = excluded.updated_at",
                (namespace, key, text, now),
            )

        await self._run(job)

    # schedules ------------------------------------------------------------------

    async def add_schedule(self, schedule: ScheduleRecord) -> None:
        """Insert ``schedule`` (a zero ``created_at`` means now); ``ValueError`` if the id
        exists."""
        row = (
            schedule.id,
            schedule.task_id,
            schedule.spec,
            schedule.description,
            schedule.created_at or time.time(),
            schedule.next_run,
            schedule.last_run,
            schedule.runs,
            int(schedule.active),
        )

        def job() -> None:
            self._db().execute(
                f"INSERT INTO schedules ({_SCHEDULE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )

        try:
            await self._run(job)
        except sqlite3.IntegrityError as exc:
            if "UNIQUE" not in str(exc):
                raise
            raise ValueError(f"a schedule with id {schedule.id!r} already exists") from None

    async def get_schedule(self, schedule_id: str) -> ScheduleRecord | None:
        def job() -> ScheduleRecord | None:
            row = (
                self._db()
                .execute(f"SELECT {_SCHEDULE_COLUMNS} FROM schedules WHERE id = ?", (schedule_id,))
                .fetchone()
            )
            return None if row is None else _schedule_from_row(row)

        return await self._run(job)

    async def list_schedules(self, *, active_only: bool = False) -> list[ScheduleRecord]:
        """Oldest first (insertion order); ``active_only`` leaves out unscheduled ones."""
        where = " WHERE active = 1" if active_only else ""
        sql = f"SELECT {_SCHEDULE_COLUMNS} FROM schedules{where} ORDER BY seq"

        def job() -> list[ScheduleRecord]:
            return [_schedule_from_row(row) for row in self._db().execute(sql)]

        return await self._run(job)

    async def update_schedule(
        self,
        schedule_id: str,
        *,
        next_run: float | None = None,
        last_run: float | None = None,
        runs: int | None = None,
        active: bool | None = None,
    ) -> ScheduleRecord:
        """Change the given fields (None means "leave as is"); returns the new record.
        Raises ``KeyError`` if unknown."""
        changes = {
            "next_run": next_run,
            "last_run": last_run,
            "runs": runs,
            "active": None if active is None else int(active),
        }
        assignments = [(column, value) for column, value in changes.items() if value is not None]

        def job() -> ScheduleRecord | None:
            conn = self._db()
            with _immediate(conn):  # the record returned is the one this call wrote
                if assignments:
                    conn.execute(
                        f"UPDATE schedules SET {', '.join(f'{c} = ?' for c, _ in assignments)}"
                        " WHERE id = ?",
                        (*(value for _, value in assignments), schedule_id),
                    )
                row = conn.execute(
                    f"SELECT {_SCHEDULE_COLUMNS} FROM schedules WHERE id = ?", (schedule_id,)
                ).fetchone()
            return None if row is None else _schedule_from_row(row)

        schedule = await self._run(job)
        if schedule is None:
            raise KeyError(schedule_id)
        return schedule

    async def claim_schedule(
        self, schedule_id: str, *, due: float, next_run: float, now: float
    ) -> ScheduleRecord | None:
        """Record one run if the schedule is active and still due at ``due``. One
        conditional ``UPDATE ... RETURNING``: of concurrent claims (in any process) exactly
        one matches the row."""

        def job() -> ScheduleRecord | None:
            row = (
                self._db()
                .execute(
                    "UPDATE schedules SET next_run = ?, last_run = ?, runs = runs + 1"
                    " WHERE id = ? AND active = 1 AND next_run = ?"
                    f" RETURNING {_SCHEDULE_COLUMNS}",
                    (next_run, now, schedule_id, due),
                )
                .fetchone()
            )
            return None if row is None else _schedule_from_row(row)

        return await self._run(job)

    def __repr__(self) -> str:
        state = "open" if self._executor is not None else "closed"
        return f"<SqliteStore {str(self._path)!r} {state}>"
