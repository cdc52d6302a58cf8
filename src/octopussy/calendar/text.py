"""How occurrences read in the user's local time: notifications, ``/agenda``, the zone.

    Occurrence(start=2026-12-01T09:00Z) ─► "Tue 01 Dec 2026 10:00–11:00 CET (in 15 minutes)"

Pure functions except ``local_zone``, which looks at ``/etc/localtime`` once when no zone
is configured (the TZ variable comes in through the config's environment mapping).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from octopussy.calendar.base import Occurrence


def local_zone(name: str | None = None, *, env_tz: str | None = None) -> tzinfo:
    """The configured zone, else ``$TZ``, else the system's (``/etc/localtime``), else UTC.

    A real IANA zone, not a fixed offset: reminders across a DST change must be right.
    """
    for candidate in (name, (env_tz or "").lstrip(":") or None):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    localtime = Path("/etc/localtime")
    try:
        target = str(localtime.resolve())
        if "/zoneinfo/" in target:
            return ZoneInfo(target.split("/zoneinfo/", 1)[1])
        with localtime.open("rb") as handle:
            return ZoneInfo.from_file(handle, key="localtime")
    except (OSError, ValueError, ZoneInfoNotFoundError):
        return UTC


def relative(delta: timedelta) -> str:
    """'in 15 minutes', 'in 2 h 30 min', '3 days ago', 'now'."""
    seconds = delta.total_seconds()
    # Rounded: a reminder 30 minutes ahead is scanned a moment after its time, and should
    # not read "in 29 minutes".
    minutes = round(abs(seconds) / 60)
    if minutes == 0:
        return "now"
    if minutes < 60:
        text = f"{minutes} minute{'s' if minutes != 1 else ''}"
    elif minutes < 24 * 60:
        hours, rest = divmod(minutes, 60)
        text = f"{hours} h {rest} min" if rest else f"{hours} hour{'s' if hours != 1 else ''}"
    else:
        days = minutes // (24 * 60)
        text = f"{days} day{'s' if days != 1 else ''}"
    return f"{text} ago" if seconds < 0 else f"in {text}"


def when_text(occurrence: Occurrence, zone: tzinfo, now: datetime, *, late: bool = False) -> str:
    """The "When" of a notification, in the user's zone, with how far away it is."""
    start = occurrence.start.astimezone(zone)
    end = occurrence.end.astimezone(zone)
    if occurrence.all_day:
        last = (end - timedelta(days=1)).date() if end > start else start.date()
        span = f"{start:%a %d %b %Y}"
        if last != start.date():
            span = f"{start:%a %d %b} – {last:%a %d %b %Y}"
        text = f"{span}, all day"
    else:
        if end.date() == start.date():
            until = f"–{end:%H:%M}" if end > start else ""
            text = f"{start:%a %d %b %Y %H:%M}{until} {start:%Z}"
        else:
            text = f"{start:%a %d %b %Y %H:%M} – {end:%a %d %b %H:%M} {end:%Z}"
    if occurrence.start > now:
        text += f" ({relative(occurrence.start - now)})"
    elif not occurrence.all_day:
        text += f" (started {relative(occurrence.start - now)})"
    if late:
        text += " [late: the reminder was due while octopussy was not running]"
    return text


def agenda_lines(occurrences: list[Occurrence], zone: tzinfo, now: datetime) -> list[str]:
    """One line per occurrence, grouped under a heading per local day."""
    lines: list[str] = []
    day = None
    for occurrence in occurrences:
        start = occurrence.start.astimezone(zone)
        current = max(start, now.astimezone(zone)).date() if occurrence.all_day else start.date()
        if current != day:
            day = current
            lines.append(f"{day:%a %d %b %Y}")
        if occurrence.all_day:
            hours = "all day    "
        else:
            end = occurrence.end.astimezone(zone)
            until = f"{end:%H:%M}" if end.date() == start.date() else f"{end:%d %b %H:%M}"
            hours = f"{start:%H:%M}–{until}"
        where = f"  @ {occurrence.location}" if occurrence.location else ""
        title = occurrence.title or "Untitled"
        lines.append(f"  {hours}  {title}{where}  [{occurrence.calendar}]")
    return lines
