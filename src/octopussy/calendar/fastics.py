"""A quick first pass over iCalendar text: plain single events without icalendar.

    text ─► unfold lines ─► VEVENT blocks ─┬─ plain (no recurrence, IANA/UTC/floating/date
                                           │  times, no quoting, no broken line)
                                           │     ─► Occurrence directly
                                           └─ everything else (series, overrides, custom
                                              VTIMEZONEs, Windows zone names, anything odd)
                                                 ─► one smaller VCALENDAR for icalendar

Measured on 5,000 events (bench_calendar.py), icalendar's full parse takes about 2 s on
these machines, and nearly all of it is spent on events that are a DTSTART, a DTEND and
three lines of text. Those are decoded here in a few milliseconds; whatever this pass does
not fully understand goes to the exact path, which also produces every warning. When the
file's structure is not clean (an unterminated block, stray nesting) this pass gives up
and the whole text takes the exact path, so malformed files behave exactly as before.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from octopussy.calendar.base import Occurrence

_DURATION = re.compile(r"^([+-])?P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$")
_ESCAPE = re.compile(r"\\(.)")
_SLOW_PROPS = frozenset({"RRULE", "RDATE", "EXRULE", "EXDATE", "RECURRENCE-ID"})
_TEXT_PROPS = ("SUMMARY", "LOCATION", "DESCRIPTION")


class _Slow(Exception):
    """This event needs the exact (icalendar) path."""


@dataclass(slots=True)
class FastScan:
    singles: list[Occurrence]
    #: A VCALENDAR with the file's VTIMEZONEs and every event left for icalendar, or None.
    rest: str | None
    count: int  # VEVENTs seen


def _unfold(text: str) -> list[str]:
    lines: list[str] = []
    for line in text.splitlines():
        if line[:1] in (" ", "\t") and lines:
            lines[-1] += line[1:]
        elif line:
            lines.append(line)
    return lines


def _unescape(value: str) -> str:
    if "\\" not in value:
        return value.strip()
    return _ESCAPE.sub(lambda m: "\n" if m.group(1) in "nN" else m.group(1), value).strip()


class _Zones:
    """TZID ─► tzinfo, for IANA names only; cached (ZoneInfo lookups are not free)."""

    def __init__(self) -> None:
        self.cache: dict[str, tzinfo] = {}

    def get(self, name: str) -> tzinfo:
        found = self.cache.get(name)
        if found is None:
            try:
                found = ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise _Slow from exc  # custom or unknown: icalendar decides (and warns)
            self.cache[name] = found
        return found


def _decode(
    value: str, params: dict[str, str], zones: _Zones, floating: tzinfo
) -> tuple[datetime, bool]:
    kind = params.get("VALUE", "")
    if kind == "DATE" or (not kind and len(value) == 8):
        if len(value) != 8 or not value.isdigit():
            raise _Slow
        day = date(int(value[:4]), int(value[4:6]), int(value[6:8]))
        return datetime.combine(day, time(0), floating), True
    if kind not in ("", "DATE-TIME") or len(value) not in (15, 16) or value[8] != "T":
        raise _Slow
    digits = value[:8] + value[9:15]
    if not digits.isdigit():
        raise _Slow
    moment = datetime(
        int(digits[:4]),
        int(digits[4:6]),
        int(digits[6:8]),
        int(digits[8:10]),
        int(digits[10:12]),
        int(digits[12:14]),
    )
    if len(value) == 16:
        if value[15] != "Z":
            raise _Slow
        return moment.replace(tzinfo=UTC), False
    tzid = params.get("TZID")
    return moment.replace(tzinfo=zones.get(tzid) if tzid else floating), False


def _duration(value: str) -> timedelta:
    match = _DURATION.match(value)
    if match is None or value in ("P", "PT"):
        raise _Slow
    sign, weeks, days, hours, minutes, seconds = match.groups()
    delta = timedelta(
        weeks=int(weeks or 0),
        days=int(days or 0),
        hours=int(hours or 0),
        minutes=int(minutes or 0),
        seconds=int(seconds or 0),
    )
    return -delta if sign == "-" else delta


def _properties(block: list[str]) -> dict[str, tuple[dict[str, str], str]]:
    """The event's own properties (not those of a nested VALARM): name -> (params, value)."""
    props: dict[str, tuple[dict[str, str], str]] = {}
    depth = 0
    for line in block[1:-1]:
        upper = line[:6].upper()
        if upper == "BEGIN:":
            depth += 1
            continue
        if line[:4].upper() == "END:":
            depth -= 1
            continue
        if depth:
            continue
        colon = line.find(":")
        if colon <= 0 or '"' in line[:colon]:
            raise _Slow  # a broken line, or quoted parameters: the exact path reports it
        head, value = line[:colon], line[colon + 1 :]
        name, _, rest = head.partition(";")
        name = name.upper()
        if name in _SLOW_PROPS or name in props:
            raise _Slow
        params: dict[str, str] = {}
        if rest:
            for part in rest.split(";"):
                key, equals, param = part.partition("=")
                if not equals:
                    raise _Slow
                params[key.upper()] = param
        props[name] = (params, value)
    return props


def _occurrence(
    props: dict[str, tuple[dict[str, str], str]],
    *,
    calendar: str,
    zones: _Zones,
    floating: tzinfo,
) -> Occurrence | None:
    """The event as an Occurrence, None when it is cancelled; raises ``_Slow``."""
    if "DTSTART" not in props or "UID" not in props:
        raise _Slow  # the exact path warns about it, or derives a stable UID
    status = props.get("STATUS", ({}, ""))[1].strip().upper()
    if status == "CANCELLED":
        return None
    params, value = props["DTSTART"]
    start, all_day = _decode(value, params, zones, floating)
    if "DTEND" in props:
        if "DURATION" in props:
            raise _Slow
        params, value = props["DTEND"]
        end, _ = _decode(value, params, zones, floating)
    elif "DURATION" in props:
        end = start + _duration(props["DURATION"][1])
    else:
        end = start + (timedelta(days=1) if all_day else timedelta(0))
    if end < start or (all_day and end == start):
        end = start + (timedelta(days=1) if all_day else timedelta(0))
    texts = {name: _unescape(props[name][1]) if name in props else "" for name in _TEXT_PROPS}
    uid = props["UID"][1].strip()
    if not uid:
        raise _Slow
    return Occurrence(
        calendar=calendar,
        uid=uid,
        title=texts["SUMMARY"],
        start=start,
        end=end,
        all_day=all_day,
        location=texts["LOCATION"],
        description=texts["DESCRIPTION"],
    )


def fast_scan(text: str, *, calendar: str, zone: tzinfo) -> FastScan | None:
    """Decode the plain single events of ``text``; None when its structure is not clean."""
    lines = _unfold(text)
    if not any(line.upper() == "BEGIN:VCALENDAR" for line in lines[:50]):
        return None  # not (the start of) a calendar: the exact path says what is wrong
    blocks: list[list[str]] = []
    timezones: list[list[str]] = []
    wr_zone: str | None = None
    current: list[str] | None = None
    target: list[list[str]] = blocks
    depth = 0
    for line in lines:
        upper = line.upper()
        if current is None:
            if upper == "BEGIN:VEVENT" or upper == "BEGIN:VTIMEZONE":
                current, depth = [line], 1
                target = blocks if upper == "BEGIN:VEVENT" else timezones
            elif upper.startswith("X-WR-TIMEZONE:"):
                if wr_zone is not None:
                    return None  # several calendars with their own zones: exact path
                wr_zone = line.split(":", 1)[1].strip()
            elif upper.startswith("BEGIN:") and upper != "BEGIN:VCALENDAR":
                return None  # VTODO, VJOURNAL ...: leave the whole thing to icalendar
            continue
        current.append(line)
        if upper.startswith("BEGIN:"):
            if upper == "BEGIN:VEVENT" or upper == "BEGIN:VTIMEZONE":
                return None  # an unterminated block
            depth += 1
        elif upper.startswith("END:"):
            depth -= 1
            if depth == 0:
                target.append(current)
                current = None
    if current is not None:
        return None
    floating = zone
    if wr_zone:
        try:
            floating = ZoneInfo(wr_zone)
        except (ZoneInfoNotFoundError, ValueError):
            floating = zone
    zones = _Zones()
    decoded: list[tuple[list[str], str, Occurrence | None]] = []  # block, UID, result
    slow: list[list[str]] = []
    slow_uids: set[str] = set()
    for block in blocks:
        uid = next((line[4:].strip() for line in block if line[:4].upper() == "UID:"), "")
        try:
            props = _properties(block)
            occurrence = _occurrence(props, calendar=calendar, zones=zones, floating=floating)
        except (_Slow, ValueError, OverflowError):
            slow.append(block)
            slow_uids.add(uid)
            continue
        decoded.append((block, uid, occurrence))
    singles: list[Occurrence] = []
    for block, uid, occurrence in decoded:
        if uid in slow_uids:
            # The UID has a series or an override too: the exact path needs all its parts.
            slow.append(block)
        elif occurrence is not None:
            singles.append(occurrence)
    rest = None
    if slow:
        header = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//octopussy//fast pass//EN"]
        if wr_zone:
            header.append(f"X-WR-TIMEZONE:{wr_zone}")
        body = [line for block in (*timezones, *slow) for line in block]
        rest = "\r\n".join([*header, *body, "END:VCALENDAR"]) + "\r\n"
    return FastScan(singles=singles, rest=rest, count=len(blocks))
