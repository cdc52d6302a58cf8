"""The local backend: one .ics file, or a folder of them, re-read only when changed.

    local_ics_path ─► [file.ics, ...] ─► stat: (mtime_ns, size) unchanged? ─► cached parse
                                                        changed ──────────► parse_ics (thread)

Each file's ``ParsedCalendar`` is kept with the ``(mtime_ns, size)`` it was read at, so a
scan over an unchanged calendar costs only the stat calls and the window query. Warnings
about bad events are returned once per version of a file. A file that disappears drops its
events; a missing path is a ``BackendUnavailable`` (retried: it may be a mount that comes
back), not a crash.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path

from octopussy.calendar.base import Fetched
from octopussy.calendar.ical import ParsedCalendar, parse_ics
from octopussy.errors import BackendUnavailable


@dataclass(slots=True)
class _Cached:
    version: tuple[int, int]
    parsed: ParsedCalendar


class IcsBackend:
    """Reads ``path`` (a file, or every ``*.ics`` in a folder, not recursive)."""

    def __init__(self, name: str, path: Path, *, zone: tzinfo) -> None:
        self.name = name
        self.path = path.expanduser()
        self.zone = zone
        self._cache: dict[Path, _Cached] = {}
        #: How many times a file was (re)parsed; tests check "re-read only when changed".
        self.parses = 0
        self._lock = threading.Lock()  # a scan and an /agenda may fetch at the same time

    def _files(self) -> list[Path]:
        if self.path.is_dir():
            return sorted(p for p in self.path.iterdir() if p.suffix.lower() == ".ics")
        if self.path.is_file():
            return [self.path]
        raise BackendUnavailable(
            f"calendar {self.name!r}: {self.path} does not exist",
            hint="check calendar_agent local_ics_path",
        )

    def _refresh(self) -> list[str]:
        """Re-parse what changed; returns the new warnings."""
        warnings: list[str] = []
        files = self._files()
        for stale in set(self._cache) - set(files):
            del self._cache[stale]
        for file in files:
            try:
                stat = file.stat()
            except FileNotFoundError:
                self._cache.pop(file, None)
                continue
            version = (stat.st_mtime_ns, stat.st_size)
            cached = self._cache.get(file)
            if cached is not None and cached.version == version:
                continue
            try:
                text = file.read_bytes().decode("utf-8", errors="replace")
            except OSError as exc:
                raise BackendUnavailable(
                    f"calendar {self.name!r}: cannot read {file} ({exc.strerror})"
                ) from exc
            parsed = parse_ics(text, calendar=self.name, zone=self.zone, origin=file.name)
            self.parses += 1
            self._cache[file] = _Cached(version, parsed)
            warnings.extend(parsed.warnings)
        return warnings

    def _fetch(self, start: datetime, end: datetime) -> Fetched:
        with self._lock:
            return self._fetch_locked(start, end)

    def _fetch_locked(self, start: datetime, end: datetime) -> Fetched:
        fetched = Fetched(warnings=self._refresh())
        for cached in self._cache.values():
            occurrences, warnings = cached.parsed.between(start, end)
            fetched.occurrences.extend(occurrences)
            fetched.warnings.extend(warnings)
        fetched.occurrences.sort(key=lambda o: (o.start, o.uid))
        return fetched

    async def fetch(self, start: datetime, end: datetime) -> Fetched:
        return await asyncio.to_thread(self._fetch, start, end)

    def _clear(self) -> None:
        with self._lock:
            self._cache.clear()

    async def close(self) -> None:
        await asyncio.to_thread(self._clear)  # a fetch may still hold the lock
