"""The calendar_agent section: seed keys, several calendars, reminders and clear errors."""

from __future__ import annotations

from datetime import UTC, time
from pathlib import Path

import pytest

from octopussy.calendar.factory import build_calendars, policy_for
from octopussy.calendar.watcher import ReminderPolicy
from octopussy.config import CalendarAgentSettings, parse_config
from octopussy.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.yaml"


def settings(text: str) -> CalendarAgentSettings:
    config, _ = parse_config(text, source="test.yaml", env={})
    assert config.calendar_agent is not None
    return config.calendar_agent


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="test.yaml", env={})
    line = str(info.value)
    assert "\n" not in line
    return line


def test_the_seed_keys_still_work() -> None:
    agent = settings(
        "calendar_agent:\n  poll_interval_seconds: 300\n  notify_minutes_before: 30\n"
        '  backend: "local"\n  local_ics_path: "/path/to/your/calendar.ics"\n'
        '  google_credentials_path: "credentials.json"\n  google_token_path: "token.json"\n'
        '  google_calendar_id: "primary"\n'
    )
    [source] = agent.watched()
    assert (source.label, source.backend, str(source.local_ics_path)) == (
        "local",
        "local",
        "/path/to/your/calendar.ics",
    )
    assert policy_for(source, agent) == ReminderPolicy((30,), time(9, 0), 0)


def test_the_commented_example_is_valid() -> None:
    """config.example.yaml ships the calendar section commented out; uncommented, it loads."""
    lines = EXAMPLE.read_text().splitlines()
    start = lines.index(next(line for line in lines if line.startswith("# calendar_agent:")))
    block = []
    for line in lines[start:]:
        if not line.startswith("#"):
            break
        block.append(line[2:])
    agent = settings("\n".join(block) + "\n")
    labels = [source.label for source in agent.watched()]
    assert labels == ["local", "work", "family"]
    assert [c if isinstance(c, str) else c.name for c in agent.watched()[1].calendars] == [
        "Work",
        "Birthdays",
    ]
    work, family = agent.watched()[1:]
    assert policy_for(work, agent).minutes_before == (60, 10)
    assert policy_for(family, agent) == ReminderPolicy((30,), time(19, 0), 1)
    assert agent.timezone == "Europe/Berlin"


def test_several_reminders_and_unquoted_times() -> None:
    # YAML reads an unquoted 18:30 as the base-60 number 1110: still a time of day here
    agent = settings(
        "calendar_agent:\n  local_ics_path: a.ics\n  notify_minutes_before: [15, 1440, 15]\n"
        "  all_day_notify_time: 18:30\n  all_day_notify_days_before: 1\n"
    )
    assert agent.notify_minutes_before == [1440, 15]
    assert agent.all_day_notify_time == time(18, 30)


def test_sources_only_and_backends_are_built(tmp_path: Path) -> None:
    agent = settings(
        "calendar_agent:\n  sources:\n"
        "    - {name: a, local_ics_path: a.ics, notify_minutes_before: 5}\n"
        "    - {name: dav, backend: caldav, url: 'http://127.0.0.1:1/', calendars: [W]}\n"
        "    - {name: g, backend: google, google_token_path: t.json}\n"
        "    - {name: spare, local_ics_path: b.ics, enabled: false}\n"
    )
    built = build_calendars(agent, zone=UTC, home=tmp_path)
    assert [(backend.name, type(backend).__name__) for backend, _ in built] == [
        ("a", "IcsBackend"),
        ("dav", "CalDavBackend"),
        ("g", "GoogleBackend"),
    ]
    assert built[0][1].minutes_before == (5,)
    assert built[1][1].minutes_before == (30,)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "calendar_agent:\n  backend: caldav\n",
            "test.yaml: calendar_agent: backend caldav needs url",
        ),
        ("calendar_agent:\n  poll_interval_seconds: 60\n", "backend local needs local_ics_path"),
        (
            "calendar_agent:\n  sources:\n    - {backend: google}\n",
            "calendar_agent.sources[0]: backend google needs google_credentials_path",
        ),
        (
            "calendar_agent:\n  local_ics_path: a.ics\n  sources:\n    - {local_ics_path: b}\n",
            "two calendars are named 'local'",
        ),
        (
            "calendar_agent:\n  local_ics_path: a.ics\n  timezone: Europe/Berln\n",
            "calendar_agent.timezone: unknown time zone 'Europe/Berln'",
        ),
        (
            "calendar_agent:\n  local_ics_path: a.ics\n  notify_minutes_before: [10, -5]\n",
            "calendar_agent.notify_minutes_before: expected minutes",
        ),
        (
            "calendar_agent:\n  local_ics_path: a.ics\n  all_day_notify_time: '25:00'\n",
            "calendar_agent.all_day_notify_time",
        ),
        (
            "calendar_agent:\n  local_ics_path: a.ics\n  remind_before: 5\n",
            "unknown key 'remind_before'",
        ),
    ],
)
def test_mistakes_are_one_line_with_the_key_path(text: str, expected: str) -> None:
    assert expected in error_of(text)


def test_disabled_section_needs_no_calendar() -> None:
    agent = settings("calendar_agent:\n  enabled: false\n")
    assert agent.watched() == []


def test_caldav_calendars_with_their_own_reminders(tmp_path: Path) -> None:
    agent = settings(
        "calendar_agent:\n  notify_minutes_before: 30\n  sources:\n"
        "    - name: dav\n      backend: caldav\n      url: 'http://127.0.0.1:1/'\n"
        "      notify_minutes_before: 20\n"
        "      calendars: [Work, {name: Birthdays, all_day_notify_days_before: 1,"
        " all_day_notify_time: '18:00'}, {name: Team, notify_minutes_before: [60, 5]}]\n"
    )
    built = build_calendars(agent, zone=UTC, home=tmp_path)
    assert [(backend.name, policy) for backend, policy in built] == [
        ("dav/Work", ReminderPolicy((20,), time(9, 0), 0)),
        ("dav/Birthdays", ReminderPolicy((20,), time(18, 0), 1)),
        ("dav/Team", ReminderPolicy((60, 5), time(9, 0), 0)),
    ]
