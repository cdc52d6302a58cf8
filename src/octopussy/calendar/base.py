"""The calendar backend Protocol and the one shape every backend returns.

    .ics file/folder ─┐
    CalDAV server   ──┼─► CalendarBackend.fetch(start, end) ─► Fetched(occurrences, warnings)
    Google Calendar ──┘        (expanded, time-zone aware)            │
                                                                      ▼
                                                  CalendarWatcher: reminders, exactly once

A backend answers one question: which occurrences overlap ``[start, end)``? Recurrences
are already expanded, cancelled ones already dropped, and every time is aware (floating
times and all-day dates are placed in the user's zone by the backend). Backends raise
``BackendUnavailable`` when their server cannot be reached or refuses them; bad events are
not errors but ``warnings`` (one line each, naming the event), reported once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

#: What the watcher calls to learn the time: an aware datetime (tests pass a fake clock).
Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One occurrence of an event: a single event, or one instance of a recurring one."""

    calendar: str
    uid: str
    title: str
    start: datetime  # aware
    end: datetime  # aware, >= start
    all_day: bool = False
    location: str = ""
    description: str = ""

    @property
    def key(self) -> str:
        """Identifies this occurrence at this time: a moved occurrence gets a new key."""
        return f"{self.calendar}|{self.uid}|{self.start.astimezone(UTC).isoformat()}"


@dataclass(slots=True)
class Fetched:
    """What one fetch found: occurrences overlapping the window, and new warnings."""

    occurrences: list[Occurrence] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@runtime_checkable
class CalendarBackend(Protocol):
    """A source of occurrences. Implementations do blocking I/O off the event loop."""

    #: The calendar's name in notifications and in the store's dedup keys (stable).
    name: str

    async def fetch(self, start: datetime, end: datetime) -> Fetched:
        """Occurrences overlapping ``[start, end)`` (both aware), soonest first.

        Raises ``BackendUnavailable`` when the calendar cannot be read right now (the
        caller retries with backoff) and ``ConfigError`` when it never will as configured.
        """
        ...

    async def close(self) -> None:
        """Release connections; the backend may be fetched again afterwards."""
        ...
