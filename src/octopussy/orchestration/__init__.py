"""Orchestration: worker pool, schedules, guards (issue 4 onwards)."""
