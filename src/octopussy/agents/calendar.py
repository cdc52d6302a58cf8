"""The calendar agent: announces upcoming events to the coordinator, each reminder once.

    CalendarWatcher.scan(clock()) ─► Reminder ─► CALENDAR_NOTIFICATION ─► coordinator
          ▲   (poll, retry, claim)   Notice   ─► AGENT_NOTIFICATION [CALENDAR]   (shows it,
          └── sleep until the next poll, retry or reminder moment                stores it)

The agent owns no calendar logic: the watcher decides what is due (and remembers what was
delivered in the store); this class turns that into bus messages in the user's local
time and sleeps until the next thing can happen, so a reminder is punctual even with a
long poll interval. ``poll_once`` is the whole step, which tests drive on a fake clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, tzinfo

from octopussy.agents.base import Agent
from octopussy.bus.base import MessageBus
from octopussy.bus.messages import Message, MessageType
from octopussy.calendar.base import Clock, system_clock
from octopussy.calendar.text import agenda_lines, when_text
from octopussy.calendar.watcher import CalendarWatcher, Reminder
from octopussy.store.base import Store

CALENDAR_AGENT = "calendar_agent"
MAX_DESCRIPTION = 1000


class CalendarAgent(Agent):
    kind = "calendar"

    def __init__(
        self,
        *,
        bus: MessageBus,
        watcher: CalendarWatcher,
        zone: tzinfo,
        store: Store | None = None,
        clock: Clock = system_clock,
        recipient: str = "coordinator",
        agenda_days: int = 7,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__(CALENDAR_AGENT, bus=bus, store=store)
        self.watcher = watcher
        self.zone = zone
        self.clock = clock
        self.recipient = recipient
        self.agenda_days = agenda_days
        self._sleep = sleep

    async def handle(self, message: Message) -> None:
        self.log.debug("calendar agent ignores %s", message.type.value)

    def payload(self, reminder: Reminder, now: datetime) -> dict[str, object]:
        """The CALENDAR_NOTIFICATION payload: the seed's four keys plus the details."""
        occurrence = reminder.occurrence
        description = occurrence.description
        if len(description) > MAX_DESCRIPTION:
            description = description[:MAX_DESCRIPTION] + " […]"
        return {
            "title": occurrence.title or "Untitled",
            "start_time": when_text(occurrence, self.zone, now, late=reminder.late),
            "location": occurrence.location or "Not specified",
            "description": description,
            "calendar": occurrence.calendar,
            "uid": occurrence.uid,
            "start": occurrence.start.isoformat(),
            "end": occurrence.end.isoformat(),
            "all_day": occurrence.all_day,
            "reminder": reminder.reminder,
            "late": reminder.late,
        }

    async def poll_once(self) -> list[Message]:
        """One scan: send every due reminder and every notice; returns what was sent."""
        scan = await self.watcher.scan(self.clock())
        now = self.clock()
        sent: list[Message] = []
        for notice in scan.notices:
            if notice.level == "warning":
                self.log.warning("%s", notice.text)
            else:
                self.log.info("%s", notice.text)
            sent.append(
                await self.send(
                    self.recipient,
                    MessageType.AGENT_NOTIFICATION,
                    {"text": notice.text, "label": "CALENDAR"},
                )
            )
        for reminder in scan.reminders:
            occurrence = reminder.occurrence
            self.log.info(
                "reminder %s for %r at %s%s",
                reminder.reminder,
                occurrence.title,
                occurrence.start.astimezone(self.zone).isoformat(),
                " (late)" if reminder.late else "",
            )
            sent.append(
                await self.send(
                    self.recipient,
                    MessageType.CALENDAR_NOTIFICATION,
                    self.payload(reminder, now),
                )
            )
        return sent

    async def background(self) -> None:
        try:
            while True:
                await self.poll_once()
                now = self.clock()
                wait = (self.watcher.next_wakeup(now) - now).total_seconds()
                # At least a second (no busy loop on a moment that just passed), at most
                # one poll interval (a clock jump or a suspended laptop is caught up).
                await self._sleep(min(max(wait, 1.0), self.watcher.poll_interval.total_seconds()))
        finally:
            await self.watcher.close()

    async def agenda(self, days: int | None = None) -> list[str]:
        """The next ``days`` days (default ``agenda_days``) as lines for the REPL."""
        days = days or self.agenda_days
        now = self.clock()
        agenda = await self.watcher.agenda(now, now + timedelta(days=days))
        lines = agenda_lines(agenda.occurrences, self.zone, now)
        if not agenda.occurrences:
            lines = [f"nothing in the next {days} day(s)"]
        lines += [f"(could not read {problem})" for problem in agenda.unreadable]
        return lines + [f"(skipped: {warning})" for warning in agenda.skipped]
