"""Telling a message that only asks from a request (question tasks get no file-writing tools)."""

from __future__ import annotations

import pytest

from octopussy.orchestration.questions import is_question

QUESTIONS = [
    "Which month has the highest revenue in sales.csv?",
    "What is the total revenue in sales.csv?",
    "How many lines has notes.txt?",
    "Which file in the workspace mentions the octopus?",
    "What is 17 multiplied by 23?",
    "What is 3.5 times 2?",
    "what's in config.json?",
    "What\u2019s the port in config.json?",
    "Is debug on in config.json?",
    "Does notes.txt mention milk?",
    "How do I change the port in config.json?",
    "  Who wrote Hamlet?  ",
]
REQUESTS = [
    "Change the port in config.json to 9090.",
    "Can you change the port in config.json to 9090?",
    "Could you add milk to shopping.txt?",
    "Would you sum the revenue column?",
    "What is the port? Set it to 9090.",
    "Which file mentions the octopus? Delete it?",
    "Why don't you add a line to notes.txt?",
    "How about adding butter to shopping.txt?",
    "Is the port 8080? Please set it to 9090?",
    "What is the port, please?",
    "Add milk as a new last line of shopping.txt?",
    "Every 30 minutes check the log?",
    "Which month has the highest revenue\nand write it to best.txt?",
    "",
    "?",
]


@pytest.mark.parametrize("text", QUESTIONS)
def test_a_message_that_only_asks_is_a_question(text: str) -> None:
    assert is_question(text)


@pytest.mark.parametrize("text", REQUESTS)
def test_a_request_is_not_a_question(text: str) -> None:
    assert not is_question(text)
