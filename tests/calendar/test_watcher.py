"""Reminders exactly once, on a fake clock: moved, cancelled and removed events, several
reminders, all-day events, late delivery after downtime, restarts, pruning and outages."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from calfixtures import FakeClock, vcalendar, vevent, write
from octopussy.calendar.ics import IcsBackend
from octopussy.calendar.watcher import SEEN_NAMESPACE, CalendarWatcher, ReminderPolicy
from octopussy.store.sqlite import SqliteStore

BERLIN = ZoneInfo("Europe/Berlin")


def at(day: int, hour: int, minute: int = 0, month: int = 12) -> datetime:
    """A moment in Berlin time, December 2026 unless told otherwise."""
    return datetime(2026, month, day, hour, minute, tzinfo=BERLIN)


def meeting(
    start: str = "20261201T100000", *, uid: str = "m@test", extra: tuple[str, ...] = ()
) -> str:
    return vcalendar(
        vevent(
            uid,
            "Planning",
            f"DTSTART;TZID=Europe/Berlin:{start}",
            "DURATION:PT1H",
            "LOCATION:Room 1",
            *extra,
        )
    )


def make_watcher(
    path: Path,
    store: SqliteStore,
    clock: FakeClock,
    policy: ReminderPolicy | None = None,
    **kwargs: float,
) -> CalendarWatcher:
    return CalendarWatcher(
        [(IcsBackend("local", path, zone=BERLIN), policy or ReminderPolicy((30,)))],
        store,
        zone=BERLIN,
        clock=clock,
        poll_interval=kwargs.pop("poll_interval", 300),
        **kwargs,
    )


async def titles_due(watcher: CalendarWatcher, clock: FakeClock) -> list[tuple[str, str, bool]]:
    scan = await watcher.scan()
    return [
        (r.occurrence.start.astimezone(BERLIN).strftime("%d %H:%M"), r.reminder, r.late)
        for r in scan.reminders
    ]


async def test_reminder_fires_once_at_its_moment(tmp_path: Path, store: SqliteStore) -> None:
    path = write(tmp_path / "cal.ics", meeting())
    clock = FakeClock(at(1, 9, 0))
    watcher = make_watcher(path, store, clock, poll_interval=3600)
    assert await titles_due(watcher, clock) == []
    # the watcher knows when to wake up: the reminder moment, not the next poll
    assert watcher.next_wakeup(clock()) == at(1, 9, 30)
    clock.set(at(1, 9, 30))
    assert await titles_due(watcher, clock) == [("01 10:00", "30m", False)]
    clock.advance(minutes=1)
    assert await titles_due(watcher, clock) == []
    clock.advance(minutes=10)
    assert await titles_due(watcher, clock) == []


async def test_restart_does_not_repeat(tmp_path: Path, store: SqliteStore) -> None:
    path = write(tmp_path / "cal.ics", meeting())
    clock = FakeClock(at(1, 9, 31))
    assert len((await make_watcher(path, store, clock).scan()).reminders) == 1
    # a new process: new watcher, same store
    clock.advance(minutes=2)
    assert (await make_watcher(path, store, clock).scan()).reminders == []
    assert await store.is_seen(SEEN_NAMESPACE, "local|m@test|2026-12-01T09:00:00+00:00|30m")


async def test_event_moved_between_two_polls_notifies_for_the_new_time(
    tmp_path: Path, store: SqliteStore
) -> None:
    path = write(tmp_path / "cal.ics", meeting("20261201T100000"))
    clock = FakeClock(at(1, 9, 30))
    watcher = make_watcher(path, store, clock)
    assert await titles_due(watcher, clock) == [("01 10:00", "30m", False)]
    # moved to 11:00 after the first reminder went out
    write(path, meeting("20261201T110000", extra=("SEQUENCE:1",)))
    clock.set(at(1, 10, 30))
    assert await titles_due(watcher, clock) == [("01 11:00", "30m", False)]
    # moved again before its reminder: only the newest time is announced
    write(path, meeting("20261201T150000", extra=("SEQUENCE:2",)))
    clock.set(at(1, 14, 0))
    assert await titles_due(watcher, clock) == []
    write(path, meeting("20261201T160000", extra=("SEQUENCE:3",)))
    clock.set(at(1, 14, 40))  # the 15:00 reminder moment passed, but the event moved on
    assert await titles_due(watcher, clock) == []
    clock.set(at(1, 15, 30))
    assert await titles_due(watcher, clock) == [("01 16:00", "30m", False)]


async def test_change_since_the_last_poll_is_rechecked_before_announcing(
    tmp_path: Path, store: SqliteStore
) -> None:
    path = write(tmp_path / "cal.ics", meeting())
    clock = FakeClock(at(1, 9, 0))
    watcher = make_watcher(path, store, clock, poll_interval=3600)  # long poll
    await watcher.scan()
    write(path, meeting(extra=("STATUS:CANCELLED",)))
    clock.set(at(1, 9, 30))  # no poll due yet, but the cached copy is 30 minutes old
    assert await titles_due(watcher, clock) == []


async def test_cancelled_and_removed_events_do_not_notify(
    tmp_path: Path, store: SqliteStore
) -> None:
    path = write(tmp_path / "cal.ics", meeting())
    clock = FakeClock(at(1, 8, 0))
    watcher = make_watcher(path, store, clock)
    await watcher.scan()
    write(path, meeting(extra=("STATUS:CANCELLED",)))
    clock.set(at(1, 9, 30))
    assert await titles_due(watcher, clock) == []
    write(path, vcalendar())  # removed altogether
    clock.set(at(1, 9, 40))
    assert await titles_due(watcher, clock) == []


async def test_several_reminders_each_once(tmp_path: Path, store: SqliteStore) -> None:
    path = write(tmp_path / "cal.ics", meeting())
    clock = FakeClock(at(30, 9, 0, month=11))
    watcher = make_watcher(path, store, clock, ReminderPolicy((1440, 15)))
    assert await titles_due(watcher, clock) == []
    clock.set(at(30, 10, 0, month=11))
    assert await titles_due(watcher, clock) == [("01 10:00", "1440m", False)]
    clock.set(at(1, 9, 0))
    assert await titles_due(watcher, clock) == []
    clock.set(at(1, 9, 45))
    assert await titles_due(watcher, clock) == [("01 10:00", "15m", False)]
    clock.set(at(1, 9, 50))
    assert await titles_due(watcher, clock) == []


async def test_late_reminder_after_downtime_collapses_and_is_marked(
    tmp_path: Path, store: SqliteStore
) -> None:
    path = write(tmp_path / "cal.ics", meeting())
    # started at 09:50: both the 1-day and the 15-minute moments passed while down
    clock = FakeClock(at(1, 9, 50))
    watcher = make_watcher(path, store, clock, ReminderPolicy((1440, 15)))
    assert await titles_due(watcher, clock) == [("01 10:00", "15m", True)]
    clock.advance(minutes=1)
    assert await titles_due(watcher, clock) == []


async def test_late_reminder_while_the_event_runs_but_not_once_it_is_over(
    tmp_path: Path, store: SqliteStore
) -> None:
    path = write(tmp_path / "cal.ics", meeting())
    clock = FakeClock(at(1, 10, 20))  # the meeting runs 10:00-11:00
    assert await titles_due(make_watcher(path, store, clock), clock) == [("01 10:00", "30m", True)]
    other = write(tmp_path / "other.ics", meeting(uid="other@test"))
    clock.set(at(1, 11, 0))  # over
    assert await titles_due(make_watcher(other, store, clock), clock) == []


async def test_all_day_event_at_the_configured_time(tmp_path: Path, store: SqliteStore) -> None:
    path = write(
        tmp_path / "cal.ics", vcalendar(vevent("h@test", "Holiday", "DTSTART;VALUE=DATE:20261224"))
    )
    same_morning = ReminderPolicy((30,), all_day_at=time(8, 0))
    day_before = ReminderPolicy((30,), all_day_at=time(18, 0), all_day_days_before=1)
    for policy, moment in ((same_morning, at(24, 8, 0)), (day_before, at(23, 18, 0))):
        store_path = tmp_path / f"{moment.day}.db"
        own = SqliteStore(store_path)
        await own.open()
        try:
            clock = FakeClock(moment - timedelta(minutes=1))
            watcher = make_watcher(path, own, clock, policy)
            assert await titles_due(watcher, clock) == []
            clock.set(moment)
            due = await titles_due(watcher, clock)
            assert due == [("24 00:00", due[0][1], False)]
            clock.advance(hours=3)
            assert await titles_due(watcher, clock) == []
        finally:
            await own.close()


async def test_weekly_series_notifies_each_occurrence(tmp_path: Path, store: SqliteStore) -> None:
    path = write(
        tmp_path / "cal.ics",
        vcalendar(
            vevent(
                "w@test",
                "Weekly",
                "DTSTART;TZID=Europe/Berlin:20261123T100000",
                "DTEND;TZID=Europe/Berlin:20261123T110000",
                "RRULE:FREQ=WEEKLY",
                "EXDATE;TZID=Europe/Berlin:20261130T100000",
            ),
            vevent(
                "w@test",
                "Weekly (moved)",
                "RECURRENCE-ID;TZID=Europe/Berlin:20261207T100000",
                "DTSTART;TZID=Europe/Berlin:20261207T120000",
                "DTEND;TZID=Europe/Berlin:20261207T130000",
            ),
        ),
    )
    clock = FakeClock(at(23, 9, 0, month=11))
    watcher = make_watcher(path, store, clock)
    seen = []
    for _ in range(4 * 7 * 24 * 2):  # every 30 minutes for four weeks
        clock.advance(minutes=30)
        seen += await titles_due(watcher, clock)
    assert seen == [
        ("23 10:00", "30m", False),
        # 30 Nov: EXDATE
        ("07 12:00", "30m", False),
        ("14 10:00", "30m", False),
    ]


async def test_keys_are_pruned_after_the_occurrence(tmp_path: Path, store: SqliteStore) -> None:
    path = write(tmp_path / "cal.ics", meeting())
    clock = FakeClock(at(1, 9, 30))
    watcher = make_watcher(path, store, clock)
    await watcher.scan()
    key = "local|m@test|2026-12-01T09:00:00+00:00|30m"
    assert await store.is_seen(SEEN_NAMESPACE, key)
    clock.set(at(1, 13, 0))  # two hours after the meeting ended
    await watcher.scan()
    assert not await store.is_seen(SEEN_NAMESPACE, key)


async def test_unreachable_calendar_is_retried_with_backoff_and_reported_once(
    tmp_path: Path, store: SqliteStore
) -> None:
    path = write(tmp_path / "cal.ics", meeting())
    clock = FakeClock(at(1, 8, 0))
    watcher = make_watcher(path, store, clock, retry_initial=5)
    await watcher.scan()
    hidden = tmp_path / "hidden.ics"
    path.rename(hidden)
    notices = []
    retries = []
    clock.set(at(1, 8, 10))
    for _ in range(8):
        scan = await watcher.scan()
        notices += scan.notices
        retries.append((watcher.next_wakeup(clock()) - clock()).total_seconds())
        clock.set(watcher.next_wakeup(clock()))
    assert len(notices) == 1
    assert notices[0].level == "warning"
    assert "does not exist" in notices[0].text
    assert retries[:7] == [5, 10, 20, 40, 80, 160, 300]  # doubling, capped at the poll interval
    # known events are still announced from the last good copy
    clock.set(at(1, 9, 30))
    scan = await watcher.scan()
    assert [r.occurrence.title for r in scan.reminders] == ["Planning"]
    hidden.rename(path)
    clock.advance(minutes=10)
    scan = await watcher.scan()
    assert [n.level for n in scan.notices] == ["info"]
    assert "reachable again" in scan.notices[0].text


async def test_bad_events_are_reported_once_and_the_rest_notify(
    tmp_path: Path, store: SqliteStore
) -> None:
    text = meeting().replace(
        "END:VCALENDAR", vevent("bad@test", "Broken", "LOCATION:x") + "END:VCALENDAR"
    )
    path = write(tmp_path / "cal.ics", text)
    clock = FakeClock(at(1, 9, 30))
    watcher = make_watcher(path, store, clock)
    scan = await watcher.scan()
    assert [r.occurrence.title for r in scan.reminders] == ["Planning"]
    assert len(scan.notices) == 1
    assert "'Broken'" in scan.notices[0].text
    clock.advance(minutes=10)
    assert (await watcher.scan()).notices == []


async def test_agenda_lists_every_calendar(tmp_path: Path, store: SqliteStore) -> None:
    one = write(tmp_path / "a.ics", meeting())
    two = write(tmp_path / "b.ics", vcalendar(vevent("x@test", "Lunch", "DTSTART:20261202T120000")))
    clock = FakeClock(at(1, 8, 0))
    watcher = CalendarWatcher(
        [
            (IcsBackend("work", one, zone=BERLIN), ReminderPolicy()),
            (IcsBackend("home", two, zone=BERLIN), ReminderPolicy((5,))),
            (IcsBackend("gone", tmp_path / "missing.ics", zone=BERLIN), ReminderPolicy()),
        ],
        store,
        zone=BERLIN,
        clock=clock,
    )
    agenda = await watcher.agenda(clock(), clock() + timedelta(days=7))
    found = agenda.occurrences
    assert [(o.title, o.calendar) for o in found] == [("Planning", "work"), ("Lunch", "home")]
    assert found[1].start == datetime(2026, 12, 2, 12, tzinfo=BERLIN).astimezone(UTC)
    assert len(agenda.unreadable) == 1
    assert "'gone'" in agenda.unreadable[0]
    assert agenda.skipped == []


async def test_dst_week_reminders_keep_local_time(tmp_path: Path, store: SqliteStore) -> None:
    """A daily 09:00 meeting through the week the clocks change, in Berlin and New York:
    the 15-minute reminder comes at 08:45 local every day."""
    for zone_name, first_day in (("Europe/Berlin", 22), ("America/New_York", 29)):
        zone = ZoneInfo(zone_name)
        path = write(
            tmp_path / f"{zone.key.replace('/', '_')}.ics",
            vcalendar(
                vevent(
                    f"daily-{zone_name}@test",
                    "Daily",
                    f"DTSTART;TZID={zone_name}:202610{first_day}T090000",
                    "DURATION:PT30M",
                    "RRULE:FREQ=DAILY;COUNT=7",
                )
            ),
        )
        clock = FakeClock(datetime(2026, 10, first_day, 0, 0, tzinfo=zone))
        watcher = CalendarWatcher(
            [(IcsBackend("local", path, zone=zone), ReminderPolicy((15,)))],
            store,
            zone=zone,
            clock=clock,
        )
        moments = []
        for _ in range(7 * 24 * 12):  # every 5 minutes for a week
            clock.advance(minutes=5)
            for reminder in (await watcher.scan()).reminders:
                moments.append(clock().astimezone(zone).strftime("%d %H:%M"))
                assert not reminder.late
        assert [m[3:] for m in moments] == ["08:45"] * 7, (zone_name, moments)


async def test_a_day_before_is_24_real_hours_across_dst(tmp_path: Path, store: SqliteStore) -> None:
    # Sun 25 Oct 2026 12:00 CET is 11:00 UTC; 1440 minutes earlier is Sat 11:00 UTC = 13:00 CEST
    path = write(
        tmp_path / "cal.ics",
        vcalendar(vevent("s@test", "Brunch", "DTSTART;TZID=Europe/Berlin:20261025T120000")),
    )
    clock = FakeClock(datetime(2026, 10, 24, 12, 59, tzinfo=BERLIN))
    watcher = make_watcher(path, store, clock, ReminderPolicy((1440,)))
    assert (await watcher.scan()).reminders == []
    clock.set(datetime(2026, 10, 24, 13, 0, tzinfo=BERLIN))
    assert len((await watcher.scan()).reminders) == 1


async def test_several_calendars_each_with_its_reminders(
    tmp_path: Path, store: SqliteStore
) -> None:
    work = write(tmp_path / "work.ics", meeting())
    home = write(
        tmp_path / "home.ics",
        vcalendar(vevent("dinner@test", "Dinner", "DTSTART;TZID=Europe/Berlin:20261201T100000")),
    )
    clock = FakeClock(at(1, 9, 0))
    watcher = CalendarWatcher(
        [
            (IcsBackend("work", work, zone=BERLIN), ReminderPolicy((30,))),
            (IcsBackend("home", home, zone=BERLIN), ReminderPolicy((45, 5))),
        ],
        store,
        zone=BERLIN,
        clock=clock,
    )
    seen = []
    for _ in range(12):  # every 5 minutes, 09:05 .. 10:00
        clock.advance(minutes=5)
        scan = await watcher.scan()
        seen += [
            (clock().astimezone(BERLIN).strftime("%H:%M"), r.occurrence.calendar, r.reminder)
            for r in scan.reminders
        ]
    assert seen == [
        ("09:15", "home", "45m"),
        ("09:30", "work", "30m"),
        ("09:55", "home", "5m"),
    ]
