"""Config ─► backends: one ``CalendarBackend`` and ``ReminderPolicy`` per watched calendar.

Nothing connects here: CalDAV and Google are reached on the first fetch, so a server that
is down at start is retried like any later outage. Their libraries are imported only when
such a calendar is configured (googleapiclient alone takes half a second to import).
"""

from __future__ import annotations

from datetime import tzinfo
from pathlib import Path

from octopussy.calendar.base import CalendarBackend
from octopussy.calendar.ics import IcsBackend
from octopussy.calendar.text import local_zone
from octopussy.calendar.watcher import CalendarWatcher, ReminderPolicy
from octopussy.config import CalendarAgentSettings, CalendarSource
from octopussy.store.base import Store


def _minutes(value: int | list[int]) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, list) else (value,)


def policy_for(source: CalendarSource, settings: CalendarAgentSettings) -> ReminderPolicy:
    """The source's own reminders where it sets them, the agent's otherwise."""
    minutes = source.notify_minutes_before
    return ReminderPolicy(
        minutes_before=_minutes(settings.notify_minutes_before if minutes is None else minutes),
        all_day_at=source.all_day_notify_time or settings.all_day_notify_time,
        all_day_days_before=(
            settings.all_day_notify_days_before
            if source.all_day_notify_days_before is None
            else source.all_day_notify_days_before
        ),
    )


def build_backend(source: CalendarSource, *, zone: tzinfo, home: Path) -> CalendarBackend:
    """The backend of one configured calendar (no I/O)."""
    name = source.label
    if source.backend == "local":
        assert source.local_ics_path is not None  # the config validated it
        return IcsBackend(name, source.local_ics_path, zone=zone)
    if source.backend == "caldav":
        from octopussy.calendar.caldav import CalDavBackend

        assert source.url is not None
        return CalDavBackend(
            name,
            source.url,
            username=source.username,
            password=source.password,
            calendars=list(source.calendars),
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
    return [
        (build_backend(source, zone=zone, home=home), policy_for(source, settings))
        for source in settings.watched()
    ]


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
