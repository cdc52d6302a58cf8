"""``SqliteStore`` specifics beyond the shared contract: pragmas, schema versioning, the
dedicated thread, unusable files, and two real processes on one file."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from octopussy.errors import BackendUnavailable, OctopussyError
from octopussy.store import ScheduleRecord, TaskRecord
from octopussy.store.sqlite import _MIGRATIONS, SCHEMA_VERSION, SqliteStore

WAIT = 20.0


def _store_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("octopussy-sqlite")]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "octopussy.db")
    await opened.open()
    yield opened
    await opened.close()


async def test_wal_normal_sync_and_schema_version(store: SqliteStore) -> None:
    info = await store.diagnostics()
    assert info["journal_mode"] == "wal"
    assert info["synchronous"] == 1  # NORMAL
    assert info["busy_timeout_ms"] == 5000
    assert info["user_version"] == SCHEMA_VERSION >= 1
    # WAL is a property of the file: a plain connection sees it too.
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


async def test_one_thread_per_store_gone_after_close(tmp_path: Path) -> None:
    before = len(_store_threads())
    store = SqliteStore(tmp_path / "a.db")
    await store.open()
    await asyncio.gather(*(store.mark_seen("ns", f"k{i}") for i in range(20)))
    assert len(_store_threads()) == before + 1
    await store.close()
    assert len(_store_threads()) == before


async def test_stores_opening_a_new_file_at_once(tmp_path: Path) -> None:
    # Switching a new file to WAL and creating the schema race between openers (SQLite
    # answers "locked" at once to the journal-mode switch); a few rounds make it likely.
    for round_ in range(30):
        stores = [SqliteStore(tmp_path / f"new-{round_}.db") for _ in range(3)]
        try:
            async with asyncio.timeout(WAIT):
                await asyncio.gather(*(s.open() for s in stores))
                outcomes = await asyncio.gather(*(s.mark_seen("ns", "k") for s in stores))
            assert outcomes.count(True) == 1
            assert {(await s.diagnostics())["journal_mode"] for s in stores} == {"wal"}
        finally:
            for s in stores:
                await s.close()


async def test_calls_made_before_close_still_complete(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "a.db")
    await store.open()
    calls = [asyncio.create_task(store.mark_seen("ns", f"k{i}")) for i in range(20)]
    await asyncio.sleep(0)  # a yield, not a timed wait: each call queues its job
    async with asyncio.timeout(WAIT):
        await store.close()
        assert await asyncio.gather(*calls) == [True] * 20
    await store.open()
    try:
        assert all([await store.is_seen("ns", f"k{i}") for i in range(20)])
    finally:
        await store.close()


async def test_use_before_open_or_after_close_is_an_error(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "a.db")
    with pytest.raises(RuntimeError, match="open"):
        await store.get_task("t1")
    await store.open()
    await store.close()
    with pytest.raises(RuntimeError, match="open"):
        await store.mark_seen("ns", "k")


async def test_can_be_opened_again_after_close(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "a.db")
    await store.open()
    await store.mark_seen("ns", "k")
    await store.close()
    await store.open()
    try:
        assert await store.is_seen("ns", "k")
    finally:
        await store.close()


async def test_existing_empty_database_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE unrelated (x)")
    conn.close()
    store = SqliteStore(path)
    await store.open()
    try:
        assert (await store.diagnostics())["user_version"] == SCHEMA_VERSION
        assert await store.mark_seen("ns", "k")
    finally:
        await store.close()


async def test_version_1_database_keeps_its_data_and_gains_schedules(tmp_path: Path) -> None:
    # A file written by the first release: schema version 1, one task with a result.
    path = tmp_path / "v1.db"
    with sqlite3.connect(path) as conn:
        for statement in _MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute(
            "INSERT INTO tasks (id, description, status, created_at, updated_at, data)"
            " VALUES ('t1', 'old task', 'done', 1.0, 2.0, '{\"k\": 1}')"
        )
        conn.execute(
            "INSERT INTO results (task_id, kind, number, content, timestamp)"
            " VALUES ('t1', 'result', 1, 'old answer', 2.0)"
        )
        conn.execute("PRAGMA user_version = 1")
    conn.close()
    store = SqliteStore(path)
    await store.open()
    try:
        assert (await store.diagnostics())["user_version"] == SCHEMA_VERSION
        old = await store.get_task("t1")
        assert old is not None
        assert (old.description, old.data) == ("old task", {"k": 1})
        assert (await store.add_result("t1", "result", "new")).number == 2
        await store.add_schedule(ScheduleRecord("s1", "t1", "hourly", "check", next_run=5.0))
        assert [s.id for s in await store.list_schedules()] == ["s1"]
    finally:
        await store.close()


def _assert_one_line_naming(error: OctopussyError, path: Path) -> str:
    text = str(error)
    assert "\n" not in text
    assert str(path) in text
    assert error.hint
    return text


async def test_corrupt_file_is_backend_unavailable_with_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "octopussy.db"
    path.write_bytes(b"this is not an SQLite database, just some bytes\n" * 200)
    before = len(_store_threads())
    store = SqliteStore(path)
    with pytest.raises(BackendUnavailable) as caught:
        await store.open()
    text = _assert_one_line_naming(caught.value, path)
    assert "move it away" in text
    assert len(_store_threads()) == before  # the failed open left no thread behind
    await store.close()  # harmless


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(BackendUnavailable, match="newer") as caught:
        await SqliteStore(path).open()
    _assert_one_line_naming(caught.value, path)


async def test_directory_in_place_of_the_file_is_backend_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "is-a-dir.db"
    path.mkdir()
    with pytest.raises(BackendUnavailable) as caught:
        await SqliteStore(path).open()
    _assert_one_line_naming(caught.value, path)


async def test_parent_that_is_a_file_is_backend_unavailable(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    path = tmp_path / "file" / "octopussy.db"
    with pytest.raises(BackendUnavailable) as caught:
        await SqliteStore(path).open()
    _assert_one_line_naming(caught.value, path)


async def test_unique_violation_other_than_id_is_not_reported_as_duplicate(
    store: SqliteStore,
) -> None:
    # A NOT NULL violation is our caller's bug, not "the id exists".
    with pytest.raises(sqlite3.IntegrityError):
        await store.add_task(TaskRecord(id="t1", description=None))  # type: ignore[arg-type]


# two processes ----------------------------------------------------------------------

# The child opens the store, says "ready", waits for "go", then races the parent: the same
# dedup keys and results of the same task. Printed as one JSON line.
_CHILD = """
import asyncio, json, sys
from octopussy.store.sqlite import SqliteStore

async def main(path: str) -> None:
    store = SqliteStore(path)
    await store.open()
    print("ready", flush=True)
    sys.stdin.readline()
    seen = await asyncio.gather(*(store.mark_seen("mail", f"k{i}") for i in range(40)))
    numbers = [(await store.add_result("t1", "progress", "child")).number for _ in range(40)]
    await store.close()
    print(json.dumps({"seen": seen, "numbers": numbers}), flush=True)

asyncio.run(main(sys.argv[1]))
"""


async def test_two_processes_on_one_file(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    store = SqliteStore(path)
    await store.open()
    async with asyncio.timeout(WAIT):
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _CHILD,
            str(path),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert child.stdin is not None
            assert child.stdout is not None
            assert (await child.stdout.readline()).strip() == b"ready"
            child.stdin.write(b"go\n")
            await child.stdin.drain()

            async def mine() -> tuple[list[bool], list[int]]:
                seen = await asyncio.gather(*(store.mark_seen("mail", f"k{i}") for i in range(40)))
                numbers = [
                    (await store.add_result("t1", "progress", "parent")).number for _ in range(40)
                ]
                return seen, numbers

            (my_seen, my_numbers), line = await asyncio.gather(mine(), child.stdout.readline())
            assert await child.wait() == 0
        finally:
            if child.returncode is None:
                child.kill()
                await child.wait()
    theirs = json.loads(line)
    try:
        # Each key was new for exactly one of the two processes.
        assert [a != b for a, b in zip(my_seen, theirs["seen"], strict=True)] == [True] * 40
        assert sorted(my_numbers + theirs["numbers"]) == list(range(1, 81))
        assert [r.number for r in await store.results("t1")] == list(range(1, 81))
    finally:
        await store.close()
