"""Rule filters: which mail is worth a notification, decided before any LLM call.

    MailFilter(field=sender|subject|body|to|any, pattern=REGEX, ignore_case)
        ──► compiled once ──► MailRules.match(parsed) ──► labels of the rules that hit
                                                          (None: not interesting, no LLM)

``match: any`` (the default) needs one rule to hit, ``all`` needs every one. No rules at
all means every message is interesting (as with the seed's empty filter list).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from octopussy.config import MailFilter
from octopussy.mail.parse import ParsedMail


@dataclass(frozen=True, slots=True)
class CompiledFilter:
    label: str
    field: str
    regex: re.Pattern[str]

    def hits(self, mail: ParsedMail) -> bool:
        return self.regex.search(field_text(mail, self.field)) is not None


def field_text(mail: ParsedMail, field: str) -> str:
    """The text a filter on ``field`` searches."""
    if field == "sender":
        return mail.sender
    if field == "subject":
        return mail.subject
    if field == "body":
        return mail.text
    if field == "to":
        return mail.to
    return "\n".join((mail.sender, mail.to, mail.subject, mail.text))


class MailRules:
    """A compiled set of filters with its match mode."""

    def __init__(self, filters: Sequence[MailFilter], match: Literal["any", "all"] | str = "any"):
        self.match_mode = match
        # Config validation already compiled each pattern once, so this cannot fail here.
        self.filters = [
            CompiledFilter(
                f.label, f.field, re.compile(f.pattern, re.IGNORECASE if f.ignore_case else 0)
            )
            for f in filters
        ]

    def match(self, mail: ParsedMail) -> list[str] | None:
        """Labels of the filters that hit; None when the message does not qualify."""
        if not self.filters:
            return []
        hits = [f.label for f in self.filters if f.hits(mail)]
        if self.match_mode == "all":
            return hits if len(hits) == len(self.filters) else None
        return hits or None
