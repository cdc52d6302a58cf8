"""Benchmark: scanning an .ics file of 5,000 events (200 recurring) over a 7-day window.

    generated .ics (4,800 single events over a year + 200 series: daily / weekly / monthly,
                    in 4 IANA zones, floating and all-day, with EXDATE, RDATE and overrides)

    baseline       icalendar.Calendar.from_ical(text)              the bare parse, nothing else
    naive          from_ical + recurring_ical_events.of(cal).between(7 days)
                   (what a straightforward implementation does on every poll)
    cold scan      IcsBackend.fetch on a new backend: read, quick pass over the plain events,
                   icalendar for the rest, check, group, expand (after every file change)
    warm scan      IcsBackend.fetch again, file unchanged: stat + window query (every poll)
    watcher scan   CalendarWatcher.scan on the warm backend, SQLite store, reminders claimed

Each figure is the median of the repetitions, all measured in one process, alternating, so
machine noise hits every row. Target: a cold scan under 1 s. Run:

    .venv/bin/python benchmarks/bench_calendar.py [--events 5000] [--recurring 200] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from zoneinfo import ZoneInfo

import icalendar
import recurring_ical_events

from octopussy.calendar.ical import ParsedCalendar, _parse_exact
from octopussy.calendar.ics import IcsBackend
from octopussy.calendar.watcher import CalendarWatcher, ReminderPolicy
from octopussy.store.sqlite import SqliteStore

TARGET_SECONDS = 1.0
ZONES = ["Europe/Berlin", "America/New_York", "Asia/Tokyo", "UTC"]
NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M%S")


def generate(events: int, recurring: int, seed: int = 7) -> str:
    """A realistic, deterministic calendar: most events in the past or far future."""
    rng = random.Random(seed)
    out = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//octopussy bench//EN"]
    first = NOW - timedelta(days=180)
    for index in range(events - recurring):
        zone = rng.choice(ZONES)
        start = first + timedelta(minutes=15 * rng.randrange(365 * 24 * 4))
        local = start.astimezone(ZoneInfo(zone))
        lines = [f"UID:single-{index}@bench", f"SUMMARY:Meeting {index}"]
        kind = rng.random()
        if kind < 0.1:
            lines.append(f"DTSTART;VALUE=DATE:{local:%Y%m%d}")
        elif kind < 0.2:
            lines.append(f"DTSTART:{_stamp(local)}")  # floating
            lines.append("DURATION:PT45M")
        else:
            lines.append(f"DTSTART;TZID={zone}:{_stamp(local)}")
            lines.append(f"DTEND;TZID={zone}:{_stamp(local + timedelta(minutes=30))}")
        lines += ["LOCATION:Room 3", "DESCRIPTION:Generated for the benchmark"]
        out += ["BEGIN:VEVENT", *lines, "END:VEVENT"]
    for index in range(recurring):
        zone = rng.choice(ZONES)
        start = (NOW - timedelta(days=rng.randrange(30, 400))).astimezone(ZoneInfo(zone))
        start = start.replace(hour=rng.randrange(7, 18), minute=0, second=0, microsecond=0)
        rule = rng.choice(
            ["FREQ=DAILY", "FREQ=WEEKLY", "FREQ=WEEKLY;BYDAY=MO,WE,FR", "FREQ=MONTHLY"]
        )
        uid = f"series-{index}@bench"
        out += [
            "BEGIN:VEVENT",
            f"UID:{uid}",
            f"SUMMARY:Series {index}",
            f"DTSTART;TZID={zone}:{_stamp(start)}",
            f"DTEND;TZID={zone}:{_stamp(start + timedelta(hours=1))}",
            f"RRULE:{rule}",
            f"EXDATE;TZID={zone}:{_stamp(start + timedelta(days=7))}",
            f"RDATE;TZID={zone}:{_stamp(start + timedelta(days=3, hours=2))}",
            "END:VEVENT",
        ]
        if index % 4 == 0:  # an overridden instance
            moved = start + timedelta(days=14)
            out += [
                "BEGIN:VEVENT",
                f"UID:{uid}",
                f"SUMMARY:Series {index} (moved)",
                f"RECURRENCE-ID;TZID={zone}:{_stamp(moved)}",
                f"DTSTART;TZID={zone}:{_stamp(moved + timedelta(hours=1))}",
                f"DTEND;TZID={zone}:{_stamp(moved + timedelta(hours=2))}",
                "END:VEVENT",
            ]
    out.append("END:VCALENDAR")
    return "\r\n".join(out) + "\r\n"


def timed(function: Callable[[], object]) -> float:
    gc.collect()
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


async def atimed(function: Callable[[], Awaitable[object]]) -> float:
    gc.collect()
    start = time.perf_counter()
    await function()
    return time.perf_counter() - start


async def run(events: int, recurring: int, repeat: int) -> None:
    text = generate(events, recurring)
    window = (NOW, NOW + timedelta(days=7))
    zone = ZoneInfo("Europe/Berlin")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.ics"
        path.write_text(text, encoding="utf-8", newline="")
        store = SqliteStore(Path(folder) / "state.db")
        await store.open()
        rows: dict[str, list[float]] = {
            name: [] for name in ("baseline", "naive", "cold scan", "warm scan", "watcher scan")
        }
        found = 0
        for _ in range(repeat):
            rows["baseline"].append(timed(lambda: icalendar.Calendar.from_ical(text)))
            rows["naive"].append(
                timed(
                    lambda: recurring_ical_events.of(icalendar.Calendar.from_ical(text)).between(
                        *window
                    )
                )
            )
            backend = IcsBackend("bench", path, zone=zone)
            rows["cold scan"].append(await atimed(lambda b=backend: b.fetch(*window)))
            fetched = await backend.fetch(*window)
            found = len(fetched.occurrences)
            rows["warm scan"].append(await atimed(lambda b=backend: b.fetch(*window)))
            watcher = CalendarWatcher(
                [(backend, ReminderPolicy((30,)))], store, zone=zone, clock=lambda: NOW
            )
            await watcher.scan(NOW)  # first scan fetches; the timed one is a steady poll
            watcher.calendars[0].next_fetch = NOW  # force a fetch in the timed scan too
            rows["watcher scan"].append(await atimed(lambda w=watcher: w.scan(NOW)))
        await store.close()
    # The quick pass must not change the answer: compare with icalendar on every event.
    exact = ParsedCalendar(calendar="bench")
    _parse_exact(text, exact, "", zone)
    same = exact.between(*window)[0] == fetched.occurrences
    baseline = statistics.median(rows["baseline"])
    print(
        f"# calendar scan benchmark: {events} events ({recurring} recurring), 7-day window, "
        f"{found} occurrences in it, {len(text) / 1e6:.1f} MB of iCalendar"
    )
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {sys.version.split()[0]}, icalendar {icalendar.__version__}, "
        f"recurring-ical-events {version('recurring-ical-events')}, {repeat} repetitions"
    )
    print(f"{'what':<14} {'median s':>9} {'min s':>8} {'max s':>8} {'× baseline':>11}")
    for name, values in rows.items():
        median = statistics.median(values)
        print(
            f"{name:<14} {median:>9.3f} {min(values):>8.3f} {max(values):>8.3f} "
            f"{median / baseline:>10.2f}×"
        )
    cold = statistics.median(rows["cold scan"])
    verdict = "met" if cold < TARGET_SECONDS else "MISSED"
    print(f"target: cold scan < {TARGET_SECONDS:.1f} s: {cold:.3f} s, {verdict}")
    print(f"same occurrences as icalendar on the whole file: {'yes' if same else 'NO'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--recurring", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(run(args.events, args.recurring, args.repeat))


if __name__ == "__main__":
    main()
