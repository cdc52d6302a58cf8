"""Logging: always to a file under the data dir, to stderr only when asked.

Every agent logs to ``octopussy.agent.<name>``; the stderr handler colors each line by the
agent's kind (coordinator blue, mail green, calendar yellow, worker magenta, tool agent
cyan, system red), as the seed's terminal does. The stderr handler looks ``sys.stderr`` up
on every write, so inside the chat REPL (where prompt_toolkit replaces it with a proxy)
log lines are printed above the prompt instead of scribbling over what the user types.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path
from typing import TextIO

AGENT_LOGGER = "octopussy.agent"

_COLORS = {
    "coordinator": "\033[94m",
    "mail": "\033[92m",
    "calendar": "\033[93m",
    "worker": "\033[95m",
    "tool": "\033[96m",
    "system": "\033[91m",
}
_RESET = "\033[0m"


def agent_logger(name: str) -> logging.Logger:
    """The logger of one agent (``octopussy.agent.<name>``)."""
    return logging.getLogger(f"{AGENT_LOGGER}.{name}")


def _component(record: logging.LogRecord) -> str:
    if record.name.startswith(AGENT_LOGGER + "."):
        return record.name[len(AGENT_LOGGER) + 1 :]
    return "system"


class _ComponentFormatter(logging.Formatter):
    def __init__(self, *, color: bool) -> None:
        super().__init__("[%(component)s] %(asctime)s %(levelname)s: %(message)s", "%H:%M:%S")
        self.color = color

    def format(self, record: logging.LogRecord) -> str:
        component = _component(record)
        record.component = component  # read by the format string
        line = super().format(record)
        if not self.color:
            return line
        for prefix, code in _COLORS.items():
            if component.startswith(prefix):
                return f"{code}{line}{_RESET}"
        return f"{_COLORS['system']}{line}{_RESET}"


class _CurrentStderrHandler(logging.StreamHandler[TextIO]):
    """A stream handler that always writes to the *current* ``sys.stderr``."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def setup_logging(
    *, level: str, file: Path | None, stderr: bool, color: bool | None = None
) -> list[logging.Handler]:
    """Configure the ``octopussy`` logger tree; returns the handlers it installed.

    Calling it again replaces the previous handlers (tests and ``main`` call it per run).
    """
    root = logging.getLogger("octopussy")
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)
    root.propagate = False
    installed: list[logging.Handler] = []
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.handlers.RotatingFileHandler(
            file, maxBytes=5_000_000, backupCount=3, encoding="utf-8"
        )
        file_handler.setFormatter(_ComponentFormatter(color=False))
        installed.append(file_handler)
    if stderr:
        stream_handler = _CurrentStderrHandler()
        use_color = sys.stderr.isatty() if color is None else color
        stream_handler.setFormatter(_ComponentFormatter(color=use_color))
        installed.append(stream_handler)
    for handler in installed:
        root.addHandler(handler)
    # Third-party chatter (httpx, openai, asyncio) goes to the file at WARNING and above only.
    for noisy in ("httpx", "httpcore", "openai", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return installed
