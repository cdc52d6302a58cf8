"""The chat REPL end to end in a pseudo-terminal (pexpect), as a user types it.

A notification dropped with ``octopussy notify`` while the user is typing must appear above
the prompt without corrupting the half-typed line; Ctrl-C during an answer stops only that
answer and gives the text back; quit, Ctrl-D and Ctrl-C at the prompt exit with code 0 and
no traceback.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from octopussy.agents.spool import write_spool_file

TIMEOUT = 20
# prompt_toolkit draws spaces as cursor moves and wraps output in escape sequences.
_GAP = r"(?:\s|\x1b\[[0-9;?]*[A-Za-z])*"


def loose(text: str) -> re.Pattern[str]:
    """A pattern for ``text`` as it appears on a terminal: any escapes where spaces are."""
    words = [re.escape(word) for word in text.split(" ")]
    return re.compile(_GAP.join(words).replace(r"\ ", _GAP))


def see(child: pexpect.spawn, text: str) -> None:
    child.expect(loose(text))


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def spawn(tmp_path: Path, home: Path, config: str) -> pexpect.spawn:
    config_file = tmp_path / "config.yaml"
    config_file.write_text(config)
    env = dict(
        os.environ, OCTOPUSSY_HOME=str(home), TERM="xterm-256color", PROMPT_TOOLKIT_NO_CPR="1"
    )
    child = pexpect.spawn(
        sys.executable,
        ["-m", "octopussy", "--config", str(config_file), "chat"],
        cwd=str(tmp_path),
        env=env,
        encoding="utf-8",
        timeout=TIMEOUT,
        dimensions=(40, 120),
    )
    see(child, "Type 'quit' or 'exit' to stop")
    see(child, "You: ")
    return child


@pytest.fixture
def chat(tmp_path: Path, home: Path) -> Iterator[pexpect.spawn]:
    child = spawn(tmp_path, home, "llm:\n  provider: scripted\n")
    yield child
    if child.isalive():
        child.terminate(force=True)


def finish(child: pexpect.spawn) -> str:
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    return str(child.before)


def test_notification_while_typing_then_quit(chat: pexpect.spawn, home: Path) -> None:
    chat.send("hello wor")
    see(chat, "hello wor")
    write_spool_file(home / "spool", "mail arrived", label="MAIL")
    see(chat, "[MAIL] mail arrived")
    # the half-typed line is redrawn below the notification, intact
    see(chat, "You: hello wor")
    chat.send("ld\r")
    see(chat, "Coordinator: echo: hello world")
    see(chat, "You: ")
    chat.send("quit\r")
    see(chat, "Goodbye!")
    assert "Traceback" not in finish(chat)


def test_ctrl_c_during_answer_keeps_the_text(tmp_path: Path, home: Path) -> None:
    child = spawn(tmp_path, home, "llm:\n  provider: scripted\n  script_delay: 30\n")
    child.send("a slow question\r")
    see(child, "Coordinator:")
    child.sendintr()
    see(child, "(interrupted; your message is back in the prompt)")
    see(child, "You: a slow question")
    child.sendcontrol("d")  # Ctrl-D on a non-empty line does nothing; clear it first
    child.sendcontrol("u")
    child.sendcontrol("d")
    assert "Traceback" not in finish(child)


def test_ctrl_c_at_prompt_leaves_cleanly(chat: pexpect.spawn) -> None:
    chat.sendintr()
    assert "Traceback" not in finish(chat)


def test_ctrl_d_leaves_cleanly(chat: pexpect.spawn) -> None:
    chat.sendcontrol("d")
    assert "Traceback" not in finish(chat)


def test_model_error_is_one_line_and_chat_stays(tmp_path: Path, home: Path) -> None:
    # An OpenAI-compatible endpoint on a loopback port nobody listens on.
    child = spawn(
        tmp_path,
        home,
        "llm:\n  provider: openai\n  model: m\n  api_key: k\n  max_retries: 0\n"
        "  base_url: http://127.0.0.1:9/v1\n",
    )
    child.send("are you there?\r")
    see(child, "error: ")
    see(child, "127.0.0.1:9")
    see(child, "You: are you there?")
    child.sendcontrol("u")
    child.send("exit\r")
    assert "Traceback" not in finish(child)


def test_slash_commands(chat: pexpect.spawn) -> None:
    chat.send("/help\r")
    see(chat, "/usage")
    chat.send("hi\r")
    see(chat, "echo: hi")
    chat.send("/usage\r")
    see(chat, "coordinator")
    see(chat, "1 call(s)")
    chat.send("/nope\r")
    see(chat, "unknown command /nope")
    chat.send("exit\r")
    finish(chat)


def test_typing_during_an_answer_is_kept_for_the_next_prompt(tmp_path: Path, home: Path) -> None:
    child = spawn(tmp_path, home, "llm:\n  provider: scripted\n  script_delay: 1.5\n")
    child.send("first\r")
    see(child, "Coordinator:")
    child.send("second")  # typed while the answer is still being generated
    see(child, "echo: first")
    # not echoed into the answer; it waits in the next prompt instead
    see(child, "You: second")
    assert "second" not in str(child.before)
    child.send("\r")
    see(child, "echo: second")
    child.send("exit\r")
    finish(child)


def test_do_gives_a_task_to_a_worker(chat: pexpect.spawn) -> None:
    chat.send("/do say hello\r")
    see(chat, "Task assigned (ID:")
    see(chat, "[TASK RESULT] Task")
    see(chat, "echo:")
    chat.send("/tasks\r")
    see(chat, "done")
    chat.send("exit\r")
    finish(chat)


def test_a_plain_message_becomes_a_task_with_a_real_tool_call(tmp_path: Path, home: Path) -> None:
    """user message → coordinator (routing) → optimizer → worker → the real built-in MCP
    server writes the file → the result appears above the prompt."""
    import json

    import yaml

    workspace = tmp_path / "ws"
    workspace.mkdir()
    script = [
        json.dumps({"tool": "create_task", "arguments": {"description": "write hi to hello.txt"}}),
        "Write the text hi into the file hello.txt.",  # the optimizer's rewrite
        json.dumps({"tool": "write_file", "arguments": {"path": "hello.txt", "content": "hi"}}),
        "I wrote hi into hello.txt.",
    ]
    config = {"llm": {"provider": "scripted", "script": script}, "workspace": str(workspace)}
    child = spawn(tmp_path, home, yaml.safe_dump(config))
    child.send("please write hi to hello.txt\r")
    see(child, "Task assigned (ID:")
    see(child, "calling tool write_file")
    see(child, "[TASK RESULT] Task")
    see(child, "I wrote hi into hello.txt.")
    assert (workspace / "hello.txt").read_text() == "hi"
    child.send("/task\r")
    see(child, "usage: /task ID")
    child.send("exit\r")
    finish(child)
