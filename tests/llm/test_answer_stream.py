"""``AnswerStream``: the final answer of a tool-choice reply, decoded while it streams."""

from __future__ import annotations

import json

import pytest

from octopussy.llm.jsontools import AnswerStream


def feed_all(pieces: list[str]) -> tuple[str, AnswerStream]:
    stream = AnswerStream()
    return "".join(stream.feed(piece) for piece in pieces), stream


@pytest.mark.parametrize(
    "answer",
    ["plain", 'quotes "inside" and \\ backslash', "line\nbreak\ttab", "héllo → 😀 日本", ""],
)
@pytest.mark.parametrize("ascii_only", [True, False])
def test_decodes_any_answer_split_at_every_character(answer: str, ascii_only: bool) -> None:
    reply = json.dumps(
        {"tool": "final_answer", "arguments": {"answer": answer}}, ensure_ascii=ascii_only
    )
    text, stream = feed_all(list(reply))
    assert text == answer
    assert stream.active


def test_whitespace_between_tokens_is_allowed() -> None:
    text, _ = feed_all(['{\n  "tool" :  "final_answer",\n  "arguments": { "answer" : "ok"}}'])
    assert text == "ok"


def test_a_tool_call_yields_nothing_and_turns_inactive() -> None:
    reply = json.dumps({"tool": "read_file", "arguments": {"path": "a"}})
    stream = AnswerStream()
    assert stream.feed(reply[:9]) == ""
    assert stream.active  # '{"tool": ' could still become an answer
    assert stream.feed(reply[9:]) == ""
    assert not stream.active


def test_text_after_the_closing_quote_is_ignored() -> None:
    text, _ = feed_all(['{"tool":"final_answer","arguments":{"answer":"a"}}', ' "b"'])
    assert text == "a"


def test_prose_instead_of_json_is_not_streamed() -> None:
    text, stream = feed_all(["Sure! Here is the answer"])
    assert text == ""
    assert not stream.active
