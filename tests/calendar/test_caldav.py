"""CalDAV against a real Radicale: events created with the caldav client are announced,
a change on the server is picked up, outages and bad names are clear errors."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import caldav
import pytest

from calfixtures import FakeClock, vcalendar, vevent
from octopussy.agents.calendar import CalendarAgent
from octopussy.bus.base import Inbox
from octopussy.bus.memory import InMemoryBus
from octopussy.bus.messages import MessageType
from octopussy.calendar.caldav import CalDavBackend, resolve_password
from octopussy.calendar.factory import build_watcher
from octopussy.calendar.watcher import CalendarWatcher, ReminderPolicy
from octopussy.config import parse_config
from octopussy.errors import BackendUnavailable, ConfigError
from octopussy.store.sqlite import SqliteStore

pytestmark = pytest.mark.integration

BERLIN = ZoneInfo("Europe/Berlin")


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=BERLIN)


def client(server: Any) -> caldav.DAVClient:
    return caldav.DAVClient(
        url=server.url, username=server.username, password=server.password, enable_rfc6764=False
    )


def backend(server: Any, calendars: list[str], password: str | None = None) -> CalDavBackend:
    return CalDavBackend(
        "work",
        server.url,
        username=server.username,
        password=password or server.password,
        calendars=calendars,
        zone=BERLIN,
    )


def review(start: str) -> str:
    return vcalendar(
        vevent(
            "review@test",
            "Design review",
            f"DTSTART;TZID=Europe/Berlin:{start}",
            "DURATION:PT1H",
            "LOCATION:Room 7",
            "DESCRIPTION:Bring the mock-ups",
        )
    )


async def test_events_on_the_server_are_announced_and_changes_picked_up(
    radicale: Any, store: SqliteStore, bus: InMemoryBus, coordinator: Inbox
) -> None:
    principal = client(radicale).principal()
    work = principal.make_calendar(name="Work")
    home = principal.make_calendar(name="Home")
    work.save_event(review("20261201T100000"))
    work.save_event(
        vcalendar(
            vevent(
                "standup@test",
                "Stand-up",
                "DTSTART;TZID=Europe/Berlin:20261130T091500",
                "DURATION:PT15M",
                "RRULE:FREQ=DAILY",
                "EXDATE;TZID=Europe/Berlin:20261201T091500",
            )
        )
    )
    home.save_event(vcalendar(vevent("home@test", "Not watched", "DTSTART:20261201T094000Z")))

    clock = FakeClock(at(1, 8, 0))
    watcher = CalendarWatcher(
        [(backend(radicale, ["Work"]), ReminderPolicy((30,)))],
        store,
        zone=BERLIN,
        clock=clock,
        poll_interval=300,
    )
    agent = CalendarAgent(bus=bus, watcher=watcher, zone=BERLIN, store=store, clock=clock)
    await agent.register()
    assert await agent.poll_once() == []
    clock.set(at(1, 9, 30))
    sent = await agent.poll_once()
    assert [m.type for m in sent] == [MessageType.CALENDAR_NOTIFICATION]
    message = await coordinator.get()
    assert message.payload["title"] == "Design review"
    assert message.payload["location"] == "Room 7"
    assert message.payload["description"] == "Bring the mock-ups"
    assert message.payload["start_time"].startswith("Tue 01 Dec 2026 10:00–11:00 CET")
    assert message.payload["calendar"] == "work"
    # the stand-up's 1 Dec instance is excluded: the next one is announced on 2 Dec
    clock.set(at(2, 8, 45))
    sent = await agent.poll_once()
    assert [m.payload["title"] for m in sent] == ["Stand-up"]

    # moved on the server: announced again for the new time; nothing for the old one
    [item] = [e for e in work.events() if "review@test" in e.data]
    item.data = review("20261202T150000")
    item.save()
    clock.set(at(2, 14, 30))
    sent = await agent.poll_once()
    assert [(m.payload["title"], m.payload["start"]) for m in sent] == [
        ("Design review", at(2, 15).isoformat())
    ]
    # deleted on the server before its next reminder: silence
    work.save_event(review("20261203T100000").replace("review@test", "later@test"))
    clock.set(at(3, 9, 0))
    await agent.poll_once()
    [later] = [e for e in work.events() if "later@test" in e.data]
    later.delete()
    clock.set(at(3, 9, 30))
    assert [m.payload.get("title") for m in await agent.poll_once()] == []
    await watcher.close()


async def test_several_calendars_of_one_account(radicale: Any, store: SqliteStore) -> None:
    principal = client(radicale).principal()
    principal.make_calendar(name="Work").save_event(review("20261201T100000"))
    principal.make_calendar(name="Home").save_event(
        vcalendar(vevent("dinner@test", "Dinner", "DTSTART;TZID=Europe/Berlin:20261201T193000"))
    )
    both = backend(radicale, [])
    fetched = await both.fetch(at(1, 0), at(2, 0))
    assert [(o.title, o.calendar) for o in fetched.occurrences] == [
        ("Design review", "work/Work"),
        ("Dinner", "work/Home"),
    ]
    await both.close()


async def test_unknown_calendar_name_lists_what_exists(radicale: Any) -> None:
    with pytest.raises(ConfigError, match="has no calendars"):
        await backend(radicale, []).fetch(at(1, 0), at(2, 0))
    client(radicale).principal().make_calendar(name="Work")
    with pytest.raises(ConfigError, match=r"no calendar named 'Wrok'.*the server has: Work"):
        await backend(radicale, ["Wrok"]).fetch(at(1, 0), at(2, 0))


async def test_wrong_password_and_unreachable_server(radicale: Any, tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailable, match="refused the login"):
        await backend(radicale, [], password="wrong").fetch(at(1, 0), at(2, 0))
    closed = CalDavBackend(
        "gone",
        "http://127.0.0.1:9/",
        username="a",
        password="b",
        calendars=[],
        zone=BERLIN,
        timeout=5,
    )
    with pytest.raises(BackendUnavailable, match=r"cannot reach http://127\.0\.0\.1:9/"):
        await closed.fetch(at(1, 0), at(2, 0))


async def test_bad_event_on_the_server_is_skipped_with_a_warning(
    radicale: Any, store: SqliteStore
) -> None:
    work = client(radicale).principal().make_calendar(name="Work")
    work.save_event(review("20261201T100000"))
    # Radicale refuses objects it cannot parse, so the bad part is a valid-looking event
    # whose time zone does not exist.
    work.save_event(
        vcalendar(vevent("mars@test", "On Mars", "DTSTART;TZID=Mars/Olympus:20261201T100000"))
    )
    watched = backend(radicale, ["Work"])
    first = await watched.fetch(at(1, 0), at(2, 0))
    assert [o.title for o in first.occurrences] == ["Design review"]
    assert len(first.warnings) == 1
    assert "'On Mars'" in first.warnings[0]
    assert "Mars/Olympus" in first.warnings[0]
    again = await watched.fetch(at(1, 0), at(2, 0))
    assert again.warnings == []  # reported once
    await watched.close()


def test_keyring_password_needs_a_stored_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    import keyring
    from keyring.backend import KeyringBackend

    class Memory(KeyringBackend):
        priority = 1  # type: ignore[assignment]

        def __init__(self) -> None:
            super().__init__()
            self.secrets = {("octopussy-caldav", "alice"): "s3cret"}

        def get_password(self, service: str, username: str) -> str | None:
            return self.secrets.get((service, username))

        def set_password(self, service: str, username: str, password: str) -> None:
            self.secrets[(service, username)] = password

        def delete_password(self, service: str, username: str) -> None:
            self.secrets.pop((service, username), None)

    previous = keyring.get_keyring()
    keyring.set_keyring(Memory())
    try:
        assert resolve_password("keyring:octopussy-caldav", "alice") == "s3cret"
        assert resolve_password("plain", "alice") == "plain"
        with pytest.raises(ConfigError, match="keyring set octopussy-caldav bob"):
            resolve_password("keyring:octopussy-caldav", "bob")
    finally:
        keyring.set_keyring(previous)


async def test_each_calendar_of_an_account_with_its_own_reminders(
    radicale: Any, store: SqliteStore
) -> None:
    principal = client(radicale).principal()
    principal.make_calendar(name="Work").save_event(review("20261201T100000"))
    principal.make_calendar(name="Team").save_event(
        vcalendar(vevent("t@test", "Team call", "DTSTART;TZID=Europe/Berlin:20261201T100000"))
    )
    config, _ = parse_config(
        "calendar_agent:\n  notify_minutes_before: 30\n  timezone: Europe/Berlin\n"
        "  sources:\n    - name: work\n      backend: caldav\n"
        f"      url: {radicale.url}\n      username: {radicale.username}\n"
        "      password: ${CALDAV_PASSWORD}\n"
        "      calendars: [Work, {name: Team, notify_minutes_before: 5}]\n",
        source="test.yaml",
        env={"CALDAV_PASSWORD": radicale.password},
    )
    assert config.calendar_agent is not None
    clock = FakeClock(at(1, 9, 30))
    watcher = build_watcher(config.calendar_agent, store, home=Path("."), env_tz=None)
    watcher.clock = clock
    first = await watcher.scan()
    assert [(r.occurrence.title, r.occurrence.calendar) for r in first.reminders] == [
        ("Design review", "work/Work")
    ]
    clock.set(at(1, 9, 55))
    second = await watcher.scan()
    assert [(r.occurrence.title, r.reminder) for r in second.reminders] == [("Team call", "5m")]
    await watcher.close()
