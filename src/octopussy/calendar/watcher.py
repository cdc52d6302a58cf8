"""Reminders from occurrences, each delivered exactly once, on an injectable clock.

    clock() ─► scan(now)
                ├─ refresh: each calendar whose poll (or retry) is due ─► backend.fetch(window)
                │     ok: cache its occurrences       failed: keep the cache, back off, report once
                ├─ due: for every cached occurrence not over, its latest reminder moment <= now
                └─ claim: store.mark_seen("calendar", "cal|UID|start|reminder") ─► Reminder
                                         (False: already delivered, also by an earlier process)

The key holds the occurrence's start, so an event moved to a new time is announced again
for that time, and a restart never repeats one (the keys live in the store). A key is
stored with the occurrence's end as its time and pruned once that has passed. A cancelled
or deleted event is gone from the next fetch; right before a reminder is delivered from a
cache older than ``recheck`` the calendar is fetched again, so a cancellation that came
in since the last poll is seen. Several reminders of one occurrence that are due at once
(the process was down) collapse into the latest one; one whose moment passed before this
watcher started is marked ``late``; none is delivered once the occurrence is over.

The watcher claims a reminder before the caller sends it: a crash between the two loses
that one notification rather than repeating it, and the runtime stores anything the bus
cannot deliver, so nothing disappears silently.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import Literal

from octopussy.calendar.base import CalendarBackend, Clock, Occurrence, system_clock
from octopussy.errors import OctopussyError
from octopussy.store.base import Store

log = logging.getLogger("octopussy.calendar")

SEEN_NAMESPACE = "calendar"
#: A zero-length event (a deadline) still counts as "not over" for this long after it.
_INSTANT = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class ReminderPolicy:
    """When one calendar's occurrences are announced."""

    minutes_before: tuple[int, ...] = (30,)
    all_day_at: time = time(9, 0)
    all_day_days_before: int = 0

    def moments(self, occurrence: Occurrence, zone: tzinfo) -> list[tuple[str, datetime]]:
        """(reminder id, moment) for each reminder of ``occurrence``."""
        if occurrence.all_day:
            day = occurrence.start.astimezone(zone).date()
            day -= timedelta(days=self.all_day_days_before)
            at = self.all_day_at
            ident = f"day-{self.all_day_days_before}@{at.hour:02d}{at.minute:02d}"
            return [(ident, datetime.combine(day, at, zone))]
        # In UTC: aware arithmetic in a zone is wall-clock arithmetic, so "1440 minutes
        # before" across a DST change would be 23 or 25 real hours.
        start = occurrence.start.astimezone(UTC)
        return [(f"{m}m", start - timedelta(minutes=m)) for m in self.minutes_before]

    @property
    def horizon(self) -> timedelta:
        """How far ahead of now an occurrence may start and already have a reminder due."""
        timed = timedelta(minutes=max(self.minutes_before, default=0))
        return max(timed, timedelta(days=self.all_day_days_before + 1))


@dataclass(frozen=True, slots=True)
class Reminder:
    """A reminder that is due and was claimed: the caller must deliver it now."""

    occurrence: Occurrence
    reminder: str
    moment: datetime
    late: bool

    @property
    def key(self) -> str:
        return f"{self.occurrence.key}|{self.reminder}"


@dataclass(frozen=True, slots=True)
class Notice:
    """Something about a calendar the user should hear once (bad events, outages)."""

    level: Literal["warning", "info"]
    calendar: str
    text: str


@dataclass(slots=True)
class _Watched:
    backend: CalendarBackend
    policy: ReminderPolicy
    occurrences: list[Occurrence] = field(default_factory=list)
    fetched_at: datetime | None = None
    next_fetch: datetime | None = None
    failures: int = 0
    error: str | None = None


@dataclass(slots=True)
class Agenda:
    occurrences: list[Occurrence] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # calendars that could not be read
    skipped: list[str] = field(default_factory=list)  # bad events (new warnings)


@dataclass(slots=True)
class Scan:
    reminders: list[Reminder] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OctopussyError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class CalendarWatcher:
    """Watches several calendars; ``scan()`` returns what is due now (already claimed)."""

    def __init__(
        self,
        calendars: Sequence[tuple[CalendarBackend, ReminderPolicy]],
        store: Store,
        *,
        zone: tzinfo,
        clock: Clock = system_clock,
        poll_interval: float = 300.0,
        retry_initial: float = 5.0,
        recheck: float = 60.0,
        late_grace: float = 60.0,
    ) -> None:
        self.calendars = [_Watched(backend, policy) for backend, policy in calendars]
        self.store = store
        self.zone = zone
        self.clock = clock
        self.poll_interval = timedelta(seconds=poll_interval)
        self.retry_initial = retry_initial
        self.recheck = timedelta(seconds=recheck)
        self.late_grace = timedelta(seconds=late_grace)
        self.started: datetime | None = None
        self._claimed: dict[str, datetime] = {}  # key -> occurrence end (saves store calls)
        self._pruned: datetime | None = None

    # -- fetching -------------------------------------------------------------------------
    def _window_end(self, watched: _Watched, now: datetime) -> datetime:
        return now + watched.policy.horizon + self.poll_interval + timedelta(minutes=5)

    async def _refresh(self, watched: _Watched, now: datetime, notices: list[Notice]) -> None:
        name = watched.backend.name
        try:
            fetched = await watched.backend.fetch(now, self._window_end(watched, now))
        except Exception as exc:
            watched.failures += 1
            delay = min(
                self.retry_initial * 2 ** (watched.failures - 1),
                max(self.poll_interval.total_seconds(), self.retry_initial),
            )
            watched.next_fetch = now + timedelta(seconds=delay)
            reason = _reason(exc)
            log.debug("calendar %s: fetch failed", name, exc_info=exc)
            if watched.error is None:
                watched.error = reason
                notices.append(
                    Notice(
                        "warning",
                        name,
                        f"cannot read calendar {name!r}: {reason}; retrying with backoff, "
                        "known events are still announced",
                    )
                )
            else:
                log.info("calendar %s still unavailable (retry in %.0fs)", name, delay)
            return
        if watched.error is not None:
            notices.append(Notice("info", name, f"calendar {name!r} is reachable again"))
        watched.failures, watched.error = 0, None
        watched.occurrences = fetched.occurrences
        watched.fetched_at = now
        watched.next_fetch = now + self.poll_interval
        if fetched.warnings:
            shown = "; ".join(fetched.warnings[:3])
            more = len(fetched.warnings) - 3
            tail = f" (+{more} more, see the log)" if more > 0 else ""
            notices.append(
                Notice(
                    "warning",
                    name,
                    f"calendar {name!r}: skipped {len(fetched.warnings)} bad "
                    f"event(s): {shown}{tail}",
                )
            )
            for warning in fetched.warnings:
                log.warning("calendar %s: %s", name, warning)

    # -- reminders ------------------------------------------------------------------------
    def _candidates(
        self, watched: _Watched, now: datetime
    ) -> list[tuple[Occurrence, str, datetime]]:
        found = []
        for occurrence in watched.occurrences:
            if max(occurrence.end, occurrence.start + _INSTANT) <= now:
                continue  # over: no reminder, not even a late one
            due = [(r, m) for r, m in watched.policy.moments(occurrence, self.zone) if m <= now]
            if due:
                reminder, moment = max(due, key=lambda item: item[1])
                found.append((occurrence, reminder, moment))
        return found

    async def scan(self, now: datetime | None = None) -> Scan:
        """Fetch what is due for a poll, then claim and return every reminder due at ``now``."""
        now = now or self.clock()
        if self.started is None:
            self.started = now
        result = Scan()
        for watched in self.calendars:
            if watched.next_fetch is None or watched.next_fetch <= now:
                await self._refresh(watched, now, result.notices)
        for watched in self.calendars:
            candidates = [
                c for c in self._candidates(watched, now) if self._key(c) not in self._claimed
            ]
            stale = watched.fetched_at is None or now - watched.fetched_at >= self.recheck
            may_retry = watched.error is None or (
                watched.next_fetch is not None and watched.next_fetch <= now
            )
            if candidates and stale and may_retry:
                # About to announce from an older copy: look again, it may have moved or gone.
                await self._refresh(watched, now, result.notices)
                candidates = [
                    c for c in self._candidates(watched, now) if self._key(c) not in self._claimed
                ]
            for occurrence, reminder, moment in candidates:
                late = moment < self.started - self.late_grace
                item = Reminder(occurrence, reminder, moment, late)
                self._claimed[item.key] = occurrence.end
                if await self.store.mark_seen(
                    SEEN_NAMESPACE, item.key, timestamp=occurrence.end.timestamp()
                ):
                    result.reminders.append(item)
        await self._prune(now)
        result.reminders.sort(key=lambda r: (r.occurrence.start, r.occurrence.title))
        return result

    @staticmethod
    def _key(candidate: tuple[Occurrence, str, datetime]) -> str:
        return f"{candidate[0].key}|{candidate[1]}"

    async def _prune(self, now: datetime) -> None:
        if self._pruned is not None and now - self._pruned < timedelta(hours=1):
            return
        self._pruned = now
        # Keys are stored with the occurrence's end as their time: gone once it is over.
        removed = await self.store.prune_seen(
            SEEN_NAMESPACE, older_than=(now - timedelta(hours=1)).timestamp()
        )
        self._claimed = {k: end for k, end in self._claimed.items() if end > now}
        if removed:
            log.debug("pruned %d calendar reminder key(s)", removed)

    def next_wakeup(self, now: datetime) -> datetime:
        """When ``scan`` next has something to do: a poll, a retry or a reminder moment."""
        soonest = now + self.poll_interval
        for watched in self.calendars:
            if watched.next_fetch is not None:
                soonest = min(soonest, watched.next_fetch)
            for occurrence in watched.occurrences:
                for _, moment in watched.policy.moments(occurrence, self.zone):
                    if now < moment < soonest:
                        soonest = moment
        return soonest

    # -- agenda ---------------------------------------------------------------------------
    async def agenda(self, start: datetime, end: datetime) -> Agenda:
        """Every occurrence overlapping ``[start, end)`` in every calendar, read now; a
        calendar that cannot be read contributes what is cached, and says why."""
        result = Agenda()
        for watched in self.calendars:
            name = watched.backend.name
            try:
                fetched = await watched.backend.fetch(start, end)
            except Exception as exc:
                result.unreadable.append(f"calendar {name!r}: {_reason(exc)}")
                result.occurrences.extend(
                    o for o in watched.occurrences if o.start < end and o.end > start
                )
                continue
            result.occurrences.extend(fetched.occurrences)
            result.skipped.extend(f"calendar {name!r}: {w}" for w in fetched.warnings)
        result.occurrences.sort(key=lambda o: (o.start, o.title))
        return result

    async def close(self) -> None:
        for watched in self.calendars:
            try:
                await watched.backend.close()
            except Exception:
                log.exception("closing calendar %s failed", watched.backend.name)
