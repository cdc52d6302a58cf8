"""The mail agent in the real chat (pexpect) against a real Dovecot: a mail that matches a
filter arrives while the user is typing and appears above the prompt as [MAIL] From /
Subject / Summary, the half-typed line survives, a mail that does not match never shows,
and /mail lists what was shown."""

from __future__ import annotations

import io
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from dovecot import PASSWORD, USER, DovecotServer, running_dovecot

pytestmark = pytest.mark.integration

TIMEOUT = 30
# As in test_repl.py: prompt_toolkit draws spaces as cursor moves and escape sequences.
_GAP = r"(?:\s|\x1b\[[0-9;?]*[A-Za-z])*"


def see(child: pexpect.spawn, text: str) -> None:
    words = [re.escape(word) for word in text.split(" ")]
    child.expect(re.compile(_GAP.join(words).replace(r"\ ", _GAP)))


@pytest.fixture
def server() -> Iterator[DovecotServer]:
    with running_dovecot() as running:
        yield running


def test_matching_mail_appears_above_the_prompt(tmp_path: Path, server: DovecotServer) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "llm:\n  provider: scripted\n"
        "mail_agent:\n"
        f"  imap_host: 127.0.0.1\n  imap_port: {server.ssl_port}\n  tls: imaps\n"
        f"  tls_ca_file: {server.cert}\n"
        f"  imap_user: {USER}\n  imap_password: ${{TEST_IMAP_PASSWORD}}\n"
        "  filters:\n    - field: sender\n      pattern: 'boss@company\\.com'\n"
        "  llm:\n    provider: scripted\n    model: mail\n"
    )
    env = dict(
        os.environ,
        OCTOPUSSY_HOME=str(tmp_path / "home"),
        TEST_IMAP_PASSWORD=PASSWORD,
        TERM="xterm-256color",
        PROMPT_TOOLKIT_NO_CPR="1",
    )
    child = pexpect.spawn(
        sys.executable,
        ["-m", "octopussy", "--config", str(config), "chat"],
        cwd=str(tmp_path),
        env=env,
        encoding="utf-8",
        timeout=TIMEOUT,
        dimensions=(40, 120),
    )
    transcript = io.StringIO()
    child.logfile_read = transcript  # everything the chat printed, for the checks at the end
    try:
        see(child, "You: ")
        child.send("hello wor")
        see(child, "hello wor")
        # The scripted provider echoes the user's text: the "summary" shows the prompt the
        # mail agent built, which proves the body reached the model.
        server.append(
            b"From: News <news@shop.example>\r\nSubject: Sale\r\n\r\nBuy now.\r\n",
            b"From: The Boss <boss@company.com>\r\nSubject: Budget\r\n\r\n"
            b"Please send the budget by Friday.\r\n",
        )
        see(child, "[MAIL] From: The Boss <boss@company.com>")
        see(child, "Subject: Budget")
        see(child, "Please send the budget by Friday.")
        see(child, "You: hello wor")  # redrawn below the notification, intact
        child.send("ld\r")
        see(child, "Coordinator: echo: hello world")
        see(child, "You: ")
        child.send("/mail\r")
        see(child, "The Boss <boss@company.com> — Budget")
        see(child, "You: ")
        child.send("quit\r")
        child.expect(pexpect.EOF)
        child.close()
        output = transcript.getvalue()
        assert child.exitstatus == 0, output[-2000:]
        assert "Traceback" not in output
        assert "[MAIL]" in output
        assert "Subject: Sale" not in output  # filtered out, never shown
        flags = server.flags()
        assert len(flags) == 2
        assert all("\\Seen" not in value for value in flags.values())
    finally:
        if child.isalive():
            child.terminate(force=True)
