"""The worker: runs one task at a time through the ReAct loop and reports on the bus.

    run_task(task or id) ──► store: claim_task (RUNNING, assigned_to=name; a missing or
        │                      finished task is skipped: nothing runs, nothing is sent)
        │  long-term memory of the role: recall(task.description) ──► notes (task data
        │      "recalled"), appended to the identity as "Notes from earlier tasks ..."
        │  ShortTermMemory(identity [+ notes], task.prompt or task.description)
        │  a question task (data "question") runs without ``question_withholds``
        ▼
    react(...) ─┬─ ToolCallStep   ──► result "progress" + task data "tool_calls", "usage"
                │                     (one transaction), TASK_PROGRESS "calling tool X with {…}"
                ├─ ToolResultStep ──► is_error of the call, in memory (stored with the next write);
                │                     file lines read, for citing them (agents/sources.py)
                ├─ ModelStep      ──► usage summed, in memory (stored with the next write)
                └─ FinalAnswer    ──► a quoted file line gets "(from FILE, line N)" added;
                                      finish_task: result "result", status DONE, task data (one
                                      transaction); TASK_RESULT {result, response_number,
                                      partial}; then, unless partial,
                                      "Task: … Result: …" stored in long-term memory
    BackendUnavailable / any error ──► finish_task: result "error", status FAILED; TASK_ERROR
    cancelled by the user          ──► status CANCELLED, TASK_ERROR "cancelled by the user",
                                      then the cancellation propagates
    cancelled for shutdown         ──► status QUEUED again (no message), then propagates

Store writes per task: the claim, one per tool call, the finish. The tool calls so far go
with each progress row, so a task view shows them while the task runs and a crash leaves
them behind (the is_error of the last call and the latest usage come with the finish).

``run_task`` never raises except ``CancelledError``: a failing model, tool, bus or store
is reported and recorded, and the worker stays usable for the next task. The pool calls
``run_task`` directly; ``handle`` makes the same work available over the bus
(``ASSIGN_TASK`` with the task id in ``message.task_id``).

Shutdown vs. user cancellation: the pool calls :meth:`Worker.request_shutdown` before it
cancels a run when the process is stopping. Such a task is put back to ``QUEUED`` so the
next start resumes it (``WorkerPool.resume``); nobody is told it failed, because it did not.

Long-term memory belongs to the *role*, not to the worker: the pool drops idle workers, and
the next worker of the role recalls what earlier ones stored. Only complete answers are
stored: a partial answer (steps ran out) is the loop's best-effort excerpt, often unfinished
or wrong, and a later task should not build on it. Notes go into the system message, not
after the task: identity stays first and survives compaction, the task stays the last word
the model reads, and nothing needs a second system message (some chat templates refuse
one). Memory never fails a task (``TaskNotes`` logs once and switches itself off).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Mapping
from dataclasses import replace
from typing import Any

from octopussy.agents.base import Agent
from octopussy.agents.react import (
    FinalAnswer,
    ModelStep,
    ToolCallStep,
    ToolResultLike,
    ToolResultStep,
    ToolSource,
    react,
)
from octopussy.agents.sources import Sources
from octopussy.bus.base import MessageBus
from octopussy.bus.messages import Message, MessageType
from octopussy.errors import BackendUnavailable, ToolError
from octopussy.llm.base import Model, ToolSpec, Usage
from octopussy.memory.notes import TaskNotes, notes_message
from octopussy.memory.shortterm import ShortTermMemory
from octopussy.store.base import Store, TaskRecord, TaskStatus

__all__ = ["CANCELLED_TEXT", "DEFAULT_BUDGET_TOKENS", "Worker"]

#: The TASK_ERROR text sent when the user cancels a running task.
CANCELLED_TEXT = "cancelled by the user"
#: Short-term memory budget per task (estimated tokens).
DEFAULT_BUDGET_TOKENS = 6_000
#: How long one progress line may get (characters).
_PROGRESS_CHARS = 200
#: How much of a tool call's arguments is kept in task data (characters of JSON).
_ARGUMENT_CHARS = 500


def _default_identity(name: str, role: str) -> str:
    # Each sentence was measured on the embedded model (benchmarks/bench_tasks.py); the last
    # one stops it from reading a file it was asked to create, and giving up on the error.
    return (
        f"You are {name}, a {role} agent of Octopussy. Complete the task you are given, "
        "using the available tools when they help; work on the files in the workspace with "
        "relative paths. To change part of a file use edit_file (replace_all=true for every "
        "occurrence); to add lines at its end use write_file with append=true. "
        "To answer a question about a file, read it once, then answer; "
        "compute sums, averages, maxima and counts with execute_python: it runs Python 3 "
        "in the workspace, so open files by name (csv.DictReader for CSV, json.load for "
        "JSON) and print the result. When you are done, give the final answer in one or two "
        "sentences: what you did, and the values, numbers or file contents the task asked "
        "for. Begin with the task's first step: to create a file, call write_file."
    )


def _task_text(task: TaskRecord) -> str:
    """What memory is keyed on: the user's words (the optimized prompt only if none)."""
    return task.description.strip() or task.prompt or ""


def _short(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: max(0, limit - 1)] + "…"


class Withheld:
    """``tools`` without ``names``: what a question task runs with (see
    ``octopussy.orchestration.questions``). A call of a withheld tool is refused with a
    reason the model can act on."""

    def __init__(self, tools: ToolSource, names: frozenset[str]) -> None:
        self.tools = tools
        self.names = names

    def tool_specs(self) -> list[ToolSpec]:
        return [spec for spec in self.tools.tool_specs() if spec.name not in self.names]

    async def call(self, name: str, arguments: Mapping[str, Any]) -> ToolResultLike:
        if name in self.names:
            raise ToolError(
                f"{name} is not available for this task: the user asked a question, so "
                "answer it without changing any file"
            )
        return await self.tools.call(name, arguments)


class Worker(Agent):
    """Runs tasks with a model and a tool source; reports to ``report_to``."""

    kind = "worker"

    def __init__(
        self,
        name: str,
        *,
        bus: MessageBus,
        store: Store,
        model: Model,
        tools: ToolSource,
        role: str = "worker",
        max_steps: int = 10,
        identity: str | None = None,
        report_to: str = "coordinator",
        budget_tokens: int = DEFAULT_BUDGET_TOKENS,
        long_term: TaskNotes | None = None,
        question_withholds: frozenset[str] = frozenset(),
    ) -> None:
        super().__init__(name, bus=bus, store=store)
        self.task_store: Store = store
        self.model = model
        self.tools = tools
        self.role = role
        self.max_steps = max_steps
        self.identity = identity or _default_identity(name, role)
        self.report_to = report_to
        self.budget_tokens = budget_tokens
        #: The role's long-term memory, shared with every worker of the role (None: off).
        self.long_term = long_term
        #: Tools a question task (task data ``"question": true``) runs without.
        self.question_withholds = question_withholds
        self.current_task: str | None = None
        self.tasks_run = 0
        self._shutdown = False

    def request_shutdown(self) -> None:
        """The next cancellation of a run means "process stopping", not "user cancelled"."""
        self._shutdown = True

    # -- the bus entry point

    async def handle(self, message: Message) -> None:
        """Run the task an ``ASSIGN_TASK`` names (loaded from the store, created if new)."""
        if message.type is not MessageType.ASSIGN_TASK:
            self.log.debug("ignoring %s from %s", message.type, message.sender)
            return
        raw_id = message.task_id or message.payload.get("task_id")
        task_id = str(raw_id) if raw_id else uuid.uuid4().hex
        if await self.task_store.get_task(task_id) is None:
            description = str(message.payload.get("description", ""))
            prompt = message.payload.get("prompt")
            task = TaskRecord(
                id=task_id,
                description=description,
                created_at=time.time(),
                prompt=str(prompt) if prompt else None,
            )
            await self.task_store.add_task(task)
        await self.run_task(task_id)  # a finished task is not claimed, so not run again

    # -- running one task

    async def run_task(self, task: TaskRecord | str) -> None:
        """Claim ``task`` (a record or an id) and run it to an end state; a task that is not
        in the store or already finished is skipped. Never raises except ``CancelledError``."""
        task_id = task if isinstance(task, str) else task.id
        self.current_task = task_id
        usage = Usage()
        tool_calls: list[dict[str, Any]] = []
        final: FinalAnswer | None = None
        sources = Sources()
        try:
            # One round trip reads and marks the task; the record it returns is the fresh one.
            record = await self.task_store.claim_task(task_id, worker=self.name)
            if record is None:
                self.log.info("task %s is not in the store or already finished; skipped", task_id)
                return
            self.tasks_run += 1
            memory = ShortTermMemory(
                identity=await self._identity_with_notes(record),
                task=record.prompt or record.description,
                budget_tokens=self.budget_tokens,
                summarizer=self.model,
            )
            tools = self.tools
            if record.data.get("question") and self.question_withholds:
                tools = Withheld(self.tools, self.question_withholds)
            async for step in react(self.model, tools, memory, max_steps=self.max_steps):
                if isinstance(step, ModelStep):
                    usage = usage + step.usage
                elif isinstance(step, ToolCallStep):
                    tool_calls.append({"name": step.call.name, "arguments": self._args(step)})
                    await self._progress(task_id, step, tool_calls, usage)
                elif isinstance(step, ToolResultStep):
                    if tool_calls:
                        tool_calls[-1]["is_error"] = step.is_error
                    sources.record(
                        step.call.name, step.call.arguments, step.result_text, step.is_error
                    )
                elif isinstance(step, FinalAnswer):
                    if not step.partial:
                        step = replace(step, text=sources.cite(step.text))
                    await self._finish(task_id, step, tool_calls, usage)
                    final = step
        except asyncio.CancelledError:
            if self._shutdown:
                await self._safely(self._requeue(task_id, tool_calls, usage))
            else:
                await self._safely(self._cancelled(task_id, tool_calls, usage))
            raise
        except BackendUnavailable as exc:
            await self._safely(
                self._failed(task_id, f"backend unavailable: {exc}", tool_calls, usage)
            )
        except Exception as exc:
            self.log.exception("task %s failed", task_id)
            error = f"{type(exc).__name__}: {exc}"
            await self._safely(self._failed(task_id, error, tool_calls, usage))
        else:
            # Outside the try: the task is DONE and reported; a cancellation while storing
            # must not turn it into CANCELLED or QUEUED.
            if final is not None and not final.partial and self.long_term is not None:
                if final.after_failure is None:
                    await self.long_term.remember(
                        task_id,
                        _task_text(record),
                        final.text,
                        tools=[call["name"] for call in tool_calls],
                    )
                else:
                    # Measured (bench_tasks run 9): a total made up after a failed script
                    # was recalled by the next task on the file (0.715) and given again.
                    self.log.info(
                        "task %s: answer not kept in long-term memory (it came after a "
                        "failed %s call)",
                        task_id,
                        final.after_failure,
                    )
        finally:
            self.current_task = None

    async def _identity_with_notes(self, task: TaskRecord) -> str:
        """The identity, plus what the role's long-term memory recalls for this task."""
        if self.long_term is None:
            return self.identity
        recalled = await self.long_term.recall(_task_text(task))
        if not recalled:
            return self.identity
        self.log.info("task %s: %d note(s) recalled from long-term memory", task.id, len(recalled))
        await self.task_store.update_task(
            task.id,
            data={
                "recalled": [{"task_id": m.task_id, "score": round(m.score, 3)} for m in recalled]
            },
        )
        return f"{self.identity}\n\n{notes_message(recalled)}"

    @staticmethod
    def _args(step: ToolCallStep) -> Any:
        text = json.dumps(step.call.arguments, ensure_ascii=False, default=str)
        return (
            step.call.arguments if len(text) <= _ARGUMENT_CHARS else _short(text, _ARGUMENT_CHARS)
        )

    async def _progress(
        self, task_id: str, step: ToolCallStep, tool_calls: list[dict[str, Any]], usage: Usage
    ) -> None:
        arguments = json.dumps(step.call.arguments, ensure_ascii=False, default=str)
        text = _short(f"calling tool {step.call.name} with {arguments}", _PROGRESS_CHARS)
        await self.task_store.add_result(
            task_id, "progress", text, data={"tool_calls": tool_calls, "usage": usage.as_dict()}
        )
        await self._notify(MessageType.TASK_PROGRESS, {"text": text}, task_id)

    async def _finish(
        self, task_id: str, answer: FinalAnswer, tool_calls: list[dict[str, Any]], usage: Usage
    ) -> None:
        stored = await self.task_store.finish_task(
            task_id,
            status=TaskStatus.DONE,
            kind="result",
            content=answer.text,
            data={
                "tool_calls": tool_calls,
                "usage": usage.as_dict(),
                "steps": answer.steps,
                "partial": answer.partial,
            },
        )
        await self._notify(
            MessageType.TASK_RESULT,
            {"result": answer.text, "response_number": stored.number, "partial": answer.partial},
            task_id,
        )

    async def _failed(
        self, task_id: str, error: str, tool_calls: list[dict[str, Any]], usage: Usage
    ) -> None:
        self.log.warning("task %s failed: %s", task_id, error)
        await self._safely(
            self.task_store.finish_task(
                task_id,
                status=TaskStatus.FAILED,
                kind="error",
                content=error,
                data={"tool_calls": tool_calls, "usage": usage.as_dict(), "error": error},
            )
        )
        await self._notify(MessageType.TASK_ERROR, {"error": error}, task_id)

    async def _cancelled(
        self, task_id: str, tool_calls: list[dict[str, Any]], usage: Usage
    ) -> None:
        await self._safely(
            self.task_store.update_task(
                task_id,
                status=TaskStatus.CANCELLED,
                data={"tool_calls": tool_calls, "usage": usage.as_dict()},
            )
        )
        await self._notify(MessageType.TASK_ERROR, {"error": CANCELLED_TEXT}, task_id)

    async def _requeue(self, task_id: str, tool_calls: list[dict[str, Any]], usage: Usage) -> None:
        self.log.info("task %s interrupted by shutdown; queued again", task_id)
        await self.task_store.update_task(
            task_id,
            status=TaskStatus.QUEUED,
            data={"tool_calls": tool_calls, "usage": usage.as_dict(), "interrupted": True},
        )

    async def _notify(self, type: MessageType, payload: dict[str, Any], task_id: str) -> None:
        """Send to ``report_to``; a bus failure is logged, never raised."""
        try:
            await self.send(self.report_to, type, payload, task_id=task_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            self.log.exception("could not send %s for task %s to %s", type, task_id, self.report_to)

    async def _safely(self, work: Awaitable[object]) -> None:
        """Await ``work``; an exception (store down, ...) is logged, never raised."""
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception:
            self.log.exception("bookkeeping failed")
