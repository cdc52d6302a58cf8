"""Rule filters: fields, regex, case flag, any/all, and no rules meaning everything."""

from __future__ import annotations

from typing import Any

from octopussy.config import MailFilter
from octopussy.mail.filters import MailRules
from octopussy.mail.parse import ParsedMail

MAIL = ParsedMail(
    sender="The Boss <Boss@Company.com>",
    to="me@example.org, team@example.org",
    subject="Budget review Friday",
    date="",
    message_id="<1@x>",
    text="Please bring the Q3 numbers.",
)


def rule(**fields: Any) -> MailFilter:
    return MailFilter(**fields)


def test_each_field_is_searched_on_its_own() -> None:
    assert MailRules([rule(field="sender", pattern=r"boss@company\.com")]).match(MAIL) is not None
    assert MailRules([rule(field="subject", pattern="budget")]).match(MAIL) is not None
    assert MailRules([rule(field="body", pattern=r"Q\d numbers")]).match(MAIL) is not None
    assert MailRules([rule(field="to", pattern="team@")]).match(MAIL) is not None
    # A word of the body is not in the subject.
    assert MailRules([rule(field="subject", pattern="numbers")]).match(MAIL) is None
    assert MailRules([rule(field="sender", pattern="team@")]).match(MAIL) is None


def test_any_searches_every_field() -> None:
    for pattern in ("boss@", "team@", "Friday", "Q3"):
        assert MailRules([rule(field="any", pattern=pattern)]).match(MAIL) is not None


def test_case_flag() -> None:
    assert MailRules([rule(field="subject", pattern="BUDGET")]).match(MAIL) is not None
    sensitive = rule(field="subject", pattern="BUDGET", ignore_case=False)
    assert MailRules([sensitive]).match(MAIL) is None


def test_match_any_and_all_and_labels() -> None:
    hit = rule(name="boss", field="sender", pattern="boss")
    miss = rule(field="subject", pattern="lottery")
    assert MailRules([hit, miss], "any").match(MAIL) == ["boss"]
    assert MailRules([hit, miss], "all").match(MAIL) is None
    both = rule(field="subject", pattern="friday")
    assert MailRules([hit, both], "all").match(MAIL) == ["boss", "subject~/friday/"]


def test_no_rules_means_every_message() -> None:
    assert MailRules([], "any").match(MAIL) == []
    assert MailRules([], "all").match(MAIL) == []
