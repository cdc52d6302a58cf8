"""Tasks from the shell: `ask` waits for the tasks it creates, `tasks`, `cancel`.

The scripted model stands in for the LLM (its config script names tool calls in the JSON
form); the worker's tool call goes to the real built-in MCP server.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from octopussy.cli import main
from octopussy.config import load_config
from octopussy.runtime import Runtime
from octopussy.store.base import TaskStatus
from octopussy.store.sqlite import SqliteStore
from octopussy.testing import FunctionModel, ScriptedModel

CREATE = json.dumps(
    {"tool": "create_task", "arguments": {"description": "create hello.txt containing hi"}}
)
WRITE = json.dumps({"tool": "write_file", "arguments": {"path": "hello.txt", "content": "hi"}})


def write_config(tmp_path: Path, script: list[str]) -> Path:
    workspace = tmp_path / "ws"
    workspace.mkdir(exist_ok=True)
    path = tmp_path / "config.yaml"
    config = {
        "llm": {"provider": "scripted", "script": script},
        "workspace": str(workspace),
        "workers": {"optimize_prompts": False},
    }
    path.write_text(yaml.safe_dump(config))
    return path


def task_id_in(text: str) -> str:
    match = re.search(r"Task assigned \(ID: (\w+)\)", text)
    assert match, text
    return match.group(1)


def test_ask_waits_for_the_task_and_prints_its_result(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, [CREATE, WRITE, "I wrote hello.txt."])
    assert main(["--config", str(config), "ask", "create hello.txt containing hi"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    task_id = task_id_in(lines[0])
    assert lines[1:] == ["I wrote hello.txt."]
    assert (tmp_path / "ws" / "hello.txt").read_text() == "hi"
    assert f"[task {task_id}] calling tool write_file" in captured.err

    assert main(["--config", str(config), "tasks"]) == 0
    listing = capsys.readouterr().out
    assert re.search(rf"^{task_id}  done", listing, re.MULTILINE), listing

    assert main(["--config", str(config), "tasks", task_id, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["status"] == "done"
    assert data["data"]["tool_calls"][0]["name"] == "write_file"
    assert [r["content"] for r in data["results"] if r["kind"] == "result"] == [
        "I wrote hello.txt."
    ]

    assert main(["--config", str(config), "tasks", task_id]) == 0
    detail = capsys.readouterr().out
    assert "tool:    write_file" in detail
    assert "result #1: I wrote hello.txt." in detail

    assert main(["--config", str(config), "cancel", task_id]) == 2
    assert "already done" in capsys.readouterr().out


def test_a_failed_task_exits_3_with_its_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Tool errors are feedback the worker recovers from; a worker model that cannot be
    # reached fails the task for real.
    config = write_config(tmp_path, [CREATE])
    text = yaml.safe_load(config.read_text())
    text["workers"]["llm"] = {
        "provider": "openai",
        "model": "m",
        "base_url": "http://127.0.0.1:9/v1",
    }
    text["llm"]["max_retries"] = 0
    config.write_text(yaml.safe_dump(text))
    assert main(["--config", str(config), "ask", "do the thing"]) == 3
    captured = capsys.readouterr()
    task_id = task_id_in(captured.out)
    assert re.search(rf"task {task_id} failed: backend unavailable", captured.err), captured.err


def test_ask_no_wait_leaves_the_task_for_the_next_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, [CREATE, WRITE, "done"])
    assert main(["--config", str(config), "ask", "--no-wait", "create hello.txt"]) == 0
    task_id = task_id_in(capsys.readouterr().out)
    assert not (tmp_path / "ws" / "hello.txt").exists()

    async def next_start() -> TaskStatus:
        loaded = load_config(config)
        async with Runtime(loaded) as runtime:
            await runtime.warm_up()
            assert runtime.resumed == [task_id]
            await runtime.pool.wait_idle(60)
            task = await runtime.store.get_task(task_id)
            assert task is not None
            return task.status

    assert asyncio.run(next_start()) is TaskStatus.DONE
    assert (tmp_path / "ws" / "hello.txt").read_text() == "hi"


def test_cancel_from_the_shell_stops_a_task_in_a_running_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, ["unused"])
    loaded = load_config(config)

    async def scenario() -> tuple[TaskStatus, int]:
        running = asyncio.Event()

        async def slow_worker(_messages: object, _info: object) -> str:
            running.set()
            await asyncio.sleep(60)
            return "too late"

        models = {"worker": FunctionModel(slow_worker)}
        async with Runtime(loaded, models=models) as runtime:
            task = await runtime.create_task("something slow")
            async with asyncio.timeout(10):
                await running.wait()
            code = await asyncio.to_thread(main, ["--config", str(config), "cancel", task.id])
            async with asyncio.timeout(10):
                await runtime.pool.wait_idle()
            stored = await runtime.store.get_task(task.id)
            assert stored is not None
            return stored.status, code

    status, code = asyncio.run(scenario())
    assert (status, code) == (TaskStatus.CANCELLED, 0)
    assert "cancelled" in capsys.readouterr().out


def test_tasks_and_cancel_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, ["x"])
    assert main(["--config", str(config), "tasks"]) == 0
    assert "no tasks yet" in capsys.readouterr().err
    assert main(["--config", str(config), "tasks", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("octopussy: error: ")
    assert "no task 'nope'" in err
    assert "\n" not in err
    assert main(["--config", str(config), "cancel", "nope"]) == 2


async def test_a_cancel_for_a_queued_task_with_no_process_is_final(tmp_path: Path) -> None:
    config = write_config(tmp_path, ["x"])
    loaded = load_config(config)
    async with Runtime(loaded, background_agents=False) as runtime:
        runtime.hand_over_tasks = True  # as `ask --no-wait`: stored, not run here
        task = await runtime.create_task("later")
    assert await asyncio.to_thread(main, ["--config", str(config), "cancel", task.id]) == 0
    async with Runtime(loaded) as runtime:
        await runtime.warm_up()
        assert runtime.resumed == []
    store = SqliteStore(loaded.paths.store)
    await store.open()
    stored = await store.get_task(task.id)
    await store.close()
    assert stored is not None
    assert stored.status is TaskStatus.CANCELLED


def test_a_task_killed_with_its_process_completes_once_after_restart(tmp_path: Path) -> None:
    """SIGKILL a serve in the middle of a task; the next start resumes it; one result."""
    config = write_config(tmp_path, ["never finishes in time"])
    text = yaml.safe_load(config.read_text())
    text["llm"]["script_delay"] = 120  # the worker's model call outlives the process
    config.write_text(yaml.safe_dump(text))
    loaded = load_config(config)

    async def queue_one() -> str:
        async with Runtime(loaded, background_agents=False) as runtime:
            runtime.hand_over_tasks = True
            return (await runtime.create_task("slow work")).id

    task_id = asyncio.run(queue_one())
    env = dict(os.environ, OCTOPUSSY_HOME=str(loaded.paths.home))
    serve = subprocess.Popen(
        [sys.executable, "-m", "octopussy", "--config", str(config), "serve"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )

    async def status() -> TaskStatus:
        store = SqliteStore(loaded.paths.store)
        await store.open()
        try:
            task = await store.get_task(task_id)
            assert task is not None
            return task.status
        finally:
            await store.close()

    try:
        deadline = time.monotonic() + 60
        while asyncio.run(status()) is not TaskStatus.RUNNING:
            assert time.monotonic() < deadline, "serve never started the task"
            assert serve.poll() is None, "serve exited"
            time.sleep(0.1)
        serve.send_signal(signal.SIGKILL)  # a crash: no shutdown code runs
        serve.wait(timeout=20)
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
    assert asyncio.run(status()) is TaskStatus.RUNNING  # what the crash left behind

    async def restart() -> list[str]:
        models = {"worker": ScriptedModel(["finished at last"])}
        async with Runtime(loaded, models=models) as runtime:
            await runtime.warm_up()
            assert runtime.resumed == [task_id]
            await runtime.pool.wait_idle(60)
            return [r.content for r in await runtime.store.results(task_id) if r.kind == "result"]

    assert asyncio.run(restart()) == ["finished at last"]
    assert asyncio.run(status()) is TaskStatus.DONE
