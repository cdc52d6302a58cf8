""".ics parsing and expansion: recurrences with exceptions, DST weeks, all-day, floating
times, malformed files, and a folder re-read only when a file changed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from calfixtures import vcalendar, vevent, write
from octopussy.calendar.ical import ParsedCalendar, _parse_exact, parse_ics
from octopussy.calendar.ics import IcsBackend
from octopussy.errors import BackendUnavailable

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


WEEKLY = vcalendar(
    vevent(
        "weekly@test",
        "Team sync",
        "DTSTART;TZID=Europe/Berlin:20261102T100000",
        "DTEND;TZID=Europe/Berlin:20261102T103000",
        "RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=6",
        "EXDATE;TZID=Europe/Berlin:20261116T100000",
        "RDATE;TZID=Europe/Berlin:20261119T150000",
        "LOCATION:Room 4",
    ),
    # the 9 Nov instance moved to the afternoon, the 23 Nov one cancelled
    vevent(
        "weekly@test",
        "Team sync (moved)",
        "RECURRENCE-ID;TZID=Europe/Berlin:20261109T100000",
        "DTSTART;TZID=Europe/Berlin:20261109T140000",
        "DTEND;TZID=Europe/Berlin:20261109T143000",
    ),
    vevent(
        "weekly@test",
        "Team sync",
        "RECURRENCE-ID;TZID=Europe/Berlin:20261123T100000",
        "DTSTART;TZID=Europe/Berlin:20261123T100000",
        "STATUS:CANCELLED",
    ),
)


def test_weekly_meeting_with_exceptions_is_expanded() -> None:
    parsed = parse_ics(WEEKLY, calendar="work", zone=UTC)
    found, warnings = parsed.between(utc(2026, 11, 1), utc(2026, 12, 31))
    assert warnings == []
    assert parsed.warnings == []
    starts = [(o.start.astimezone(BERLIN).strftime("%d %H:%M"), o.title) for o in found]
    assert starts == [
        ("02 10:00", "Team sync"),
        ("09 14:00", "Team sync (moved)"),  # the overridden instance, at its new time
        # 16 Nov: EXDATE; 19 Nov: the extra RDATE; 23 Nov: cancelled
        ("19 15:00", "Team sync"),
        ("30 10:00", "Team sync"),
        ("07 10:00", "Team sync"),
    ]
    assert all(o.uid == "weekly@test" for o in found)
    assert [o.location for o in found[:2]] == ["Room 4", ""]  # the override has its own
    assert found[0].end - found[0].start == timedelta(minutes=30)


def test_window_only_returns_overlapping_occurrences() -> None:
    parsed = parse_ics(WEEKLY, calendar="work", zone=UTC)
    # 2 Nov 10:00-10:30 Berlin = 09:00-09:30 UTC; a window inside the meeting overlaps it
    found, _ = parsed.between(utc(2026, 11, 2, 9, 15), utc(2026, 11, 2, 9, 20))
    assert [o.start for o in found] == [utc(2026, 11, 2, 9)]
    found, _ = parsed.between(utc(2026, 11, 2, 9, 30), utc(2026, 11, 9, 12))
    assert found == []


@pytest.mark.parametrize(
    ("zone", "tzid", "before", "after", "offsets"),
    [
        # Europe/Berlin leaves summer time on Sun 25 Oct 2026: 09:00 local is 07:00 UTC, then 08:00
        ("Europe/Berlin", "Europe/Berlin", "20261023", "20261026", (7, 8)),
        # America/New_York on Sun 1 Nov 2026: 09:00 local is 13:00 UTC, then 14:00
        ("America/New_York", "America/New_York", "20261030", "20261102", (13, 14)),
    ],
)
def test_daily_event_keeps_local_time_across_the_dst_change(
    zone: str, tzid: str, before: str, after: str, offsets: tuple[int, int]
) -> None:
    text = vcalendar(
        vevent(
            "daily@test",
            "Stand-up",
            f"DTSTART;TZID={tzid}:{before}T090000",
            f"DTEND;TZID={tzid}:{before}T091500",
            "RRULE:FREQ=DAILY;COUNT=5",
        )
    )
    parsed = parse_ics(text, calendar="c", zone=UTC)
    found, _ = parsed.between(utc(2026, 10, 20), utc(2026, 11, 10))
    local = [o.start.astimezone(ZoneInfo(zone)).strftime("%H:%M") for o in found]
    assert local == ["09:00"] * 5
    first, last = found[0].start.astimezone(UTC), found[-1].start.astimezone(UTC)
    assert (first.hour, last.hour) == offsets
    assert all(o.end - o.start == timedelta(minutes=15) for o in found)


def test_vtimezone_in_the_file_is_honoured() -> None:
    """A custom TZID defined by a VTIMEZONE block (as Outlook writes them)."""
    vtimezone = (
        "BEGIN:VTIMEZONE\r\nTZID:My Office Time\r\n"
        "BEGIN:STANDARD\r\nDTSTART:19701025T030000\r\nRRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\n"
        "TZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nEND:STANDARD\r\n"
        "BEGIN:DAYLIGHT\r\nDTSTART:19700329T020000\r\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\n"
        "TZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\nEND:DAYLIGHT\r\nEND:VTIMEZONE\r\n"
    )
    text = vcalendar(
        vevent(
            "vtz@test",
            "Review",
            'DTSTART;TZID="My Office Time":20261023T090000',
            "RRULE:FREQ=DAILY;COUNT=4",
        ),
        extra=vtimezone,
    )
    found, _ = parse_ics(text, calendar="c", zone=UTC).between(utc(2026, 10, 1), utc(2026, 11, 1))
    assert [o.start.astimezone(UTC).hour for o in found] == [
        7,
        7,
        8,
        8,
    ]  # 25 Oct: winter time from 03:00


def test_all_day_event_runs_from_local_midnight_to_midnight() -> None:
    text = vcalendar(
        vevent("holiday@test", "Holiday", "DTSTART;VALUE=DATE:20261224"),
        vevent("trip@test", "Trip", "DTSTART;VALUE=DATE:20261227", "DTEND;VALUE=DATE:20261230"),
    )
    parsed = parse_ics(text, calendar="c", zone=NEW_YORK)
    found, _ = parsed.between(utc(2026, 12, 1), utc(2027, 1, 1))
    holiday, trip = found
    assert holiday.all_day
    assert trip.all_day
    assert holiday.start == datetime(2026, 12, 24, tzinfo=NEW_YORK)
    assert holiday.end == datetime(2026, 12, 25, tzinfo=NEW_YORK)
    assert trip.end - trip.start == timedelta(days=3)


def test_floating_time_is_the_users_local_time() -> None:
    text = vcalendar(vevent("float@test", "Dentist", "DTSTART:20261201T093000"))
    for zone, utc_hour in ((BERLIN, 8), (NEW_YORK, 14)):
        found, _ = parse_ics(text, calendar="c", zone=zone).between(
            utc(2026, 11, 30), utc(2026, 12, 3)
        )
        assert [o.start.astimezone(UTC).hour for o in found] == [utc_hour]
        assert found[0].start.astimezone(zone).hour == 9


def test_floating_recurring_event_in_the_users_zone() -> None:
    text = vcalendar(
        vevent("gym@test", "Gym", "DTSTART:20261024T180000", "DURATION:PT1H", "RRULE:FREQ=DAILY")
    )
    parsed = parse_ics(text, calendar="c", zone=BERLIN)
    found, _ = parsed.between(utc(2026, 10, 24), utc(2026, 10, 27))
    assert [o.start.astimezone(BERLIN).strftime("%d %H:%M") for o in found] == [
        "24 18:00",
        "25 18:00",
        "26 18:00",
    ]
    assert [o.start.astimezone(UTC).hour for o in found] == [16, 17, 17]


def test_x_wr_timezone_places_floating_times() -> None:
    text = vcalendar(
        vevent("f@test", "Call", "DTSTART:20261201T090000"),
        extra="X-WR-TIMEZONE:America/New_York\r\n",
    )
    found, _ = parse_ics(text, calendar="c", zone=BERLIN).between(
        utc(2026, 11, 30), utc(2026, 12, 3)
    )
    assert found[0].start.astimezone(UTC).hour == 14


MALFORMED = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//x//EN\r\nX-FOO;BAR=1:unknown top-level\r\n"
    + vevent(
        "good@test",
        "Good one",
        "DTSTART:20261201T100000Z",
        "X-SOMETHING-NEW:ignored",
        "COLOR:red",
    )
    + vevent("nostart@test", "No start", "LOCATION:nowhere")
    + vevent("badtz@test", "Bad zone", "DTSTART;TZID=Mars/Olympus_Mons:20261201T100000")
    + vevent("broken@test", "Broken", "DTSTART:20261201T100000Z", "this line has no colon")
    + vevent("baddate@test", "Bad date", "DTSTART:2026120XT100000")
    + vevent("good2@test", "Good two", "DTSTART;VALUE=DATE:20261202")
    + "END:VCALENDAR\r\n"
)


def test_malformed_file_skips_the_bad_events_with_a_warning_each() -> None:
    parsed = parse_ics(MALFORMED, calendar="c", zone=UTC, origin="cal.ics")
    found, _ = parsed.between(utc(2026, 11, 30), utc(2026, 12, 5))
    assert [o.title for o in found] == ["Good one", "Good two"]
    assert len(parsed.warnings) == 4
    joined = "\n".join(parsed.warnings)
    for name, why in [
        ("No start", "no DTSTART"),
        ("Bad zone", "unknown time zone 'Mars/Olympus_Mons'"),
        ("Broken", "broken line"),
        ("Bad date", "DTSTART"),
    ]:
        line = next(w for w in parsed.warnings if f"'{name}'" in w)
        assert line.startswith("cal.ics: event "), line
        assert why in line, line
        assert line.endswith("skipped"), line
    assert "Good" not in joined


def test_structurally_broken_file_keeps_the_events_that_parse() -> None:
    # An unterminated VEVENT in the middle makes the whole file unparseable at once.
    text = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\n"
        + vevent("a@test", "First", "DTSTART:20261201T100000Z")
        + "BEGIN:VEVENT\r\nUID:half@test\r\nSUMMARY:Half\r\nBEGIN:VALARM\r\n"
        + vevent("b@test", "Second", "DTSTART:20261201T120000Z")
        + "END:VCALENDAR\r\n"
    )
    parsed = parse_ics(text, calendar="c", zone=UTC)
    found, _ = parsed.between(utc(2026, 11, 30), utc(2026, 12, 5))
    assert [o.title for o in found] == ["First", "Second"]
    assert len(parsed.warnings) == 1
    assert "'Half'" in parsed.warnings[0]
    assert "END:VEVENT" in parsed.warnings[0]


def test_cancelled_event_and_cancelled_series_are_dropped() -> None:
    text = vcalendar(
        vevent("c1@test", "Off", "DTSTART:20261201T100000Z", "STATUS:CANCELLED"),
        vevent(
            "c2@test",
            "Series off",
            "DTSTART:20261201T100000Z",
            "RRULE:FREQ=DAILY",
            "STATUS:CANCELLED",
        ),
        vevent("ok@test", "On", "DTSTART:20261201T110000Z"),
    )
    found, _ = parse_ics(text, calendar="c", zone=UTC).between(utc(2026, 11, 30), utc(2026, 12, 5))
    assert [o.title for o in found] == ["On"]


def test_not_an_icalendar_file_is_a_warning() -> None:
    parsed = parse_ics("hello, this is not a calendar", calendar="c", zone=UTC, origin="x.ics")
    assert parsed.singles == []
    assert parsed.recurring == []
    assert parsed.warnings
    assert parsed.warnings[0].startswith("x.ics: ")


async def test_backend_rereads_a_file_only_when_it_changed(tmp_path: Path) -> None:
    path = write(tmp_path / "cal.ics", vcalendar(vevent("a@test", "A", "DTSTART:20261201T100000Z")))
    backend = IcsBackend("local", path, zone=UTC)
    window = (utc(2026, 11, 30), utc(2026, 12, 5))
    first = await backend.fetch(*window)
    again = await backend.fetch(*window)
    assert [o.title for o in first.occurrences] == [o.title for o in again.occurrences] == ["A"]
    assert backend.parses == 1
    write(path, vcalendar(vevent("a@test", "A renamed", "DTSTART:20261201T100000Z")))
    changed = await backend.fetch(*window)
    assert [o.title for o in changed.occurrences] == ["A renamed"]
    assert backend.parses == 2


async def test_backend_reads_every_ics_in_a_folder(tmp_path: Path) -> None:
    write(tmp_path / "work.ics", vcalendar(vevent("w@test", "Work", "DTSTART:20261201T100000Z")))
    write(tmp_path / "home.ICS", vcalendar(vevent("h@test", "Home", "DTSTART:20261201T090000Z")))
    write(tmp_path / "notes.txt", "not a calendar")
    write(tmp_path / "bad.ics", vcalendar(vevent("x@test", "No start")))
    backend = IcsBackend("mine", tmp_path, zone=UTC)
    fetched = await backend.fetch(utc(2026, 11, 30), utc(2026, 12, 5))
    assert [o.title for o in fetched.occurrences] == ["Home", "Work"]
    assert {o.calendar for o in fetched.occurrences} == {"mine"}
    assert len(fetched.warnings) == 1
    assert fetched.warnings[0].startswith("bad.ics: ")
    # warnings come once per version of a file, not on every poll
    assert (await backend.fetch(utc(2026, 11, 30), utc(2026, 12, 5))).warnings == []
    (tmp_path / "work.ics").unlink()
    fetched = await backend.fetch(utc(2026, 11, 30), utc(2026, 12, 5))
    assert [o.title for o in fetched.occurrences] == ["Home"]


async def test_missing_path_is_unavailable_not_a_crash(tmp_path: Path) -> None:
    backend = IcsBackend("local", tmp_path / "nope.ics", zone=UTC)
    with pytest.raises(BackendUnavailable, match="does not exist"):
        await backend.fetch(utc(2026, 11, 30), utc(2026, 12, 5))


def _exact(text: str, zone: ZoneInfo) -> ParsedCalendar:
    parsed = ParsedCalendar(calendar="c")
    _parse_exact(text, parsed, "", zone)
    return parsed


def test_quick_pass_agrees_with_icalendar() -> None:
    """Plain events are decoded without icalendar; the result must be the same."""
    text = vcalendar(
        vevent("z@test", "UTC", "DTSTART:20261201T100000Z", "DTEND:20261201T110000Z"),
        vevent(
            "tz@test", "Zoned", "DTSTART;TZID=America/New_York:20261201T090000", "DURATION:PT1H30M"
        ),
        vevent("f@test", "Floating", "DTSTART:20261202T073000"),
        vevent("d@test", "Day", "DTSTART;VALUE=DATE:20261203", "DTEND;VALUE=DATE:20261205"),
        vevent(
            "e@test",
            "Escaped\\, really\\; yes",
            "DTSTART:20261201T120000Z",
            "DESCRIPTION:line one\\nline two \\\\ done",
            "LOCATION:Caf\u00e9, 2nd floor",
        ),
        vevent(
            "a@test",
            "With alarm",
            "DTSTART:20261201T130000Z",
            "BEGIN:VALARM",
            "TRIGGER:-PT15M",
            "ACTION:DISPLAY",
            "DESCRIPTION:alarm text",
            "END:VALARM",
        ),
        vevent(
            "long@test",
            "Folded",
            "DTSTART:20261201T140000Z",
            "DESCRIPTION:a long description that is folded",
            "  onto a second line",
        ),
        vevent(
            "neg@test",
            "Ends before it starts",
            "DTSTART:20261201T150000Z",
            "DTEND:20261201T140000Z",
        ),
        vevent("x@test", "Cancelled", "DTSTART:20261201T160000Z", "STATUS:CANCELLED"),
        vevent("w@test", "Windows zone", "DTSTART;TZID=W. Europe Standard Time:20261201T090000"),
        # a plain event and an override of the same UID: the pair must stay together
        vevent("pair@test", "Series", "DTSTART:20261201T080000Z", "RRULE:FREQ=DAILY;COUNT=3"),
        vevent(
            "pair@test",
            "Series moved",
            "RECURRENCE-ID:20261202T080000Z",
            "DTSTART:20261202T090000Z",
        ),
    )
    window = (utc(2026, 11, 30), utc(2026, 12, 10))
    for zone in (BERLIN, NEW_YORK):
        quick, _ = parse_ics(text, calendar="c", zone=zone).between(*window)
        exact, _ = _exact(text, zone).between(*window)
        assert quick == exact
        assert len(quick) == 12
    titles = {o.title: o for o in quick}
    assert titles["Escaped, really; yes"].description == "line one\nline two \\ done"
    assert titles["Folded"].description.endswith("folded onto a second line")
