"""`octopussy mcp list|call`, doctor's MCP checks, and the runtime's MCP lifecycle, end to end
with the real built-in server spawned as a child process."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pexpect
import pytest

from octopussy.cli import main
from octopussy.config import load_config
from octopussy.runtime import Runtime
from proctable import processes_mentioning


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "notes.txt").write_text("first line\nsecond line\n")
    (tmp_path / "config.yaml").write_text(f"llm:\n  provider: scripted\nworkspace: {ws}\n")
    monkeypatch.chdir(tmp_path)
    return ws


def test_mcp_list_shows_builtin_tools(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mcp", "list"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("builtin  [ready]  stdio:")
    for tool in ("read_file", "write_file", "edit_file", "list_directory", "search_files"):
        assert tool in out
    assert processes_mentioning(str(workspace)) == []


def test_mcp_list_json(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mcp", "list", "--json"]) == 0
    servers = json.loads(capsys.readouterr().out)["servers"]
    assert servers[0]["name"] == "builtin"
    assert servers[0]["state"] == "ready"
    names = {tool["qualified"] for tool in servers[0]["tool_list"]}
    assert "builtin.execute_python" in names


def test_mcp_call_by_hand(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mcp", "call", "builtin.write_file", "path=out/x.txt", "content=hi there"]) == 0
    assert (workspace / "out" / "x.txt").read_text() == "hi there"
    capsys.readouterr()
    assert main(["mcp", "call", "read_file", "path=notes.txt", "limit=1"]) == 0
    out = capsys.readouterr().out
    assert "first line" in out
    assert "second line" not in out


def test_mcp_call_tool_error_exit_2(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mcp", "call", "read_file", "path=../../etc/passwd"]) == 2
    assert "outside the workspace" in capsys.readouterr().out


def test_mcp_call_unknown_tool_one_line(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["mcp", "call", "reed_file", "path=a"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("octopussy: error: unknown tool 'reed_file'")
    assert "read_file" in err
    assert "\n" not in err


def test_mcp_call_bad_argument_syntax(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mcp", "call", "read_file", "just-a-word"]) == 2
    assert "key=value" in capsys.readouterr().err


def test_doctor_reports_a_broken_server(
    tmp_path: Path, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "broken.yaml"
    config.write_text(
        "llm:\n  provider: scripted\n"
        f"workspace: {workspace}\n"
        "mcp_servers:\n  - name: ghost\n    type: local\n    command: [/nonexistent/server]\n"
    )
    assert main(["--config", str(config), "doctor"]) == 1
    out = capsys.readouterr().out
    assert "OK    MCP server builtin: 6 tools" in out
    assert "FAIL  MCP server ghost:" in out


async def test_runtime_connects_tools_and_leaves_no_child(workspace: Path) -> None:
    loaded = load_config(None, cwd=workspace.parent)
    async with Runtime(loaded) as runtime:
        await runtime.warm_up()
        assert processes_mentioning(str(workspace))
        result = await runtime.mcp.call("builtin.list_directory", {"path": "."})
        assert "notes.txt" in result.text
    assert processes_mentioning(str(workspace)) == []


def test_chat_exit_leaves_no_server_process(workspace: Path, tmp_path: Path) -> None:
    env = dict(os.environ, TERM="xterm-256color", PROMPT_TOOLKIT_NO_CPR="1")
    child = pexpect.spawn(
        sys.executable,
        ["-m", "octopussy", "chat"],
        cwd=str(tmp_path),
        env=env,
        encoding="utf-8",
        timeout=30,
        dimensions=(40, 120),
    )
    try:
        child.expect("connecting 1 MCP server")
        child.expect("You:")
        assert processes_mentioning(str(workspace))
        child.send("/mcp\r")
        child.expect("builtin")
        child.expect("execute_python")
        child.sendintr()  # Ctrl-C at the prompt leaves
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    assert processes_mentioning(str(workspace)) == []
