"""The prompt optimizer: turns what the user typed into a clear instruction for a worker.

    "look at sales.csv whats the best month"  ──► model (prompts/optimizer.txt) ──►
    "Read the file sales.csv in the workspace, find the month with the highest total ..."

As in the seed it is on by default and can be switched off. It never blocks a task: on any
model failure, an empty answer or a suspicious one (much longer than asked, dropping a
file name the user gave or adding one they did not) the original description is used, and
the reason is logged.
"""

from __future__ import annotations

import logging
import re
from importlib import resources

from octopussy.errors import OctopussyError
from octopussy.llm.base import ChatMessage, Model, ModelSettings

log = logging.getLogger("octopussy.optimizer")

_FILE_NAME = re.compile(r"[\w./-]+\.[A-Za-z0-9]{1,6}\b")
# The worker does the work: a rewrite that hands it back to the user ("Tell the user to
# open config.json in a text editor ...", measured on the embedded model) loses the task.
_DELEGATES = re.compile(
    r"\b(?:tell|ask|instruct|advise)\s+the\s+user\s+to\b|\btext\s+editor\b|\bmanually\b", re.I
)
MAX_WORDS = 200


def optimizer_prompt() -> str:
    return resources.files("octopussy").joinpath("prompts/optimizer.txt").read_text("utf-8")


class PromptOptimizer:
    """``await optimizer.optimize(description)`` → the prompt a worker gets."""

    def __init__(self, model: Model, *, enabled: bool = True, max_tokens: int = 300) -> None:
        self.model = model
        self.enabled = enabled
        self.settings = ModelSettings(temperature=0.0, max_tokens=max_tokens)
        self._system = optimizer_prompt()

    async def optimize(self, description: str) -> str:
        if not self.enabled or not description.strip():
            return description
        messages = [ChatMessage.system(self._system), ChatMessage.user(description)]
        try:
            response = await self.model.complete(messages, settings=self.settings)
        except OctopussyError as exc:
            log.warning("prompt optimizer failed (%s); using the original description", exc)
            return description
        candidate = response.text.strip().strip('"').strip()
        problem = self._problem(description, candidate)
        if problem:
            log.info("prompt optimizer result not used: %s", problem)
            return description
        return candidate

    @staticmethod
    def _problem(original: str, candidate: str) -> str | None:
        if not candidate:
            return "empty answer"
        if len(candidate.split()) > max(MAX_WORDS, 3 * len(original.split())):
            return "far longer than the task"
        missing = [name for name in _FILE_NAME.findall(original) if name not in candidate]
        if missing:
            return f"dropped {', '.join(missing)}"
        # Small models "clarify" config.json into /path/to/config.json: a path the user
        # never gave sends the worker outside the workspace.
        invented = [name for name in _FILE_NAME.findall(candidate) if name not in original]
        if invented:
            return f"added {', '.join(invented)}"
        if _DELEGATES.search(candidate) and not _DELEGATES.search(original):
            return "hands the work back to the user"
        return None
