"""`octopussy doctor` reads each configured calendar once and says what to fix."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from calfixtures import vcalendar, vevent, write
from octopussy.config import load_config
from octopussy.doctor import check_calendars


async def test_doctor_checks_every_calendar(tmp_path: Path) -> None:
    soon = (datetime.now(UTC) + timedelta(hours=2)).strftime("%Y%m%dT%H%M%SZ")
    good = write(tmp_path / "good.ics", vcalendar(vevent("a@test", "Soon", f"DTSTART:{soon}")))
    bad = write(
        tmp_path / "bad.ics",
        vcalendar(vevent("b@test", "Fine", f"DTSTART:{soon}"), vevent("c@test", "No start")),
    )
    config = tmp_path / "config.yaml"
    config.write_text(
        "calendar_agent:\n"
        f"  local_ics_path: {good}\n"
        "  timezone: Europe/Berlin\n"
        "  sources:\n"
        f"    - {{name: bad, local_ics_path: {bad}}}\n"
        f"    - {{name: gone, local_ics_path: {tmp_path / 'gone.ics'}}}\n"
        f"    - {{name: g, backend: google, google_credentials_path: {tmp_path / 'c.json'}}}\n"
    )
    loaded = load_config(config, env={"OCTOPUSSY_HOME": str(tmp_path / "home")}, cwd=tmp_path)
    checks = {check.name: check for check in await check_calendars(loaded)}
    assert checks["calendar local"].status == "OK"
    assert "1 event(s) in the next 24 h" in checks["calendar local"].detail
    assert "Europe/Berlin" in checks["calendar local"].detail
    assert checks["calendar bad"].status == "WARN"
    assert "'No start'" in checks["calendar bad"].detail
    assert checks["calendar gone"].status == "FAIL"
    assert "does not exist" in checks["calendar gone"].detail
    assert checks["calendar g"].status == "WARN"
    assert checks["calendar g"].fix is not None
    assert "octopussy agenda" in checks["calendar g"].fix
