"""Calendars: backends (.ics, CalDAV, Google) behind one Protocol, and the reminder watcher.

See ``base.py`` for the Protocol, ``ical.py`` for parsing and recurrence expansion and
``watcher.py`` for turning occurrences into reminders that are delivered exactly once.
"""
