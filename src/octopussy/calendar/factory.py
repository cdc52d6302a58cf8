"""Config ─► backends: one ``CalendarBackend`` and ``ReminderPolicy`` per watched calendar.

Nothing connects here: CalDAV and Google are reached on the first fetch, so a server that
is down at start is retried like any later outage. Their libraries are imported only when
such a calendar is configured (googleapiclient alone takes half a second to import).
"""

from __future__ import annotations

from datetime import tzinfo
from pathlib import Path
from typing import Any

from octopussy.calendar.base import CalendarBackend
from octopussy.calendar.ics import IcsBackend
from octopussy.calendar.text import local_zone
from octopussy.calendar.watcher import CalendarWatcher, ReminderPolicy
from octopussy.config import CalDavCalendar, CalendarAgentSettings, CalendarSource
from octopussy.store.base import Store


def _minutes(value: int | list[int]) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, list) else (value,)


def policy_for(
    source: CalendarSource,
    settings: CalendarAgentSettings,
    calendar: CalDavCalendar | None = None,
) -> ReminderPolicy:
    """The most specific reminders: a CalDAV calendar's, else the source's, else the agent's."""
    layers = [calendar, source] if calendar is not None else [source]

    def pick(key: str, default: Any) -> Any:
        for layer in layers:
            value = getattr(layer, key)
            if value is not None:
                return value
        return default

    return ReminderPolicy(
        minutes_before=_minutes(pick("notify_minutes_before", settings.notify_minutes_before)),
        all_day_at=pick("all_day_notify_time", settings.all_day_notify_time),
        all_day_days_before=pick("all_day_notify_days_before", settings.all_day_notify_days_before),
    )


def _calendar_names(source: CalendarSource) -> list[str]:
    return [c if isinstance(c, str) else c.name for c in source.calendars]


def build_backend(
    source: CalendarSource, *, zone: tzinfo, home: Path, only: str | None = None
) -> CalendarBackend:
    """The backend of one configured calendar (no I/O); ``only``: one CalDAV calendar."""
    name = source.label
    if source.backend == "local":
        assert source.local_ics_path is not None  # the config validated it
        return IcsBackend(name, source.local_ics_path, zone=zone)
    if source.backend == "caldav":
        from octopussy.calendar.caldav import CalDavBackend

        assert source.url is not None
        names = _calendar_names(source)
        if only is not None:
            # Same label as when the account is watched by one backend: keys stay stable.
            name = f"{name}/{only}" if len(names) > 1 else name
            names = [only]
        return CalDavBackend(
            name,
            source.url,
            username=source.username,
            password=source.password,
            calendars=names,
            zone=zone,
        )
    from octopussy.calendar.google import GoogleBackend

    token = source.google_token_path or home / f"google-token-{name}.json"
    return GoogleBackend(
        name,
        calendar_id=source.google_calendar_id,
        credentials_path=source.google_credentials_path,
        token_path=token,
        zone=zone,
    )


def build_calendars(
    settings: CalendarAgentSettings, *, zone: tzinfo, home: Path
) -> list[tuple[CalendarBackend, ReminderPolicy]]:
    """A (backend, policy) per watched calendar. A CalDAV account whose calendars have
    their own reminders gets one backend per calendar, each with its policy."""
    built: list[tuple[CalendarBackend, ReminderPolicy]] = []
    for source in settings.watched():
        own = [c for c in source.calendars if not isinstance(c, str)]
        if source.backend != "caldav" or not own:
            built.append(
                (build_backend(source, zone=zone, home=home), policy_for(source, settings))
            )
            continue
        for entry in source.calendars:
            calendar = None if isinstance(entry, str) else entry
            name = entry if isinstance(entry, str) else entry.name
            backend = build_backend(source, zone=zone, home=home, only=name)
            built.append((backend, policy_for(source, settings, calendar)))
    return built


def build_watcher(
    settings: CalendarAgentSettings, store: Store, *, home: Path, env_tz: str | None
) -> CalendarWatcher:
    """The watcher over every calendar of ``settings``, in the configured (or system) zone."""
    zone = local_zone(settings.timezone, env_tz=env_tz)
    return CalendarWatcher(
        build_calendars(settings, zone=zone, home=home),
        store,
        zone=zone,
        poll_interval=settings.poll_interval_seconds,
    )
