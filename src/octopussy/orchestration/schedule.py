"""When recurring tasks run: intervals ("every 30 minutes") and 5-field cron expressions.

    parse_schedule("every 30 minutes")  ──► Interval(1800 s)   ──► next_after(t) = t + 1800
    parse_schedule("*/15 9-17 * * mon-fri") ──► Cron(...)       ──► next_after(t) = next match

Pure and clock-free: callers pass the time in, so tests use a fake clock. Cron follows the
usual Vixie rules: minute hour day-of-month month day-of-week, lists, ranges, steps, names
(jan..dec, sun..sat, 7 = Sunday), and "day-of-month OR day-of-week" when both are
restricted. Times are local (the zone given, default the machine's).

``next_time`` and ``catch_up`` do the same on epoch seconds for the scheduler: a run that
was due long ago fires once, and ``catch_up`` says when the next one is and how many run
times were skipped on the way (intervals keep their phase: due + k × period).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from octopussy.errors import ConfigError

_UNITS = {
    "s": 1, "sec": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
}  # fmt: skip
_INTERVAL = re.compile(r"^(?:every\s+)?(\d+(?:\.\d+)?)?\s*([a-z]+)$")
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_ALIASES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
MIN_INTERVAL = 10.0  # seconds; anything faster is a runaway, not a schedule
#: ``catch_up`` counts missed cron times one by one up to this many, then stops counting.
MAX_COUNTED_MISSES = 1000


@dataclass(frozen=True, slots=True)
class Interval:
    seconds: float
    text: str

    def next_after(self, moment: datetime) -> datetime:
        return moment + timedelta(seconds=self.seconds)


@dataclass(frozen=True, slots=True)
class Cron:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    days_restricted: bool
    weekdays_restricted: bool
    text: str

    def _day_matches(self, moment: datetime) -> bool:
        weekday = (moment.weekday() + 1) % 7
        day_ok = moment.day in self.days
        weekday_ok = weekday in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return day_ok or weekday_ok
        return day_ok and weekday_ok

    def next_after(self, moment: datetime) -> datetime:
        """The first matching minute strictly after ``moment`` (keeps its time zone)."""
        candidate = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
        limit = candidate + timedelta(days=366 * 5)
        while candidate < limit:
            if candidate.month not in self.months:
                month = candidate.month % 12 + 1
                year = candidate.year + (1 if month == 1 else 0)
                candidate = candidate.replace(year=year, month=month, day=1, hour=0, minute=0)
                continue
            if not self._day_matches(candidate):
                candidate = candidate.replace(hour=0, minute=0) + timedelta(days=1)
                continue
            if candidate.hour not in self.hours:
                candidate = candidate.replace(minute=0) + timedelta(hours=1)
                continue
            if candidate.minute not in self.minutes:
                candidate += timedelta(minutes=1)
                continue
            return candidate
        raise ConfigError(f"cron expression {self.text!r} never matches", hint="check the fields")


Schedule = Interval | Cron


def _field(text: str, low: int, high: int, names: list[str] | None, what: str) -> frozenset[int]:
    """One cron field: ``*``, ``a``, ``a-b``, any of them with ``/step``, comma lists."""
    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text.isdigit() else 0
        if step_text and step < 1:
            raise ValueError(f"bad step in {what} {part!r}")
        if base == "*":
            start, end = low, high
        else:
            first, _, last = base.partition("-")
            start = _value(first, names, low)
            end = _value(last, names, low) if last else (high if step_text else start)
        if not low <= start <= end <= high:
            raise ValueError(f"{what} {base!r} is outside {low}-{high} or runs backwards")
        values.update(range(start, end + 1, step or 1))
    return frozenset(values)


def _value(text: str, names: list[str] | None, low: int) -> int:
    if names and text[:3] in names:
        return names.index(text[:3]) + low
    if not text.isdigit():
        raise ValueError(f"{text!r} is not a number")
    return int(text)


def parse_schedule(text: str) -> Schedule:
    """``every 30 minutes`` / ``30m`` / ``hourly`` / ``*/5 * * * *`` / ``@daily``."""
    raw = " ".join(text.strip().lower().split())
    if raw in ("hourly", "daily", "weekly", "monthly", "yearly"):
        raw = "@" + raw
    raw = _ALIASES.get(raw, raw)
    fields = raw.split(" ")
    if len(fields) == 5:
        try:
            minutes = _field(fields[0], 0, 59, None, "minute")
            hours = _field(fields[1], 0, 23, None, "hour")
            days = _field(fields[2], 1, 31, None, "day-of-month")
            months = _field(fields[3], 1, 12, _MONTHS, "month")
            # 0-7 with both 0 and 7 meaning Sunday
            weekdays = frozenset(d % 7 for d in _field(fields[4], 0, 7, _DAYS, "day-of-week"))
        except ValueError as exc:
            raise ConfigError(
                f"invalid cron expression {text!r}: {exc}",
                hint="minute hour day-of-month month day-of-week, e.g. */15 9-17 * * mon-fri",
            ) from exc
        return Cron(
            minutes, hours, days, months, weekdays,
            days_restricted=fields[2] != "*", weekdays_restricted=fields[4] != "*", text=text,
        )  # fmt: skip
    match = _INTERVAL.match(raw)
    if match and match.group(2) in _UNITS:
        amount = float(match.group(1) or 1)
        seconds = amount * _UNITS[match.group(2)]
        if seconds < MIN_INTERVAL:
            raise ConfigError(
                f"schedule {text!r} is shorter than {MIN_INTERVAL:g} seconds",
                hint="recurring tasks run at most every 10 seconds",
            )
        return Interval(seconds, text)
    raise ConfigError(
        f"cannot read the schedule {text!r}",
        hint="use e.g. 'every 30 minutes', '2h', 'daily' or a cron line '0 9 * * mon-fri'",
    )


def next_run(schedule: Schedule, after: datetime, zone: tzinfo | None = None) -> datetime:
    """The next run after ``after``; cron is evaluated in ``zone`` (default: after's zone)."""
    if isinstance(schedule, Cron) and zone is not None:
        return schedule.next_after(after.astimezone(zone))
    return schedule.next_after(after)


def next_time(schedule: Schedule, after: float, zone: tzinfo | None = None) -> float:
    """The next run strictly after ``after`` (epoch seconds). Cron reads wall-clock time in
    ``zone``, default the machine's local zone with its daylight saving rules."""
    if isinstance(schedule, Interval):
        return after + schedule.seconds
    moment = datetime.fromtimestamp(after, zone)
    # When daylight saving time ends an hour of wall-clock times repeats; a match in it may
    # map back to its first occurrence, before ``after``: walk on until the clock is past it.
    for _ in range(24 * 60):
        moment = schedule.next_after(moment)
        following = moment.timestamp()
        if following > after:
            return following
    raise ConfigError(f"cron expression {schedule.text!r} never matches", hint="check the fields")


def catch_up(
    schedule: Schedule, due: float, now: float, zone: tzinfo | None = None
) -> tuple[float, int]:
    """For a run due at ``due`` that fires at ``now``: the next run time (after ``now``) and
    how many run times between the two were missed (0 when on time; counting stops at
    ``MAX_COUNTED_MISSES`` for cron). Intervals keep their phase so late wake-ups never drift."""
    now = max(now, due)
    if isinstance(schedule, Interval):
        periods = int((now - due) // schedule.seconds) + 1
        following = due + periods * schedule.seconds
        while following <= now:  # float rounding
            periods += 1
            following = due + periods * schedule.seconds
        return following, periods - 1
    missed = 0
    following = next_time(schedule, due, zone)
    while following <= now:
        if missed >= MAX_COUNTED_MISSES:
            return next_time(schedule, now, zone), missed
        missed += 1
        following = next_time(schedule, following, zone)
    return following, missed
