"""The parser on a corpus of awkward mail: nothing crashes and the readable parts come out."""

from __future__ import annotations

from typing import Any

import pytest

from mail_corpus import corpus
from octopussy.mail.parse import decode_header, html_to_text, parse_message

CORPUS = corpus()


def test_the_corpus_has_at_least_twenty_awkward_messages() -> None:
    assert len(CORPUS) >= 20
    assert any(len(raw) > 5_000_000 for _, raw, _ in CORPUS)


@pytest.mark.parametrize(("name", "raw", "expect"), CORPUS, ids=[c[0] for c in CORPUS])
def test_corpus_message_parses(name: str, raw: bytes, expect: dict[str, Any]) -> None:
    mail = parse_message(raw)
    for field in ("subject", "sender"):
        if field in expect:
            assert expect[field] in getattr(mail, field), (name, getattr(mail, field))
    for piece in expect.get("text", []):
        assert piece in mail.text, (name, mail.text[:300])
    for piece in expect.get("not_text", []):
        assert piece not in mail.text, (name, mail.text[:300])
    for attachment in expect.get("attachments", []):
        assert attachment in mail.attachments, (name, mail.attachments)
    # Whatever came in, what goes out is clean text.
    for value in (mail.subject, mail.sender, mail.to, mail.text):
        assert "\x00" not in value
        value.encode("utf-8")  # no lone surrogates


def test_huge_body_is_capped() -> None:
    raw = next(raw for name, raw, _ in CORPUS if name == "huge-5mb-body")
    mail = parse_message(raw, max_text_chars=100_000)
    assert len(mail.text) == 100_000
    assert mail.truncated


def test_truncated_fetch_is_marked_and_still_readable() -> None:
    raw = next(raw for name, raw, _ in CORPUS if name == "nested-mixed-alternative-attachment")
    mail = parse_message(raw[: len(raw) // 2], truncated=True)
    assert mail.truncated
    assert "due 30 days" in mail.text


def test_html_only_is_flagged() -> None:
    raw = next(raw for name, raw, _ in CORPUS if name == "html-only")
    assert parse_message(raw).html_only
    raw = next(raw for name, raw, _ in CORPUS if name == "alternative-prefers-plain")
    assert not parse_message(raw).html_only


def test_header_decoding_joins_encoded_words_and_keeps_plain_text() -> None:
    assert decode_header("=?utf-8?q?caf=C3=A9?= =?utf-8?q?_cr=C3=A8me?=") == "café crème"
    assert decode_header("plain subject") == "plain subject"
    assert decode_header(None) == ""
    assert decode_header("=?utf-8?B?!!!?=")  # broken base64: some text, no exception


def test_html_to_text_blocks_lists_and_links() -> None:
    text = html_to_text(
        "<p>One</p><p>Two <a href='https://x.example/a'>link</a></p><ul><li>a</li></ul>"
    )
    assert text.splitlines()[0] == "One"
    assert "Two link (https://x.example/a)" in text
    assert "- a" in text


def test_first_lines_for_the_fallback_summary() -> None:
    mail = parse_message(
        b"Subject: s\r\n\r\n\r\nline one\r\n\r\nline two\r\nline three\r\nfour\r\n"
    )
    assert mail.first_lines() == "line one / line two / line three"
