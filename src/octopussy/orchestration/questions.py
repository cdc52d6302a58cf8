"""Questions: a message that only asks ("Which month has the highest revenue in sales.csv?").

A task made from a question runs without the tools that change files
(``workers.question_withholds``), so answering cannot change the user's data. Measured in
bench_tasks run 11: for "Which month has the highest revenue in sales.csv?" the embedded
worker renamed the file's ``revenue`` column with write_file before it answered March.

The rule is deliberately narrow, since a request taken for a question would fail to do its
work: one sentence, ending in "?", opening with a question word ("what", "which", "how",
"is", "does", ...). A request phrased as a question ("Can you change the port?", "Could you
add milk?", "Why don't you ...?") or one that says "please" is a request; so is anything
with a second sentence ("Which file mentions the octopus? Delete it.").
"""

from __future__ import annotations

import re

__all__ = ["is_question"]

_OPENERS = frozenset(
    (  # noqa: SIM905 - a word list reads better as one string
        "what which who whom whose when where why how what's who's where's when's how's "
        "is are was were am do does did has have had "
        "isn't aren't wasn't weren't doesn't don't didn't hasn't haven't"
    ).split()
)
#: Request phrasings that open like a question.
_REQUEST = re.compile(
    r"\b(?:can|could|would|will|won't|shall) (?:you|we|u)\b|\bplease\b|\bplz\b|"
    r"^(?:why (?:don't|not)|how about|what about)\b",
    re.IGNORECASE,
)
#: A sentence end followed by more text.
_SECOND_SENTENCE = re.compile(r"[.!?;]\s+\S|\n\s*\S")


def is_question(text: str) -> bool:
    """True when ``text`` only asks something (see the module docstring for the rule)."""
    text = text.strip().replace("\u2019", "'")
    if not text.endswith("?") or _SECOND_SENTENCE.search(text.rstrip("?").rstrip()):
        return False
    first = re.match(r"[A-Za-z']+", text)
    if first is None or first.group(0).lower() not in _OPENERS:
        return False
    return _REQUEST.search(text) is None
