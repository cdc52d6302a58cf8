"""Three-way merge of lines: two edits of one text, kept together when they do not clash.

::

    base ──(edit A)──► ours          merge3(base, ours, theirs)
      └───(edit B)──► theirs   ──►   base with A and B applied, or None if they touch the
                                     same lines (or insert at the same place differently)

The built-in server uses it when ``write_file`` sends the whole file based on a copy read
before the server's own last change to it (measured on the embedded model: after
``edit_file`` eggs → bread it wrote the file as first read plus the new last line, which
would have undone the edit). Lines are compared whole; a change both sides made alike is
applied once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher

__all__ = ["merge3"]


@dataclass(frozen=True, slots=True)
class _Change:
    start: int  # first base line replaced
    end: int  # one past the last (start == end: an insertion before ``start``)
    lines: tuple[str, ...]


def _changes(base: Sequence[str], other: Sequence[str]) -> list[_Change]:
    matcher = SequenceMatcher(None, base, other, autojunk=False)
    return [
        _Change(i1, i2, tuple(other[j1:j2]))
        for tag, i1, i2, j1, j2 in matcher.get_opcodes()
        if tag != "equal"
    ]


def merge3(base: Sequence[str], ours: Sequence[str], theirs: Sequence[str]) -> list[str] | None:
    """``base`` with the changes of both ``ours`` and ``theirs``; None when they clash."""
    changes = sorted({*_changes(base, ours), *_changes(base, theirs)}, key=_order)
    merged: list[str] = []
    done = 0  # base lines consumed
    previous: _Change | None = None
    for change in changes:
        if previous is not None and (
            # Overlapping lines, or two different changes at one place (which goes first?).
            change.start < done or change.start == previous.start
        ):
            return None
        merged.extend(base[done : change.start])
        merged.extend(change.lines)
        done = change.end
        previous = change
    merged.extend(base[done:])
    return merged


def _order(change: _Change) -> tuple[int, int, tuple[str, ...]]:
    return (change.start, change.end, change.lines)
