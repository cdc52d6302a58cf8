"""The CLI as a function (``main(argv)``) and, where signals matter, as a process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from octopussy.agents.spool import write_spool_file
from octopussy.cli import main

SCRIPTED = "llm:\n  provider: scripted\n"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(SCRIPTED)
    return path


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("octopussy: error: ")
    return lines[0]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out.startswith("octopussy ")


def test_ask_prints_answer(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(config), "ask", "hello", "there"]) == 0
    assert capsys.readouterr().out == "echo: hello there\n"


def test_ask_no_stream(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(config), "ask", "--no-stream", "hi"]) == 0
    assert capsys.readouterr().out == "echo: hi\n"


def test_ask_from_stdin(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO("from a pipe\n"))
    assert main(["--config", str(config), "ask", "-"]) == 0
    assert capsys.readouterr().out == "echo: from a pipe\n"


def test_bad_config_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("llm:\n  provider: 42\n  temprature: 3\n")
    assert main(["--config", str(bad), "ask", "hi"]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert str(bad) in line
    assert "llm." in line


def test_missing_env_var_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text("llm:\n  provider: openai\n  model: m\n  api_key: ${SURELY_UNSET_KEY}\n")
    assert main(["--config", str(bad), "ask", "hi"]) == 2
    assert "SURELY_UNSET_KEY" in one_line_error(capsys.readouterr().err)


def test_unreachable_endpoint_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "llm:\n  provider: ollama\n  model: llama3.2\n  max_retries: 0\n"
        "  base_url: http://127.0.0.1:9\n"
    )
    assert main(["--config", str(cfg), "ask", "hi"]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert "127.0.0.1:9" in line
    assert "ollama serve" in line


def test_config_check(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", str(config)]) == 0
    assert capsys.readouterr().out.strip() == f"{config}: OK"
    bad = tmp_path / "bad.yaml"
    bad.write_text("llm: [\n")
    assert main(["config", "check", str(bad)]) == 2
    assert "invalid YAML" in one_line_error(capsys.readouterr().err)
    assert main(["config", "check", str(tmp_path / "none.yaml")]) == 2
    one_line_error(capsys.readouterr().err)


def test_config_check_warns_on_plain_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("llm:\n  provider: openai\n  model: m\n  api_key: sk-literal\n")
    assert main(["config", "check", str(cfg)]) == 0
    assert "llm.api_key is written in plain text" in capsys.readouterr().out


def test_config_show_masks_secrets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("llm:\n  provider: openai\n  model: m\n  api_key: sk-secret\n")
    assert main(["--config", str(cfg), "config", "show"]) == 0
    out = capsys.readouterr().out
    assert "sk-secret" not in out
    assert "api_key: '***'" in out


def test_usage_error_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_doctor_scripted(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--config", str(config), "doctor"])
    out = capsys.readouterr().out
    assert "OK    config:" in out
    assert "scripted test model" in out
    assert code == (1 if "FAIL" in out else 0)


def test_doctor_reports_down_endpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("llm:\n  provider: ollama\n  model: llama3.2\n  base_url: http://127.0.0.1:9\n")
    assert main(["--config", str(cfg), "doctor"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  model endpoint (coordinator): cannot reach http://127.0.0.1:9/v1" in out
    assert "ollama serve" in out


def test_logs_go_to_the_data_dir(config: Path, tmp_path: Path) -> None:
    assert main(["--config", str(config), "ask", "hi"]) == 0
    log = Path(os.environ["OCTOPUSSY_HOME"]) / "logs" / "octopussy.log"
    assert "runtime started" in log.read_text()


def test_notify_drops_a_spool_file(config: Path) -> None:
    assert main(["--config", str(config), "notify", "--label", "BUILD", "done"]) == 0
    spool = Path(os.environ["OCTOPUSSY_HOME"]) / "spool"
    files = list(spool.glob("*.json"))
    assert [json.loads(f.read_text()) for f in files] == [{"text": "done", "label": "BUILD"}]


def test_serve_prints_json_lines_and_stops_on_sigterm(config: Path, tmp_path: Path) -> None:
    home = tmp_path / "serve-home"
    env = dict(os.environ, OCTOPUSSY_HOME=str(home))
    process = subprocess.Popen(
        [sys.executable, "-m", "octopussy", "--config", str(config), "serve", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stderr is not None
        assert process.stdout is not None
        assert "running" in process.stderr.readline()
        write_spool_file(home / "spool", "backup finished", label="CRON")
        event = json.loads(process.stdout.readline())
        assert event["type"] == "agent_notification"
        assert event["payload"] == {"text": "backup finished", "label": "CRON"}
        assert event["time"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        assert "Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    # the notification was stored, too
    import sqlite3

    with sqlite3.connect(home / "octopussy.db") as db:
        kinds = [row[0] for row in db.execute("select kind from events")]
    assert "agent_notification" in kinds


def test_serve_plain_lines_and_sigint(config: Path, tmp_path: Path) -> None:
    home = tmp_path / "serve-home"
    env = dict(os.environ, OCTOPUSSY_HOME=str(home))
    process = subprocess.Popen(
        [sys.executable, "-m", "octopussy", "--config", str(config), "serve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stderr is not None
        assert process.stdout is not None
        assert "running" in process.stderr.readline()
        write_spool_file(home / "spool", "line one\nline two", label="NOTE")
        assert process.stdout.readline() == "[NOTE] line one | line two\n"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
