"""The seed's terminal formats and the one-line / JSON forms `serve` prints."""

from __future__ import annotations

import json

from octopussy.bus.messages import Message, MessageType
from octopussy.display import format_line, format_message, format_task, message_json
from octopussy.store.base import TaskRecord, TaskResult, TaskStatus


def msg(kind: MessageType, payload: dict[str, object], task_id: str | None = None) -> Message:
    return Message(type=kind, sender="x", recipient="coordinator", payload=payload, task_id=task_id)


def test_mail_block() -> None:
    text = format_message(
        msg(MessageType.MAIL_NOTIFICATION, {"sender": "a@b", "subject": "Hi", "summary": "S"})
    )
    assert text.splitlines() == ["[MAIL] From: a@b", "       Subject: Hi", "       Summary: S"]


def test_calendar_block_defaults() -> None:
    text = format_message(msg(MessageType.CALENDAR_NOTIFICATION, {"title": "Standup"}))
    assert text.splitlines()[0] == "[CALENDAR] Event: Standup"
    assert "           Location: Not specified" in text.splitlines()


def test_task_result_and_error() -> None:
    result = msg(
        MessageType.TASK_RESULT, {"result": "42", "response_number": 2}, "f3a9b1c2deadbeef"
    )
    assert format_message(result) == "[TASK RESULT] Task f3a9b1c2 (response #2):\n42"
    error = msg(MessageType.TASK_ERROR, {"error": "boom"}, "abc")
    assert format_message(error) == "[TASK ERROR] Task abc failed: boom"


def test_line_and_json() -> None:
    message = msg(MessageType.MAIL_NOTIFICATION, {"sender": "a", "subject": "s\nt", "summary": "u"})
    line = format_line(message)
    assert "\n" not in line
    assert line.startswith("[MAIL] From: a | Subject: s")
    data = json.loads(message_json(message))
    assert data["type"] == "mail_notification"
    assert data["payload"]["summary"] == "u"
    assert "T" in data["time"]


def test_assembly_progress_prints_quarters_once() -> None:
    from octopussy.display import assembly_progress

    lines: list[str] = []
    report = assembly_progress(lines.append)
    for done in range(0, 101, 5):
        report(done, 100)
    assert lines[0].startswith("Preparing the embedded model")
    assert lines[1:] == ["  25%", "  50%", "  75%", "  done"]


def test_a_task_view_shows_every_part_and_marks_a_question() -> None:
    task = TaskRecord(
        id="ab12",
        description="Which month is best?",
        status=TaskStatus.DONE,
        assigned_to="worker_1",
        prompt="Find the best month in sales.csv.",
        data={
            "question": True,
            "tool_calls": [{"name": "read_file", "arguments": {"path": "sales.csv"}}],
            "usage": {"requests": 2, "input_tokens": 10, "output_tokens": 3},
        },
    )
    results = [
        TaskResult("ab12", 1, "progress", "calling…", 0.0),
        TaskResult("ab12", 1, "result", "March", 0.0),
    ]
    lines = format_task(task, results)
    assert lines[0] == "Task ab12: done (worker_1)"
    assert lines[2:] == [
        "  asked:   Which month is best?",
        "  prompt:  Find the best month in sales.csv.",
        "  kind:    question (runs without the file-changing tools)",
        '  tool:    read_file {"path": "sales.csv"}',
        "  usage:   2 model call(s), 10 in / 3 out tokens",
        "  result #1: March",
    ]
    task.data.pop("question")
    assert not any(line.startswith("  kind:") for line in format_task(task, results))
