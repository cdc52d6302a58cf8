"""The CalDAV backend (Nextcloud, iCloud, Fastmail, Radicale, ...): time-range queries.

    fetch(start, end) ─► thread ─► DAVClient (kept) ─► principal ─► calendars by name
                                 ─► REPORT time-range [start, end) per calendar (unexpanded)
                                 ─► each object's iCalendar text ─► parse_ics ─► between

Objects come back unexpanded (the master of a series plus its overrides) and are expanded
here by the same code as .ics files, so time zones, floating times and exceptions behave
identically for every backend. A parsed object is reused while its text is unchanged;
its warnings are therefore reported once. Every library or network error becomes
``BackendUnavailable`` (the watcher retries with backoff) with a hint where one helps.
The password may be ``keyring:SERVICE``: it is then looked up in the system keyring
under the configured username when the server is first contacted.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from datetime import datetime, tzinfo
from typing import Any

from octopussy.calendar.base import Fetched
from octopussy.calendar.ical import ParsedCalendar, parse_ics
from octopussy.errors import BackendUnavailable, ConfigError

KEYRING_PREFIX = "keyring:"


def resolve_password(password: str | None, username: str | None) -> str | None:
    """``keyring:SERVICE`` ─► the keyring's password for ``username``; anything else as is."""
    if password is None or not password.startswith(KEYRING_PREFIX):
        return password
    service = password[len(KEYRING_PREFIX) :].strip()
    if not username:
        raise ConfigError(
            "a keyring password needs a username",
            path="calendar_agent.username",
            hint="set username: to the account name stored in the keyring",
        )
    try:
        import keyring
        import keyring.errors
    except ImportError as exc:
        raise ConfigError(
            "password: keyring:... needs the keyring package", hint="pip install keyring"
        ) from exc
    try:
        secret = keyring.get_password(service, username)
    except keyring.errors.KeyringError as exc:
        raise ConfigError(
            f"the system keyring cannot be read ({exc})",
            path="calendar_agent.password",
            hint="use password: ${ENV_VAR} instead, or install a keyring backend",
        ) from exc
    if secret is None:
        raise ConfigError(
            f"no password for {username!r} in keyring service {service!r}",
            path="calendar_agent.password",
            hint=f"store it with: keyring set {service} {username}",
        )
    return secret


class CalDavBackend:
    """Watches the named calendars (all of them when none are named) of one account."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        username: str | None,
        password: str | None,
        calendars: list[str],
        zone: tzinfo,
        timeout: float = 30.0,
    ) -> None:
        self.name = name
        self.url = url
        self.username = username
        self.password = password
        self.calendar_names = calendars
        self.zone = zone
        self.timeout = timeout
        self._client: Any = None
        self._calendars: list[tuple[str, Any]] = []
        #: url -> (text, parsed, fetch number last seen): unchanged objects are not parsed
        #: (nor warned about) again; kept across windows (scans and /agenda differ).
        self._parsed: dict[str, tuple[str, ParsedCalendar, int]] = {}
        self._fetches = 0
        self._lock = threading.Lock()  # fetch (a thread) and close never overlap

    def _label(self, calendar_name: str) -> str:
        if len(self.calendar_names) == 1:
            return self.name
        return f"{self.name}/{calendar_name}"

    def _connect(self) -> None:
        from caldav.davclient import DAVClient

        client = DAVClient(
            url=self.url,
            username=self.username,
            password=resolve_password(self.password, self.username),
            timeout=int(self.timeout),
            # a full URL is given: no DNS service discovery (it would leave this host)
            enable_rfc6764="://" not in self.url,
        )
        calendars = client.principal().get_calendars()  # type: ignore[no-untyped-call]
        by_name: dict[str, Any] = {}
        for calendar in calendars:
            display = calendar.get_display_name() or str(calendar.url).rstrip("/").rsplit("/")[-1]
            by_name.setdefault(str(display), calendar)
        if self.calendar_names:
            missing = [n for n in self.calendar_names if n not in by_name]
            if missing:
                client.close()
                found = ", ".join(sorted(by_name)) or "none"
                raise ConfigError(
                    f"calendar {self.name!r}: no calendar named {missing[0]!r} at {self.url} "
                    f"(the server has: {found})",
                    hint="fix the names under calendars:",
                )
            chosen = [(n, by_name[n]) for n in self.calendar_names]
        else:
            chosen = sorted(by_name.items())
            if not chosen:
                client.close()
                raise ConfigError(
                    f"calendar {self.name!r}: the account at {self.url} has no calendars",
                    hint="create one on the server, or check url and username",
                )
        self._client, self._calendars = client, chosen

    def _fetch(self, start: datetime, end: datetime) -> Fetched:
        with self._lock:
            try:
                if self._client is None:
                    self._connect()
                return self._query(start, end)
            except ConfigError:
                raise
            except Exception as exc:
                self._drop()
                raise _unavailable(self.name, self.url, exc) from exc

    def _query(self, start: datetime, end: datetime) -> Fetched:
        fetched = Fetched()
        self._fetches += 1
        for calendar_name, calendar in self._calendars:
            label = self._label(calendar_name)
            for item in calendar.search(start=start, end=end, event=True, expand=False):
                key = str(item.url)
                text = item.data if isinstance(item.data, str) else item.data.decode()
                cached = self._parsed.get(key)
                if cached is None or cached[0] != text:
                    origin = f"{calendar_name}/{key.rstrip('/').rsplit('/', 1)[-1]}"
                    parsed = parse_ics(text, calendar=label, zone=self.zone, origin=origin)
                    fetched.warnings.extend(parsed.warnings)
                else:
                    parsed = cached[1]
                self._parsed[key] = (text, parsed, self._fetches)
                occurrences, warnings = parsed.between(start, end)
                fetched.occurrences.extend(occurrences)
                fetched.warnings.extend(warnings)
        # Forget objects not seen for a while (deleted, or long past): bounded memory.
        stale = [k for k, (_, _, seen) in self._parsed.items() if seen < self._fetches - 100]
        for key in stale:
            del self._parsed[key]
        fetched.occurrences.sort(key=lambda o: (o.start, o.uid))
        return fetched

    def _drop(self) -> None:
        client, self._client, self._calendars = self._client, None, []
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    async def fetch(self, start: datetime, end: datetime) -> Fetched:
        return await asyncio.to_thread(self._fetch, start, end)

    async def close(self) -> None:
        def close() -> None:
            with self._lock:
                self._drop()

        await asyncio.to_thread(close)


def _unavailable(name: str, url: str, exc: BaseException) -> BackendUnavailable:
    from caldav.lib import error

    if isinstance(exc, error.AuthorizationError):
        return BackendUnavailable(
            f"calendar {name!r}: {url} refused the login",
            url=url,
            hint="check username and password",
        )
    if isinstance(exc, error.NotFoundError):
        return BackendUnavailable(
            f"calendar {name!r}: {url} has no calendar there", url=url, hint="check url:"
        )
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return BackendUnavailable(f"calendar {name!r}: cannot reach {url} ({reason[:200]})", url=url)
