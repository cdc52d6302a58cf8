"""Durable state: the ``Store`` Protocol (``base``) and its backends."""

from octopussy.store.base import (
    EventRecord,
    ScheduleRecord,
    Store,
    TaskRecord,
    TaskResult,
    TaskStatus,
)

__all__ = ["EventRecord", "ScheduleRecord", "Store", "TaskRecord", "TaskResult", "TaskStatus"]
