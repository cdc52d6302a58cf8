"""The calendar agent in the real chat (pexpect): an event added to the .ics file while the
user is typing is announced above the prompt, the half-typed line survives, and /agenda
lists what is coming."""

from __future__ import annotations

import os
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pexpect

from calfixtures import vcalendar, vevent, write

TIMEOUT = 20
# As in test_repl.py: prompt_toolkit draws spaces as cursor moves and escape sequences.
_GAP = r"(?:\s|\x1b\[[0-9;?]*[A-Za-z])*"


def see(child: pexpect.spawn, text: str) -> None:
    words = [re.escape(word) for word in text.split(" ")]
    child.expect(re.compile(_GAP.join(words).replace(r"\ ", _GAP)))


def finish(child: pexpect.spawn) -> str:
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    return str(child.before)


def test_reminder_appears_above_the_prompt(tmp_path: Path) -> None:
    ics = write(tmp_path / "cal.ics", vcalendar())
    config = tmp_path / "config.yaml"
    config.write_text(
        "llm:\n  provider: scripted\n"
        f"calendar_agent:\n  local_ics_path: {ics}\n  poll_interval_seconds: 1\n"
        "  timezone: Europe/Berlin\n"
    )
    env = dict(
        os.environ,
        OCTOPUSSY_HOME=str(tmp_path / "home"),
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
    try:
        see(child, "You: ")
        child.send("hello wor")
        see(child, "hello wor")
        start = datetime.now(UTC) + timedelta(minutes=10)
        write(
            ics,
            vcalendar(
                vevent(
                    "standup@test",
                    "Standup",
                    f"DTSTART:{start:%Y%m%dT%H%M%SZ}",
                    "DURATION:PT15M",
                    "LOCATION:Room 2",
                )
            ),
        )
        see(child, "[CALENDAR] Event: Standup")
        see(child, "When: ")
        see(child, "(in 10 minutes)")
        see(child, "Location: Room 2")
        see(child, "You: hello wor")  # redrawn below the notification, intact
        child.send("ld\r")
        see(child, "Coordinator: echo: hello world")
        see(child, "You: ")
        child.send("/agenda 1\r")
        see(child, "Standup  @ Room 2  [local]")
        child.send("quit\r")
        assert "Traceback" not in finish(child)
    finally:
        if child.isalive():
            child.terminate(force=True)
