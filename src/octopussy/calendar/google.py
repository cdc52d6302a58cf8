"""The Google Calendar backend: ``events.list`` over a window, instances expanded by Google.

    fetch(start, end) ─► thread ─► credentials: token file (0600) ─► refresh if expired
                                               └─ none yet: OAuth installed-app flow (browser)
                                 ─► build("calendar", "v3", static_discovery=True, http=...)
                                 ─► events.list(singleEvents, timeMin/timeMax), every page
                                 ─► items ─► Occurrence (all-day dates in the user's zone)

The Calendar v3 description ships inside ``google-api-python-client``: building the
service makes no network call. ``build()`` accepts either ``http`` or ``credentials``, not
both, so the credentials go into an ``AuthorizedHttp`` wrapped around a transport from
``http_factory``: that is the seam tests use to serve canned pages (and the token refresh
a 401 triggers) from ``HttpMockSequence``. 5xx and 429 answers are retried with backoff
through ``sleep`` (injectable); a 404 means the calendar id is wrong. The token is saved
with user-only permissions whenever it changes (first sign-in, refresh).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta, tzinfo
from datetime import time as dt_time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from octopussy.calendar.base import Fetched, Occurrence
from octopussy.errors import BackendUnavailable, ConfigError

log = logging.getLogger("octopussy.calendar.google")

SCOPES = ["https://www.googleapis.com/auth/calendar.readonly"]
PAGE_SIZE = 250
_RETRY_STATUS = {429, 500, 502, 503, 504}


def save_token(path: Path, credentials_json: str) -> None:
    """Write the token readable by the user only (also when the file already existed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(descriptor, 0o600)
        os.write(descriptor, credentials_json.encode())
    finally:
        os.close(descriptor)
    os.replace(temporary, path)


def _default_http() -> Any:
    import httplib2

    return httplib2.Http(timeout=30)


class GoogleBackend:
    """One Google calendar (``primary`` or an id such as ``xyz@group.calendar.google.com``)."""

    def __init__(
        self,
        name: str,
        *,
        calendar_id: str,
        credentials_path: Path | None,
        token_path: Path,
        zone: tzinfo,
        http_factory: Callable[[], Any] = _default_http,
        sleep: Callable[[float], None] = time.sleep,
        max_retries: int = 3,
        open_browser: bool = True,
    ) -> None:
        self.name = name
        self.calendar_id = calendar_id
        self.credentials_path = credentials_path.expanduser() if credentials_path else None
        self.token_path = token_path.expanduser()
        self.zone = zone
        self.http_factory = http_factory
        self.sleep = sleep
        self.max_retries = max_retries
        self.open_browser = open_browser
        self._credentials: Any = None
        self._service: Any = None
        self._saved_token: str | None = None
        self._lock = threading.Lock()
        #: "id|updated" of bad items already reported -> fetch number last seen (so a bad
        #: event is reported once, not on every poll; forgotten when long unseen).
        self._warned: dict[str, int] = {}
        self._fetches = 0

    # -- credentials ----------------------------------------------------------------------
    def _load_credentials(self) -> Any:
        from google.oauth2.credentials import Credentials

        credentials = None
        if self.token_path.is_file():
            try:
                credentials = Credentials.from_authorized_user_file(  # type: ignore[no-untyped-call]
                    str(self.token_path), SCOPES
                )
            except (ValueError, OSError, json.JSONDecodeError) as exc:
                raise ConfigError(
                    f"calendar {self.name!r}: the Google token {self.token_path} is unreadable "
                    f"({exc})",
                    hint="delete it to sign in again",
                ) from exc
            self._saved_token = credentials.to_json()
        if credentials is not None and credentials.expired and credentials.refresh_token:
            self._refresh(credentials)
        if credentials is None:
            credentials = self._sign_in()
        return credentials

    def _refresh(self, credentials: Any) -> None:
        import google.auth.exceptions
        import google_auth_httplib2

        try:
            credentials.refresh(google_auth_httplib2.Request(self.http_factory()))
        except google.auth.exceptions.RefreshError as exc:
            raise BackendUnavailable(
                f"calendar {self.name!r}: Google refused to refresh the token ({exc})",
                hint=f"delete {self.token_path} to sign in again",
            ) from exc
        self._store(credentials)

    def _sign_in(self) -> Any:
        """The installed-app OAuth flow: a browser page, a redirect to a loopback port."""
        if self.credentials_path is None or not self.credentials_path.is_file():
            where = self.credentials_path or "google_credentials_path"
            raise ConfigError(
                f"calendar {self.name!r}: not signed in to Google and no OAuth client file "
                f"at {where}",
                hint="download the 'Desktop app' OAuth client JSON from Google Cloud Console "
                "and set google_credentials_path (README: Google Calendar)",
            )
        from google_auth_oauthlib.flow import InstalledAppFlow

        flow = InstalledAppFlow.from_client_secrets_file(str(self.credentials_path), SCOPES)
        log.warning("calendar %s: signing in to Google: follow the link shown", self.name)
        try:
            # Bounded: an unattended `serve` must not wait forever for a browser.
            credentials = flow.run_local_server(
                host="localhost", port=0, open_browser=self.open_browser, timeout_seconds=300
            )
        except Exception as exc:
            raise BackendUnavailable(
                f"calendar {self.name!r}: Google sign-in was not completed ({exc!r})",
                hint="run `octopussy agenda` and finish the sign-in in the browser",
            ) from exc
        self._store(credentials)
        return credentials

    def _store(self, credentials: Any) -> None:
        token = credentials.to_json()
        if token != self._saved_token:
            save_token(self.token_path, token)
            self._saved_token = token

    def _service_for(self) -> Any:
        if self._service is None:
            import google_auth_httplib2
            from googleapiclient.discovery import build

            self._credentials = self._load_credentials()
            http = google_auth_httplib2.AuthorizedHttp(self._credentials, http=self.http_factory())
            self._service = build(
                "calendar", "v3", http=http, static_discovery=True, cache_discovery=False
            )
        return self._service

    # -- fetching -------------------------------------------------------------------------
    def _execute(self, request: Any) -> dict[str, Any]:
        import httplib2
        from googleapiclient.errors import HttpError

        attempt = 0
        while True:
            try:
                response: dict[str, Any] = request.execute(num_retries=0)
                return response
            except HttpError as exc:
                status = int(exc.resp.status)
                if status == 404:
                    raise ConfigError(
                        f"calendar {self.name!r}: Google has no calendar {self.calendar_id!r}",
                        hint="check google_calendar_id ('primary' is your own calendar)",
                    ) from exc
                if status in (401, 403):
                    raise BackendUnavailable(
                        f"calendar {self.name!r}: Google refused access (HTTP {status})",
                        hint=f"delete {self.token_path} to sign in again",
                    ) from exc
                if status not in _RETRY_STATUS or attempt >= self.max_retries:
                    raise BackendUnavailable(
                        f"calendar {self.name!r}: Google answered HTTP {status}"
                    ) from exc
            except (OSError, httplib2.HttpLib2Error) as exc:  # refused, DNS, timeout
                if attempt >= self.max_retries:
                    raise BackendUnavailable(
                        f"calendar {self.name!r}: cannot reach Google ({exc})"
                    ) from exc
            attempt += 1
            self.sleep(min(2.0**attempt, 30.0))

    def _fetch(self, start: datetime, end: datetime) -> Fetched:
        with self._lock:
            try:
                service = self._service_for()
                self._fetches += 1
                fetched = Fetched()
                page: str | None = None
                while True:
                    request = service.events().list(
                        calendarId=self.calendar_id,
                        timeMin=start.isoformat(),
                        timeMax=end.isoformat(),
                        singleEvents=True,
                        orderBy="startTime",
                        maxResults=PAGE_SIZE,
                        pageToken=page,
                    )
                    response = self._execute(request)
                    for item in response.get("items", []):
                        self._add(item, fetched)
                    page = response.get("nextPageToken")
                    if not page:
                        break
                if self._credentials is not None:
                    self._store(self._credentials)  # a 401 may have refreshed it
                for key in [k for k, seen in self._warned.items() if seen < self._fetches - 100]:
                    del self._warned[key]
            except (ConfigError, BackendUnavailable):
                self._service = None
                raise
            except Exception as exc:
                self._service = None
                raise BackendUnavailable(
                    f"calendar {self.name!r}: Google Calendar failed ({type(exc).__name__}: {exc})"
                ) from exc
        fetched.occurrences.sort(key=lambda o: (o.start, o.uid))
        return fetched

    def _add(self, item: dict[str, Any], fetched: Fetched) -> None:
        if item.get("status") == "cancelled":
            return
        try:
            fetched.occurrences.append(self._occurrence(item))
        except (KeyError, ValueError, TypeError) as exc:
            key = f"{item.get('id')}|{item.get('updated')}"
            new = key not in self._warned
            self._warned[key] = self._fetches
            if new:
                summary = item.get("summary") or item.get("id") or "?"
                fetched.warnings.append(
                    f"event {summary!r} (id {item.get('id')}): {exc!r}; skipped"
                )

    def _occurrence(self, item: dict[str, Any]) -> Occurrence:
        start, all_day = self._moment(item["start"])
        end, _ = self._moment(item.get("end") or item["start"])
        if all_day and end <= start:
            end = start + timedelta(days=1)
        return Occurrence(
            calendar=self.name,
            uid=str(item.get("iCalUID") or item["id"]),
            title=str(item.get("summary", "")),
            start=start,
            end=max(end, start),
            all_day=all_day,
            location=str(item.get("location", "")),
            description=str(item.get("description", "")),
        )

    def _moment(self, value: dict[str, Any]) -> tuple[datetime, bool]:
        if "dateTime" in value:
            moment = datetime.fromisoformat(value["dateTime"])
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=self._zone_named(value.get("timeZone")))
            return moment, False
        day = date.fromisoformat(value["date"])
        return datetime.combine(day, dt_time(0), self.zone), True

    def _zone_named(self, name: str | None) -> tzinfo:
        try:
            return ZoneInfo(name) if name else self.zone
        except (ZoneInfoNotFoundError, ValueError):
            return self.zone

    async def fetch(self, start: datetime, end: datetime) -> Fetched:
        return await asyncio.to_thread(self._fetch, start, end)

    async def close(self) -> None:
        self._service = None
