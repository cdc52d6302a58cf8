"""`octopussy tools ...` and `/tools`: listings with origin and version, and management that
a running built-in server picks up live (rollback, disable, remove)."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from mcp_types import TextContent

from mcp_session import held_client
from octopussy.cli import main
from octopussy.config import load_config
from octopussy.mcp.builtin import build_builtin_server
from octopussy.mcp.generated import FLAG_AFTER, GeneratedToolStore, ToolRecord
from octopussy.repl import ChatSession, ReplPresenter
from octopussy.runtime import Runtime

needs_bwrap = pytest.mark.skipif(
    shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed"
)

C2F = '''def celsius_to_fahrenheit(celsius: float) -> float:
    """Convert degrees Celsius to degrees Fahrenheit."""
    return celsius * 9 / 5 + {offset}
'''


def write_config(tmp_path: Path, extra: dict[str, Any] | None = None) -> Path:
    workspace = tmp_path / "ws"
    workspace.mkdir(exist_ok=True)
    path = tmp_path / "config.yaml"
    config = {"llm": {"provider": "scripted"}, "workspace": str(workspace), **(extra or {})}
    path.write_text(yaml.safe_dump(config))
    return path


def deploy_two_versions(config: Path) -> GeneratedToolStore:
    store = GeneratedToolStore(load_config(config).paths.generated_tools)
    for version, offset in ((1, 32), (2, 33)):
        store.deploy(
            ToolRecord(
                name="celsius_to_fahrenheit",
                version=version,
                description=f"Celsius to Fahrenheit (v{version})",
                code=C2F.format(offset=offset),
                tests=[
                    {
                        "call": "celsius_to_fahrenheit(0)",
                        "arguments": {"celsius": 0},
                        "expected": offset,
                    }
                ],
                requested_by="coordinator",
                request="convert C to F",
            )
        )
    return store


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_list_shows_origin_and_version(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)
    deploy_two_versions(config)
    code, out, _ = run(capsys, "--config", str(config), "tools", "list")
    assert code == 0
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert rows["read_file"][1] == "builtin"
    assert rows["celsius_to_fahrenheit"][1:3] == ["generated", "v2"]
    code, out, _ = run(capsys, "--config", str(config), "tools", "list", "--json")
    data = {row["name"]: row for row in json.loads(out)}
    assert data["celsius_to_fahrenheit"]["version"] == "v2"
    assert data["execute_python"]["origin"] == "builtin"


def test_list_includes_remote_servers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A second copy of our own server stands in for a remote one: a real stdio MCP server.
    other = {
        "mcpServers": {
            "other": {
                "command": __import__("sys").executable,
                "args": ["-m", "octopussy.mcp.builtin", "--workspace", str(tmp_path)],
            }
        }
    }
    config = write_config(tmp_path, other)
    code, out, _ = run(capsys, "--config", str(config), "tools", "list", "--json")
    assert code == 0
    origins = {(row["name"], row["origin"]) for row in json.loads(out)}
    assert ("read_file", "builtin") in origins
    assert ("other.read_file", "remote:other") in origins
    code, out, _ = run(capsys, "--config", str(config), "tools", "list", "--local")
    assert "remote:other" not in out


def test_show_disable_enable_remove(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)
    store = deploy_two_versions(config)
    code, out, _ = run(capsys, "--config", str(config), "tools", "show", "celsius_to_fahrenheit")
    assert code == 0
    assert "celsius_to_fahrenheit v2 (generated, enabled)" in out
    assert "signature:    celsius_to_fahrenheit(celsius: float) -> float" in out
    assert "versions:     v1, v2" in out
    assert "celsius_to_fahrenheit(0) == 33" in out
    code, out, _ = run(
        capsys, "--config", str(config), "tools", "show", "celsius_to_fahrenheit", "--json"
    )
    assert json.loads(out)["input_schema"]["required"] == ["celsius"]
    assert run(capsys, "--config", str(config), "tools", "disable", "celsius_to_fahrenheit")[0] == 0
    assert store.require("celsius_to_fahrenheit").enabled is False
    _, out, _ = run(capsys, "--config", str(config), "tools", "list", "--local")
    assert "disabled" in out
    assert run(capsys, "--config", str(config), "tools", "enable", "celsius_to_fahrenheit")[0] == 0
    code, out, _ = run(capsys, "--config", str(config), "tools", "remove", "celsius_to_fahrenheit")
    assert code == 0
    assert "removed" in out
    assert store.names() == []


def test_mistakes_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)
    code, _, err = run(capsys, "--config", str(config), "tools", "show", "nope")
    assert code == 2
    assert err.strip().count("\n") == 0
    assert "no generated tool named 'nope'" in err
    deploy_two_versions(config)
    code, _, err = run(
        capsys, "--config", str(config), "tools", "rollback", "celsius_to_fahrenheit", "--to", "7"
    )
    assert code == 2
    assert "has no version 7" in err
    assert "versions: v1, v2" in err
    run(capsys, "--config", str(config), "tools", "rollback", "celsius_to_fahrenheit")
    code, _, err = run(
        capsys, "--config", str(config), "tools", "rollback", "celsius_to_fahrenheit"
    )
    assert code == 2
    assert "no earlier version" in err


@needs_bwrap
async def test_rollback_is_live_in_a_running_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    store = deploy_two_versions(config)
    server = build_builtin_server(
        workspace=tmp_path / "ws",
        sandbox=load_config(config).config.sandbox,
        mcp=load_config(config).config.mcp,
        generated_tools=store.directory,
    )
    async with held_client(server, mode="legacy") as client:
        result = await client.call_tool("celsius_to_fahrenheit", {"celsius": 0})
        assert _text(result) == "33.0"
        # The CLI runs its own event loop: from another thread, as from another process.
        code, out, _ = await asyncio.to_thread(
            run, capsys, "--config", str(config), "tools", "rollback", "celsius_to_fahrenheit"
        )
        assert code == 0
        assert "rolled back from v2 to v1" in out
        result = await client.call_tool("celsius_to_fahrenheit", {"celsius": 0})
        assert _text(result) == "32.0"  # the same session, no restart
        for _ in range(FLAG_AFTER):
            failed = await client.call_tool("celsius_to_fahrenheit", {"celsius": 1e308})
            assert failed.is_error
    # Failing call after call: flagged in the listing.
    _, out, _ = await asyncio.to_thread(
        run, capsys, "--config", str(config), "tools", "list", "--local"
    )
    lines = [line for line in out.splitlines() if line.startswith("celsius_to_fahrenheit")]
    assert len(lines) == 1, out
    line = lines[0]
    assert "FLAGGED" in line
    assert "not a JSON value" in line


def _text(result: Any) -> str:
    block = result.content[0]
    assert isinstance(block, TextContent)
    return str(block.text)


async def test_repl_tools_command(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)
    deploy_two_versions(config)
    loaded = load_config(config)
    async with Runtime(loaded) as runtime:
        session = ChatSession(runtime, ReplPresenter(write=lambda _t: None))
        await session.run_command("/tools")
        out = capfd.readouterr().out
        assert "celsius_to_fahrenheit" in out
        assert "generated" in out
        await session.run_command("/tools rollback celsius_to_fahrenheit")
        assert "rolled back from v2 to v1" in capfd.readouterr().out
        await session.run_command("/tools show celsius_to_fahrenheit")
        assert "rolled back from v2" in capfd.readouterr().out
        await session.run_command("/tools show nope")
        assert "error: no generated tool named 'nope'" in capfd.readouterr().out


def test_doctor_warns_about_flagged_tools(tmp_path: Path) -> None:
    from octopussy.doctor import check_generated_tools

    config = write_config(tmp_path)
    loaded = load_config(config)
    assert check_generated_tools(loaded).status == "OK"
    store = deploy_two_versions(config)
    check = check_generated_tools(loaded)
    assert check.status == "OK"
    assert "1 of 1 enabled" in check.detail
    for _ in range(FLAG_AFTER):
        store.record_call("celsius_to_fahrenheit", 2, ok=False, error="boom")
    check = check_generated_tools(loaded)
    assert check.status == "WARN"
    assert "celsius_to_fahrenheit" in check.detail
    assert check.fix is not None
    assert "rollback" in check.fix


def test_names_are_checked_before_touching_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    code, _, err = run(capsys, "--config", str(config), "tools", "show", "../../etc/passwd")
    assert code == 2
    assert "is not a tool name" in err


@pytest.mark.parametrize(
    ("value", "expected"),
    [("off", "off"), ("false", "off"), ("true", "on_missing_tool"), ("always", "always")],
)
def test_worker_requests_reads_yaml_booleans(tmp_path: Path, value: str, expected: str) -> None:
    from octopussy.config import parse_config

    config, _ = parse_config(f"tool_agent:\n  worker_requests: {value}\n", source="x.yaml")
    assert config.tool_agent.worker_requests == expected


def test_a_bad_tool_agent_key_is_one_clear_line(tmp_path: Path) -> None:
    from octopussy.config import parse_config
    from octopussy.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        parse_config("tool_agent:\n  max_attempt: 3\n", source="c.yaml")
    assert "c.yaml: tool_agent.max_attempt: unknown key" in str(info.value)
    assert "max_attempts" in str(info.value)
