"""Shared pieces of the calendar tests: a fake clock and iCalendar text builders."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path


class FakeClock:
    """An aware clock that moves only when told to (no sleeps anywhere)."""

    def __init__(self, start: datetime) -> None:
        self.now = start.astimezone(UTC)

    def __call__(self) -> datetime:
        return self.now

    def set(self, moment: datetime) -> None:
        self.now = moment.astimezone(UTC)

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def vcalendar(*events: str, extra: str = "") -> str:
    body = "".join(events)
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//octopussy tests//EN\r\n"
        f"{extra}{body}END:VCALENDAR\r\n"
    )


def vevent(uid: str, summary: str, *lines: str) -> str:
    inner = "".join(f"{line}\r\n" for line in lines)
    return f"BEGIN:VEVENT\r\nUID:{uid}\r\nSUMMARY:{summary}\r\n{inner}END:VEVENT\r\n"


def write(path: Path, text: str) -> Path:
    """Write ``text`` and make sure the (mtime, size) version differs from before."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text, encoding="utf-8", newline="")
    if path.stat().st_mtime_ns == before:  # coarse file system clocks
        import os

        os.utime(path, ns=(before + 1_000_000, before + 1_000_000))
    return path
