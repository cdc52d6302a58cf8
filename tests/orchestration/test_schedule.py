"""Schedules: intervals and cron, on a fixed clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from octopussy.errors import ConfigError
from octopussy.orchestration.schedule import Cron, Interval, next_run, parse_schedule

T0 = datetime(2026, 11, 22, 10, 7, 30, tzinfo=UTC)  # a Sunday


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("every 30 minutes", 1800), ("30m", 1800), ("every 2 hours", 7200), ("every day", 86400),
     ("every 1.5 h", 5400), ("every minute", 60)],
)  # fmt: skip
def test_intervals(text: str, seconds: float) -> None:
    schedule = parse_schedule(text)
    assert isinstance(schedule, Interval)
    assert next_run(schedule, T0) == T0 + timedelta(seconds=seconds)


def test_cron_every_15_minutes() -> None:
    schedule = parse_schedule("*/15 * * * *")
    assert isinstance(schedule, Cron)
    first = next_run(schedule, T0)
    assert first == T0.replace(minute=15, second=0)
    assert next_run(schedule, first) == T0.replace(minute=30, second=0)


def test_cron_weekdays_skip_the_weekend() -> None:
    schedule = parse_schedule("0 9 * * mon-fri")
    assert next_run(schedule, T0) == datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def test_cron_sunday_as_7_and_names() -> None:
    seven, sun = parse_schedule("0 8 * * 7"), parse_schedule("0 8 * * sun")
    assert isinstance(seven, Cron)
    assert isinstance(sun, Cron)
    assert seven.weekdays == sun.weekdays == frozenset({0})
    assert next_run(seven, T0) == datetime(2026, 11, 29, 8, 0, tzinfo=UTC)


def test_cron_aliases_and_month_rollover() -> None:
    monthly = parse_schedule("@monthly")
    assert next_run(monthly, T0) == datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
    assert next_run(parse_schedule("daily"), T0) == datetime(2026, 11, 23, tzinfo=UTC)
    leap = parse_schedule("0 0 29 2 *")
    assert next_run(leap, T0) == datetime(2028, 2, 29, tzinfo=UTC)


def test_cron_day_of_month_or_weekday() -> None:
    # Vixie rule: both restricted → either matches (the 1st, or any Monday)
    schedule = parse_schedule("0 12 1 * mon")
    assert next_run(schedule, T0) == datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "text", ["every 5 seconds", "61 * * * *", "* * * *", "soon", "5-1 * * * *", "*/0 * * * *"]
)
def test_bad_schedules_are_config_errors(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_schedule(text)
