"""The calendar agent: reminders become CALENDAR_NOTIFICATION messages in local time, the
coordinator shows and stores them, /agenda and `octopussy agenda` list what is coming, and
a restarted runtime does not announce an event twice."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from calfixtures import FakeClock, vcalendar, vevent, write
from octopussy.agents.calendar import CalendarAgent
from octopussy.bus.base import Inbox
from octopussy.bus.memory import InMemoryBus
from octopussy.bus.messages import Message, MessageType
from octopussy.calendar.ics import IcsBackend
from octopussy.calendar.watcher import CalendarWatcher, ReminderPolicy
from octopussy.cli import main
from octopussy.config import load_config
from octopussy.display import format_message
from octopussy.repl import ChatSession, ReplPresenter
from octopussy.runtime import Runtime
from octopussy.store.sqlite import SqliteStore

BERLIN = ZoneInfo("Europe/Berlin")

PLANNING = vcalendar(
    vevent(
        "planning@test",
        "Planning",
        "DTSTART;TZID=Europe/Berlin:20261201T100000",
        "DTEND;TZID=Europe/Berlin:20261201T110000",
        "LOCATION:Room 1",
        "DESCRIPTION:Quarterly goals",
    ),
    vevent("lunch@test", "Lunch", "DTSTART:20261202T123000", "DURATION:PT1H"),
    vevent("fair@test", "Book fair", "DTSTART;VALUE=DATE:20261203"),
)


def make_agent(
    tmp_path: Path, store: SqliteStore, bus: InMemoryBus, clock: FakeClock, text: str = PLANNING
) -> CalendarAgent:
    path = write(tmp_path / "cal.ics", text)
    watcher = CalendarWatcher(
        [(IcsBackend("personal", path, zone=BERLIN), ReminderPolicy((30,)))],
        store,
        zone=BERLIN,
        clock=clock,
    )
    return CalendarAgent(bus=bus, watcher=watcher, zone=BERLIN, store=store, clock=clock)


async def test_reminder_is_a_calendar_notification_in_local_time(
    tmp_path: Path, store: SqliteStore, bus: InMemoryBus, coordinator: Inbox
) -> None:
    clock = FakeClock(datetime(2026, 12, 1, 9, 30, tzinfo=BERLIN))
    agent = make_agent(tmp_path, store, bus, clock)
    await agent.register()
    [sent] = await agent.poll_once()
    message = await coordinator.get()
    assert message.id == sent.id
    assert message.type is MessageType.CALENDAR_NOTIFICATION
    assert message.sender == "calendar_agent"
    assert message.payload["late"] is False
    assert message.payload["reminder"] == "30m"
    assert format_message(message).splitlines() == [
        "[CALENDAR] Event: Planning",
        "           When: Tue 01 Dec 2026 10:00–11:00 CET (in 30 minutes)",
        "           Location: Room 1",
        "           Description: Quarterly goals",
    ]
    assert await agent.poll_once() == []


async def test_late_reminder_says_so(
    tmp_path: Path, store: SqliteStore, bus: InMemoryBus, coordinator: Inbox
) -> None:
    clock = FakeClock(datetime(2026, 12, 1, 10, 5, tzinfo=BERLIN))
    agent = make_agent(tmp_path, store, bus, clock)
    await agent.register()
    [sent] = await agent.poll_once()
    assert sent.payload["late"] is True
    when = str(sent.payload["start_time"])
    assert when.startswith("Tue 01 Dec 2026 10:00–11:00 CET (started 5 minutes ago)")
    assert "[late:" in when


async def test_bad_event_becomes_one_calendar_notice(
    tmp_path: Path, store: SqliteStore, bus: InMemoryBus, coordinator: Inbox
) -> None:
    broken = PLANNING.replace(
        "END:VCALENDAR", vevent("x@test", "No time", "LOCATION:?") + "END:VCALENDAR"
    )
    clock = FakeClock(datetime(2026, 12, 1, 8, 0, tzinfo=BERLIN))
    agent = make_agent(tmp_path, store, bus, clock, broken)
    await agent.register()
    [notice] = await agent.poll_once()
    assert notice.type is MessageType.AGENT_NOTIFICATION
    assert notice.payload["label"] == "CALENDAR"
    assert "'No time'" in notice.payload["text"]
    assert "no DTSTART" in notice.payload["text"]
    assert format_message(notice).startswith("[CALENDAR] calendar 'personal': skipped 1 bad")


async def test_agenda_lists_days_in_local_time(
    tmp_path: Path, store: SqliteStore, bus: InMemoryBus
) -> None:
    clock = FakeClock(datetime(2026, 12, 1, 8, 0, tzinfo=BERLIN))
    agent = make_agent(tmp_path, store, bus, clock)
    assert await agent.agenda(3) == [
        "Tue 01 Dec 2026",
        "  10:00–11:00  Planning  @ Room 1  [personal]",
        "Wed 02 Dec 2026",
        "  12:30–13:30  Lunch  [personal]",
        "Thu 03 Dec 2026",
        "  all day      Book fair  [personal]",
    ]
    assert await agent.agenda(1) == [
        "Tue 01 Dec 2026",
        "  10:00–11:00  Planning  @ Room 1  [personal]",
    ]


def _soon(now: datetime, *, minutes: int, uid: str, title: str) -> str:
    start = (now + timedelta(minutes=minutes)).astimezone(UTC)
    return vevent(
        uid,
        title,
        f"DTSTART:{start:%Y%m%dT%H%M%SZ}",
        f"DTEND:{start + timedelta(hours=1):%Y%m%dT%H%M%SZ}",
        "LOCATION:Here",
    )


async def test_runtime_announces_stores_and_does_not_repeat_after_restart(
    tmp_path: Path,
) -> None:
    now = datetime.now(UTC)
    ics = write(
        tmp_path / "cal.ics",
        vcalendar(_soon(now, minutes=10, uid="soon@test", title="Soon")),
    )
    config = tmp_path / "config.yaml"
    config.write_text(
        "llm:\n  provider: scripted\n"
        "calendar_agent:\n"
        f"  local_ics_path: {ics}\n"
        "  notify_minutes_before: 30\n"
        "  timezone: Europe/Berlin\n"
    )
    loaded = load_config(config, env={"OCTOPUSSY_HOME": str(tmp_path / "home")}, cwd=tmp_path)
    shown: list[Message] = []
    arrived = asyncio.Event()

    class Presenter:
        async def show(self, message: Message) -> None:
            shown.append(message)
            arrived.set()

    async with Runtime(loaded, presenter=Presenter()) as runtime:
        assert runtime.calendar is not None
        assert "calendar_agent" in runtime.agents
        await asyncio.wait_for(arrived.wait(), timeout=30)
        stored = await runtime.store.events(kind="calendar_notification")
    assert [m.payload["title"] for m in shown] == ["Soon"]
    assert shown[0].payload["late"] is True  # its moment passed before this process started
    assert len(stored) == 1
    assert stored[0].payload["payload"]["location"] == "Here"

    # a second process on the same home: nothing new to announce
    async with Runtime(loaded, background_agents=False) as again:
        assert again.calendar is not None
        assert await again.calendar.poll_once() == []


async def test_repl_agenda_command(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    now = datetime.now(UTC)
    ics = write(
        tmp_path / "cal.ics",
        vcalendar(_soon(now, minutes=24 * 60, uid="t@test", title="Tomorrow's thing")),
    )
    config = tmp_path / "config.yaml"
    config.write_text(f"llm:\n  provider: scripted\ncalendar_agent:\n  local_ics_path: {ics}\n")
    loaded = load_config(config, env={"OCTOPUSSY_HOME": str(tmp_path / "home")}, cwd=tmp_path)
    async with Runtime(loaded, background_agents=False) as runtime:
        session = ChatSession(runtime, ReplPresenter(write=lambda _: None))
        await session.run_command("/agenda 2")
        out = capfd.readouterr().out
        assert "Tomorrow's thing  @ Here  [local]" in out
        await session.run_command("/agenda x")
        assert "usage: /agenda [DAYS]" in capfd.readouterr().out
    plain = tmp_path / "plain.yaml"
    plain.write_text("llm:\n  provider: scripted\n")
    loaded = load_config(plain, env={"OCTOPUSSY_HOME": str(tmp_path / "h2")}, cwd=tmp_path)
    async with Runtime(loaded, background_agents=False) as runtime:
        await ChatSession(runtime, ReplPresenter(write=lambda _: None)).run_command("/agenda")
        assert "no calendar configured" in capfd.readouterr().out


def test_cli_agenda(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime.now(UTC)
    ics = write(
        tmp_path / "cal.ics",
        vcalendar(
            _soon(now, minutes=90, uid="c@test", title="Dentist"), vevent("b@test", "Broken")
        ),
    )
    config = tmp_path / "config.yaml"
    config.write_text(
        f"calendar_agent:\n  local_ics_path: {ics}\n  sources:\n"
        f"    - name: gone\n      local_ics_path: {tmp_path / 'missing.ics'}\n"
    )
    monkeypatch.setenv("OCTOPUSSY_HOME", str(tmp_path / "home"))
    assert main(["--config", str(config), "agenda", "2"]) == 2  # one calendar is unreadable
    captured = capsys.readouterr()
    assert "Dentist  @ Here  [local]" in captured.out
    assert "warning: calendar 'local': cal.ics: event 'Broken' (UID b@test): no DTSTART" in (
        captured.err
    )
    assert "calendar 'gone'" in captured.err
    assert "does not exist" in captured.err
