"""Durable state: the ``Store`` Protocol (``base``) and its backends."""

from octopussy.store.base import EventRecord, Store, TaskRecord, TaskResult, TaskStatus

__all__ = ["EventRecord", "Store", "TaskRecord", "TaskResult", "TaskStatus"]
