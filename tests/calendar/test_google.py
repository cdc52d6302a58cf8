"""Google Calendar offline: the real client library, the bundled v3 description
(``static_discovery``) and ``HttpMockSequence`` serving canned ``events.list`` pages,
a 401 that makes the client refresh its token, a 404 and 5xx answers that are retried."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse
from zoneinfo import ZoneInfo

import pytest
from googleapiclient.http import HttpMockSequence

from octopussy.calendar.google import GoogleBackend
from octopussy.errors import BackendUnavailable, ConfigError

BERLIN = ZoneInfo("Europe/Berlin")
START = datetime(2026, 12, 1, tzinfo=UTC)
END = datetime(2026, 12, 8, tzinfo=UTC)


class RecordingHttp(HttpMockSequence):  # type: ignore[misc]
    """Serves the canned answers in order and remembers every request."""

    def __init__(self, answers: list[tuple[dict[str, str], str]]) -> None:
        super().__init__(answers)
        self.calls: list[tuple[str, str, dict[str, str]]] = []

    def request(
        self, uri: str, method: str = "GET", body: Any = None, headers: Any = None, **kw: Any
    ) -> Any:
        self.calls.append((method, uri, dict(headers or {})))
        return super().request(uri, method, body, headers, **kw)


def page(items: list[dict[str, Any]], next_token: str | None = None) -> tuple[dict[str, str], str]:
    body: dict[str, Any] = {"kind": "calendar#events", "timeZone": "Europe/Berlin", "items": items}
    if next_token:
        body["nextPageToken"] = next_token
    return {"status": "200", "content-type": "application/json"}, json.dumps(body)


def error(status: int) -> tuple[dict[str, str], str]:
    body = {"error": {"code": status, "message": f"status {status}", "errors": []}}
    return {"status": str(status), "content-type": "application/json"}, json.dumps(body)


def timed(ident: str, summary: str, start: str, end: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": ident,
        "iCalUID": f"{ident}@google.com",
        "summary": summary,
        "start": {"dateTime": start},
        "end": {"dateTime": end},
        **extra,
    }


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def token(tmp_path: Path) -> Path:
    path = tmp_path / "token.json"
    path.write_text(
        json.dumps(
            {
                "token": "old-access-token",
                "refresh_token": "the-refresh-token",
                "client_id": "client.apps.googleusercontent.com",
                "client_secret": "client-secret",
                "token_uri": "https://oauth2.googleapis.com/token",
                "scopes": ["https://www.googleapis.com/auth/calendar.readonly"],
                "expiry": "2099-01-01T00:00:00Z",
            }
        )
    )
    path.chmod(0o644)
    return path


def backend(token: Path, http: RecordingHttp, sleeps: list[float] | None = None) -> GoogleBackend:
    record = sleeps if sleeps is not None else []
    return GoogleBackend(
        "google",
        calendar_id="primary",
        credentials_path=None,
        token_path=token,
        zone=BERLIN,
        http_factory=lambda: http,
        sleep=record.append,
    )


def events_calls(http: RecordingHttp) -> list[dict[str, list[str]]]:
    return [parse_qs(urlparse(uri).query) for _, uri, _ in http.calls if "/events" in uri]


async def test_every_page_is_read(token: Path) -> None:
    http = RecordingHttp(
        [
            page(
                [
                    timed(
                        "a",
                        "Planning",
                        "2026-12-01T10:00:00+01:00",
                        "2026-12-01T11:00:00+01:00",
                        location="Room 1",
                        description="Agenda attached",
                    ),
                    {"id": "gone", "status": "cancelled"},
                ],
                next_token="page-2",
            ),
            page(
                [
                    {
                        "id": "h",
                        "summary": "Holiday",
                        "start": {"date": "2026-12-03"},
                        "end": {"date": "2026-12-04"},
                    },
                    timed(
                        "r_20261204",
                        "Weekly",
                        "2026-12-04T09:00:00-05:00",
                        "2026-12-04T09:30:00-05:00",
                    ),
                ]
            ),
        ]
    )
    fetched = await backend(token, http).fetch(START, END)
    assert [(o.title, o.start.isoformat()) for o in fetched.occurrences] == [
        ("Planning", "2026-12-01T10:00:00+01:00"),
        ("Holiday", "2026-12-03T00:00:00+01:00"),  # all-day: local midnight
        ("Weekly", "2026-12-04T09:00:00-05:00"),
    ]
    planning = fetched.occurrences[0]
    assert planning.uid == "a@google.com"
    assert (planning.location, planning.description) == ("Room 1", "Agenda attached")
    assert fetched.occurrences[1].all_day
    first, second = events_calls(http)
    assert first["singleEvents"] == ["true"]
    assert first["timeMin"] == [START.isoformat()]
    assert "pageToken" not in first
    assert second["pageToken"] == ["page-2"]


async def test_a_401_refreshes_the_token_and_stores_it_user_only(token: Path) -> None:
    http = RecordingHttp(
        [
            error(401),
            (
                {"status": "200"},
                json.dumps({"access_token": "new-access-token", "expires_in": 3600}),
            ),
            page([timed("a", "After refresh", "2026-12-01T10:00:00Z", "2026-12-01T11:00:00Z")]),
        ]
    )
    fetched = await backend(token, http).fetch(START, END)
    assert [o.title for o in fetched.occurrences] == ["After refresh"]
    methods = [(method, urlparse(uri).path) for method, uri, _ in http.calls]
    assert methods[1] == ("POST", "/token")
    assert http.calls[0][2]["authorization"] == "Bearer old-access-token"
    assert http.calls[2][2]["authorization"] == "Bearer new-access-token"
    saved = read_json(token)
    assert saved["token"] == "new-access-token"
    assert saved["refresh_token"] == "the-refresh-token"
    assert mode(token) == 0o600


async def test_an_expired_token_is_refreshed_before_the_first_call(token: Path) -> None:
    write_json(token, {**read_json(token), "expiry": "2020-01-01T00:00:00Z"})
    http = RecordingHttp(
        [
            ({"status": "200"}, json.dumps({"access_token": "fresh-token", "expires_in": 3600})),
            page([]),
        ]
    )
    fetched = await backend(token, http).fetch(START, END)
    assert fetched.occurrences == []
    assert urlparse(http.calls[0][1]).path == "/token"
    assert http.calls[1][2]["authorization"] == "Bearer fresh-token"
    assert read_json(token)["token"] == "fresh-token"
    assert mode(token) == 0o600


async def test_404_names_the_calendar_id(token: Path) -> None:
    http = RecordingHttp([error(404)])
    with pytest.raises(ConfigError, match="google_calendar_id") as info:
        await backend(token, http).fetch(START, END)
    assert "'primary'" in str(info.value)


async def test_5xx_is_retried_with_backoff(token: Path) -> None:
    sleeps: list[float] = []
    http = RecordingHttp(
        [
            error(500),
            error(503),
            page([timed("a", "Third time", "2026-12-01T10:00:00Z", "2026-12-01T10:30:00Z")]),
        ]
    )
    fetched = await backend(token, http, sleeps).fetch(START, END)
    assert [o.title for o in fetched.occurrences] == ["Third time"]
    assert sleeps == [2.0, 4.0]
    assert len(events_calls(http)) == 3


async def test_persistent_5xx_becomes_unavailable(token: Path) -> None:
    sleeps: list[float] = []
    http = RecordingHttp([error(500)] * 4)
    with pytest.raises(BackendUnavailable, match="HTTP 500"):
        await backend(token, http, sleeps).fetch(START, END)
    assert sleeps == [2.0, 4.0, 8.0]


async def test_bad_item_is_skipped_with_a_warning(token: Path) -> None:
    http = RecordingHttp(
        [
            page(
                [
                    {"id": "x", "summary": "No start at all"},
                    {"id": "y", "summary": "Bad date", "start": {"dateTime": "tomorrow"}},
                    timed("ok", "Fine", "2026-12-01T10:00:00Z", "2026-12-01T10:30:00Z"),
                ]
            )
        ]
    )
    fetched = await backend(token, http).fetch(START, END)
    assert [o.title for o in fetched.occurrences] == ["Fine"]
    assert len(fetched.warnings) == 2
    assert "'No start at all'" in fetched.warnings[0]
    assert "'Bad date'" in fetched.warnings[1]


async def test_not_signed_in_and_no_client_file_is_a_clear_error(tmp_path: Path) -> None:
    google = GoogleBackend(
        "google",
        calendar_id="primary",
        credentials_path=tmp_path / "credentials.json",
        token_path=tmp_path / "token.json",
        zone=BERLIN,
        http_factory=lambda: RecordingHttp([]),
    )
    with pytest.raises(ConfigError, match="not signed in to Google") as info:
        await google.fetch(START, END)
    assert "google_credentials_path" in str(info.value)


class RefusingHttp(RecordingHttp):
    """A transport whose every request fails to connect (the network is down)."""

    def request(self, uri: str, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(("GET", uri, {}))
        raise ConnectionRefusedError(111, "Connection refused")


async def test_unreachable_google_is_retried_then_unavailable(token: Path) -> None:
    sleeps: list[float] = []
    http = RefusingHttp([])
    with pytest.raises(BackendUnavailable, match="cannot reach Google"):
        await backend(token, http, sleeps).fetch(START, END)
    assert sleeps == [2.0, 4.0, 8.0]
    assert len(http.calls) == 4


async def test_a_bad_item_is_reported_once_across_polls(token: Path) -> None:
    bad = {"id": "x", "summary": "No start", "updated": "2026-11-30T10:00:00Z"}
    http = RecordingHttp([page([bad]), page([bad]), page([{**bad, "updated": "2026-12-01"}])])
    google = backend(token, http)
    assert len((await google.fetch(START, END)).warnings) == 1
    assert (await google.fetch(START, END)).warnings == []
    assert len((await google.fetch(START, END)).warnings) == 1  # edited: reported again


async def test_first_use_signs_in_and_stores_the_token_user_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No token yet: the installed-app flow runs (its browser step replaced here) and its
    credentials are stored 0600 before the first request."""
    from google.oauth2.credentials import Credentials
    from google_auth_oauthlib.flow import InstalledAppFlow

    client = tmp_path / "client.json"
    write_json(
        client,
        {
            "installed": {
                "client_id": "client.apps.googleusercontent.com",
                "client_secret": "client-secret",
                "auth_uri": "https://accounts.google.com/o/oauth2/auth",
                "token_uri": "https://oauth2.googleapis.com/token",
                "redirect_uris": ["http://localhost"],
            }
        },
    )
    asked: list[dict[str, Any]] = []

    def run_local_server(self: InstalledAppFlow, **kwargs: Any) -> Credentials:
        asked.append({"scopes": list(self.oauth2session.scope), **kwargs})
        return Credentials(
            token="signed-in-token",
            refresh_token="refresh",
            token_uri="https://oauth2.googleapis.com/token",
            client_id="client.apps.googleusercontent.com",
            client_secret="client-secret",
            scopes=self.oauth2session.scope,
        )

    monkeypatch.setattr(InstalledAppFlow, "run_local_server", run_local_server)
    token = tmp_path / "state" / "token.json"
    http = RecordingHttp([page([])])
    google = GoogleBackend(
        "google",
        calendar_id="primary",
        credentials_path=client,
        token_path=token,
        zone=BERLIN,
        http_factory=lambda: http,
    )
    await google.fetch(START, END)
    assert asked == [
        {
            "scopes": ["https://www.googleapis.com/auth/calendar.readonly"],
            "host": "localhost",
            "port": 0,
            "open_browser": True,
            "timeout_seconds": 300,
        }
    ]
    assert read_json(token)["token"] == "signed-in-token"
    assert mode(token) == 0o600
    assert http.calls[0][2]["authorization"] == "Bearer signed-in-token"
