"""The Quick start experience on the real embedded model: no config file at all."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pexpect
import pytest

from octopussy.cli import main

pytestmark = pytest.mark.integration

try:
    from octopussy.llm.weights import find_qwen_parts

    find_qwen_parts()
    import xllamacpp  # noqa: F401
except Exception as exc:  # pragma: no cover - depends on the install
    pytest.skip(f"embedded model not installed: {exc}", allow_module_level=True)


def test_ask_on_the_embedded_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no config.yaml here: built-in defaults
    assert main(["ask", "What is the capital of France? Answer in one word."]) == 0
    assert "paris" in capsys.readouterr().out.lower()


def test_chat_on_the_embedded_model_in_a_terminal(tmp_path: Path) -> None:
    env = dict(os.environ, TERM="xterm-256color", PROMPT_TOOLKIT_NO_CPR="1")
    child = pexpect.spawn(
        sys.executable,
        ["-m", "octopussy"],  # the default command is the chat
        cwd=str(tmp_path),
        env=env,
        encoding="utf-8",
        timeout=180,
        dimensions=(40, 120),
    )
    try:
        child.expect("Octopussy Light is ready")
        child.expect("You:")
        child.send("What is the capital of France? Answer in one word.\r")
        child.expect("Coordinator:")
        child.expect("(?i)paris")
        child.expect("You:")
        child.send("quit\r")
        child.expect("Goodbye!")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
