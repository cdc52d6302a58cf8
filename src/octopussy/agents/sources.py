"""Where a worker's answer came from: cite the file a quoted line was read from.

Asked "which file mentions the octopus?", the embedded model searches, reads animals.txt
and answers with the line it found ("The octopus has three hearts and blue blood."),
leaving out the name the user asked for. In bench_tasks runs 7-12 that happened 4 times in
5; naming the file in the tool results and in the identity changed nothing (measured by
replaying the conversation: same answer each time). So the worker cites instead: an answer
that quotes a line the task read from a file gets the file and line appended, "(from
animals.txt, line 1)". That also answers "where does that come from?" for any quote, the
way a careful assistant would.

Only the built-in server's file tools are read (their formats are ours, see
``octopussy.mcp.builtin``): ``read_file`` shows ``f"{n:>6}\\t{line}"`` for each line of the
file named by its ``path`` argument, ``search_files`` with ``text`` shows
``f"{path}:{n}: {line}"`` for each match. A quote must be at least :data:`MIN_QUOTE_CHARS`
long (short lines like "hi" or "8080" are values, not quotes), and an answer that already
names the file is left as it is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

__all__ = ["MIN_QUOTE_CHARS", "Sources"]

#: The shortest line (normalised characters) whose appearance in an answer is a quote.
MIN_QUOTE_CHARS = 20
#: How many line numbers one citation lists per file.
_MAX_LINES = 3
_NUMBERED = re.compile(r" *(\d{1,7})\t(.*)")
_MATCH = re.compile(r"([^\s:\[][^:\n]*):(\d{1,7}): (.*)")
_SPACE = re.compile(r"\s+")


def _norm(text: str) -> str:
    return _SPACE.sub(" ", text).strip().casefold()


class Sources:
    """The file lines one task has seen; :meth:`cite` names those an answer quotes."""

    def __init__(self) -> None:
        self._lines: dict[tuple[str, int], str] = {}  # (path, line number) -> normalised text

    def record(self, tool: str, arguments: Mapping[str, Any], text: str, is_error: bool) -> None:
        """Note the file lines in one tool result (errors and other tools are ignored)."""
        if is_error:
            return
        if tool == "read_file":
            path = arguments.get("path")
            if not isinstance(path, str) or not path.strip():
                return
            for line in text.splitlines():
                numbered = _NUMBERED.fullmatch(line)
                if numbered is not None:
                    self._add(path.strip(), int(numbered.group(1)), numbered.group(2))
        elif tool == "search_files" and arguments.get("text"):
            for line in text.splitlines():
                match = _MATCH.fullmatch(line)
                if match is not None:
                    self._add(match.group(1), int(match.group(2)), match.group(3))

    def _add(self, path: str, number: int, line: str) -> None:
        normalised = _norm(line)
        if len(normalised) >= MIN_QUOTE_CHARS:
            self._lines[(_clean(path), number)] = normalised

    def quoted(self, answer: str) -> dict[str, list[int]]:
        """The files (and their line numbers) whose lines ``answer`` quotes."""
        said = _norm(answer)
        core = said.rstrip(".!?;:")
        found: dict[str, list[int]] = {}
        for (path, number), line in self._lines.items():
            if line in said or (len(core) >= MIN_QUOTE_CHARS and core in line):
                numbers = found.setdefault(path, [])
                if number not in numbers:
                    numbers.append(number)
        return found

    def cite(self, answer: str) -> str:
        """``answer``, with "(from FILE, line N)" added for each quoted file it does not name."""
        mentioned = answer.casefold()
        parts = []
        for path, numbers in self.quoted(answer).items():
            if PurePosixPath(path).name.casefold() in mentioned:
                continue
            numbers = sorted(numbers)
            shown = ", ".join(str(n) for n in numbers[:_MAX_LINES])
            more = ", …" if len(numbers) > _MAX_LINES else ""
            label = "line" if len(numbers) == 1 else "lines"
            parts.append(f"{path}, {label} {shown}{more}")
        if not parts:
            return answer
        return f"{answer.rstrip()} (from {'; '.join(parts)})"


def _clean(path: str) -> str:
    """``./notes/a.txt`` and ``notes/a.txt`` are one file."""
    parts = [part for part in PurePosixPath(path.replace("\\", "/")).parts if part != "."]
    return "/".join(parts) or path
