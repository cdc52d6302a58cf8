"""iCalendar text ─► occurrences in a window, shared by the .ics and CalDAV backends.

    text ─► fastics: plain single events decoded directly (the bulk of a real calendar)
         ─► icalendar for the rest (tolerant parse; a file that will not parse whole is
             split per VEVENT)
         ─► each VEVENT checked (DTSTART present, no broken lines, every TZID known):
             a bad one becomes a warning naming it, the rest go on
         ─► grouped by UID:  single events ─► precomputed Occurrence (sorted)
                             RRULE/RDATE + RECURRENCE-ID overrides ─► recurring_ical_events
         ─► ParsedCalendar.between(start, end) ─► [Occurrence]   (cancelled ones dropped)

Times: a TZID is honoured whether it names a VTIMEZONE in the file or an IANA zone;
floating times (no TZID, no Z) are in the calendar's ``X-WR-TIMEZONE`` when it has one,
else in the user's zone; an all-day event runs from local midnight to local midnight.
Parsing is the expensive part, so callers keep the ``ParsedCalendar`` while the text is
unchanged and only ``between`` runs on every scan.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import icalendar
import recurring_ical_events

from octopussy.calendar.base import Occurrence
from octopussy.calendar.fastics import fast_scan

#: Recurring events are queried with this margin, then filtered exactly: floating and
#: all-day instances are compared in the user's zone only after expansion.
_MARGIN = timedelta(days=1)
_TIME_PROPS = ("DTSTART", "DTEND", "RECURRENCE-ID")
_LIST_TIME_PROPS = ("EXDATE", "RDATE")
_VEVENT_START = re.compile(r"^BEGIN:VEVENT\r?$", re.M | re.I)
_VTIMEZONE_BLOCK = re.compile(r"^BEGIN:VTIMEZONE\r?$.*?^END:VTIMEZONE\r?$", re.M | re.S)
_FIELD = re.compile(r"^(UID|SUMMARY)[;:](?:[^:\r\n]*:)?(.*)$", re.M)


def describe(component: Any, index: int | None = None) -> str:
    """How a warning names an event: its summary and UID, whichever it has."""
    summary = str(component.get("SUMMARY", "") or "").strip()
    uid = str(component.get("UID", "") or "").strip()
    if summary and uid:
        return f"event {summary!r} (UID {uid})"
    if summary or uid:
        return f"event {summary or uid!r}" if summary else f"event with UID {uid}"
    return f"event #{index}" if index is not None else "an event without UID or SUMMARY"


def _text(component: Any, name: str) -> str:
    value = component.get(name)
    return "" if value is None else str(value).strip()


def _cancelled(component: Any) -> bool:
    return _text(component, "STATUS").upper() == "CANCELLED"


def _values(prop: Any) -> Iterable[Any]:
    return prop if isinstance(prop, list) else [prop]


def _problem(component: Any) -> str | None:
    """Why this VEVENT cannot be used, or None."""
    for name, message in getattr(component, "errors", ()):
        where = f"{name}: " if name else ""
        return f"broken line ({where}{message})"
    if component.get("DTSTART") is None:
        return "no DTSTART"
    for name in (*_TIME_PROPS, *_LIST_TIME_PROPS):
        prop = component.get(name)
        if prop is None:
            continue
        for value in _values(prop):
            zone = value.params.get("TZID") if hasattr(value, "params") else None
            dts = getattr(value, "dts", None)
            moments = [item.dt for item in dts] if dts is not None else [getattr(value, "dt", None)]
            for moment in moments:
                if isinstance(moment, datetime) and zone and moment.tzinfo is None:
                    return f"unknown time zone {zone!r} in {name}"
                if not isinstance(moment, (date, datetime, timedelta, tuple)):
                    return f"unreadable {name}"
    if component.get("DTEND") is not None and component.get("DURATION") is not None:
        return "both DTEND and DURATION"
    return None


def _place(value: date | datetime, zone: tzinfo) -> datetime:
    """An aware datetime: dates become local midnight, floating times local time."""
    if not isinstance(value, datetime):
        return datetime.combine(value, time(0), zone)
    return value.replace(tzinfo=zone) if value.tzinfo is None else value


def to_occurrence(component: Any, *, calendar: str, uid: str, zone: tzinfo) -> Occurrence:
    """One VEVENT (as expanded: its DTSTART is the occurrence's start) as an Occurrence."""
    raw_start = component.decoded("DTSTART")
    all_day = not isinstance(raw_start, datetime)
    start = _place(raw_start, zone)
    if component.get("DTEND") is not None:
        end = _place(component.decoded("DTEND"), zone)
    elif component.get("DURATION") is not None:
        end = start + component.decoded("DURATION")
    else:
        end = start + (timedelta(days=1) if all_day else timedelta(0))
    if end < start or (all_day and end == start):
        end = start + (timedelta(days=1) if all_day else timedelta(0))
    return Occurrence(
        calendar=calendar,
        uid=uid,
        title=_text(component, "SUMMARY"),
        start=start,
        end=end,
        all_day=all_day,
        location=_text(component, "LOCATION"),
        description=_text(component, "DESCRIPTION"),
    )


def _uid(component: Any) -> str:
    uid = _text(component, "UID")
    if uid:
        return uid
    # Without a UID the event must still be recognised on the next poll and after a restart.
    seed = f"{_text(component, 'SUMMARY')}|{component.get('DTSTART').to_ical()!r}"
    return "nouid-" + hashlib.sha1(seed.encode()).hexdigest()[:12]


@dataclass(slots=True)
class _Recurring:
    """The components of one recurring UID: the master plus its overridden instances."""

    uid: str
    name: str
    zone: tzinfo
    components: list[Any]
    query: Any = None
    failed: bool = False


@dataclass(slots=True)
class ParsedCalendar:
    """A parsed calendar, ready to answer ``between`` many times."""

    calendar: str
    singles: list[Occurrence] = field(default_factory=list)
    recurring: list[_Recurring] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    count: int = 0  # VEVENTs read (good and bad)

    def between(self, start: datetime, end: datetime) -> tuple[list[Occurrence], list[str]]:
        """Occurrences overlapping ``[start, end)``, soonest first, and new warnings."""
        found = [o for o in self.singles if o.start < end and o.end > start]
        warnings: list[str] = []
        for group in self.recurring:
            if group.failed:
                continue
            try:
                found.extend(self._expand(group, start, end))
            except Exception as exc:  # a bad RRULE surfaces only when expanded
                group.failed = True
                warnings.append(f"{group.name}: cannot expand its recurrence ({exc}); skipped")
        found.sort(key=lambda o: (o.start, o.uid))
        return found, warnings

    def _expand(self, group: _Recurring, start: datetime, end: datetime) -> list[Occurrence]:
        if group.query is None:
            holder = icalendar.Calendar()
            for component in group.components:
                holder.add_component(component)
            group.query = recurring_ical_events.of(holder)
        found = []
        for instance in group.query.between(start - _MARGIN, end + _MARGIN):
            if _cancelled(instance):
                continue
            occurrence = to_occurrence(
                instance, calendar=self.calendar, uid=group.uid, zone=group.zone
            )
            if occurrence.start < end and occurrence.end > start:
                found.append(occurrence)
        return found


def _calendar_zone(calendar: Any, default: tzinfo) -> tzinfo:
    name = _text(calendar, "X-WR-TIMEZONE")
    if not name:
        return default
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return default


def _event_chunks(text: str) -> list[tuple[str, bool]]:
    """Each VEVENT's lines, cut at the next BEGIN:VEVENT if its END:VEVENT is missing;
    (text, complete)."""
    chunks: list[tuple[str, bool]] = []
    current: list[str] | None = None
    for line in text.splitlines():
        bare = line.strip().upper()
        if bare == "BEGIN:VEVENT":
            if current is not None:
                chunks.append(("\r\n".join(current), False))
            current = [line]
        elif current is not None:
            current.append(line)
            if bare == "END:VEVENT":
                chunks.append(("\r\n".join(current), True))
                current = None
    if current is not None:
        chunks.append(("\r\n".join(current), False))
    return chunks


def _chunk_name(chunk: str, index: int) -> str:
    fields: dict[str, str] = {}
    for key, value in _FIELD.findall(chunk):
        fields.setdefault(key, value.strip())
    return describe(fields, index)


def _split_parse(text: str) -> tuple[list[Any], list[str]]:
    """Parse each VEVENT on its own (with the file's VTIMEZONEs) when the whole file does
    not parse into all its events: one broken event then costs only itself."""
    zones = "\r\n".join(block.group(0) for block in _VTIMEZONE_BLOCK.finditer(text))
    calendars, warnings = [], []
    for index, (chunk, complete) in enumerate(_event_chunks(text), start=1):
        if not complete:
            warnings.append(f"{_chunk_name(chunk, index)}: no END:VEVENT; skipped")
            continue
        wrapped = f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\n{zones}\r\n{chunk}\r\nEND:VCALENDAR\r\n"
        try:
            calendars.append(icalendar.Calendar.from_ical(wrapped))
        except Exception as exc:
            warnings.append(f"{_chunk_name(chunk, index)}: cannot be parsed ({exc}); skipped")
    return calendars, warnings


def parse_ics(text: str, *, calendar: str, zone: tzinfo, origin: str = "") -> ParsedCalendar:
    """Parse iCalendar ``text`` of the calendar named ``calendar``.

    ``origin`` (a file name, an URL) prefixes every warning. Never raises for bad content:
    what cannot be used is skipped with a warning. Plain single events are decoded by the
    quick pass in ``fastics``; the rest (or all of a malformed file) by icalendar.
    """
    prefix = f"{origin}: " if origin else ""
    parsed = ParsedCalendar(calendar=calendar)
    fast = fast_scan(text, calendar=calendar, zone=zone)
    if fast is not None:
        parsed.singles.extend(fast.singles)
        if fast.rest is None:
            parsed.count = fast.count
            parsed.singles.sort(key=lambda o: (o.start, o.uid))
            return parsed
        _parse_exact(fast.rest, parsed, prefix, zone)
        parsed.count = fast.count
    else:
        _parse_exact(text, parsed, prefix, zone)
    parsed.singles.sort(key=lambda o: (o.start, o.uid))
    return parsed


def _parse_exact(text: str, parsed: ParsedCalendar, prefix: str, zone: tzinfo) -> None:
    """icalendar's tolerant parse, then checks, grouping and recurrence set-up."""
    calendar = parsed.calendar
    split_warnings: list[str] = []
    try:
        calendars = icalendar.Calendar.from_ical(text, multiple=True)
    except Exception:
        calendars = None
    expected = len(_VEVENT_START.findall(text))
    if calendars is None or sum(len(c.walk("VEVENT")) for c in calendars) < expected:
        # Some events were lost to a structural error: parse them one by one instead.
        calendars, split_warnings = _split_parse(text)
    if not expected and "BEGIN:VCALENDAR" not in text.upper():
        parsed.warnings.append(f"{prefix}not an iCalendar file (no BEGIN:VCALENDAR); skipped")
    parsed.warnings.extend(prefix + warning for warning in split_warnings)
    parsed.count = len(split_warnings)
    groups: dict[str, list[Any]] = {}
    names: dict[str, str] = {}
    zones: dict[str, tzinfo] = {}
    for cal in calendars:
        cal_zone = _calendar_zone(cal, zone)
        for component in cal.walk("VEVENT"):
            parsed.count += 1
            name = describe(component, parsed.count)
            problem = _problem(component)
            if problem is not None:
                parsed.warnings.append(f"{prefix}{name}: {problem}; skipped")
                continue
            uid = _uid(component)
            groups.setdefault(uid, []).append(component)
            names.setdefault(uid, prefix + name)
            zones.setdefault(uid, cal_zone)
    for uid, components in groups.items():
        masters = [c for c in components if c.get("RECURRENCE-ID") is None]
        recurring = any(c.get("RRULE") is not None or c.get("RDATE") is not None for c in masters)
        if masters and all(_cancelled(c) for c in masters):
            continue  # the whole series (or the single event) is cancelled
        if recurring:
            parsed.recurring.append(
                _Recurring(uid=uid, name=names[uid], zone=zones[uid], components=components)
            )
            continue
        for component in components:
            if _cancelled(component):
                continue
            try:
                parsed.singles.append(
                    to_occurrence(component, calendar=calendar, uid=uid, zone=zones[uid])
                )
            except Exception as exc:
                parsed.warnings.append(f"{prefix}{describe(component)}: {exc}; skipped")
