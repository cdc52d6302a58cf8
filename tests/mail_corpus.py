# ruff: noqa: E501 - raw mail data reads best unwrapped
"""Awkward real-world mail, as raw bytes, with what a reader must get out of each.

Each entry: (name, raw message, expectations). ``expect`` keys: ``subject`` / ``sender``
(substrings of the decoded header), ``text`` (substrings of the decoded text), ``not_text``
(what must not leak into it: markup, scripts, base64 of attachments), ``attachments``
(names that must be listed). Used by the parser tests and, through a real Dovecot, by
the agent tests. Importable by plain name (``pythonpath`` in pyproject).
"""

from __future__ import annotations

import base64
from typing import Any

CRLF = b"\r\n"


def _msg(headers: list[str], body: bytes | str, *, mid: str) -> bytes:
    head = [*headers, f"Message-ID: <{mid}@corpus.test>", "Date: Tue, 01 Dec 2026 08:00:00 +0000"]
    raw_body = body.encode("utf-8") if isinstance(body, str) else body
    return CRLF.join(h.encode("utf-8") for h in head) + CRLF + CRLF + raw_body


def _multipart(kind: str, boundary: str, parts: list[bytes]) -> bytes:
    out = b""
    for part in parts:
        out += b"--" + boundary.encode() + CRLF + part + CRLF
    return out + b"--" + boundary.encode() + b"--" + CRLF


def _part(ctype: str, body: bytes, *extra: str) -> bytes:
    lines = [f"Content-Type: {ctype}", *extra]
    return CRLF.join(line.encode() for line in lines) + CRLF + CRLF + body


PDF = base64.encodebytes(b"%PDF-1.4 fake pdf " * 200)
BIG_TEXT = ("Quarterly numbers follow. " * 40 + "\r\n") * 5200  # about 5.4 MB


def corpus() -> list[tuple[str, bytes, dict[str, Any]]]:
    """The awkward messages (at least 20)."""
    items: list[tuple[str, bytes, dict[str, Any]]] = []

    def add(name: str, raw: bytes, **expect: Any) -> None:
        items.append((name, raw, expect))

    add(
        "plain-ascii",
        _msg(["From: Boss <boss@company.com>", "To: me@example.org", "Subject: Budget"],
             "Please send the budget by Friday.\r\n", mid="1"),
        subject="Budget", sender="boss@company.com", text=["budget by Friday"],
    )  # fmt: skip
    add(
        "rfc2047-utf8-b",
        _msg(["From: =?UTF-8?B?SsO8cmdlbiBNw7xsbGVy?= <jm@example.de>",
              "Subject: =?UTF-8?B?R3LDvMOfZSBhdXMgTcO8bmNoZW4=?=",
              "Content-Type: text/plain; charset=utf-8"],
             "Schöne Grüße\r\n", mid="2"),
        subject="Grüße aus München", sender="Jürgen Müller", text=["Schöne Grüße"],
    )  # fmt: skip
    add(
        "rfc2047-iso8859-q",
        _msg(["From: =?ISO-8859-1?Q?Fran=E7ois?= <f@example.fr>",
              "Subject: =?iso-8859-1?q?R=E9union_de_l=27=E9quipe?=",
              "Content-Type: text/plain; charset=iso-8859-1",
              "Content-Transfer-Encoding: quoted-printable"],
             b"R=E9union demain =E0 10h.\r\n", mid="3"),
        subject="Réunion de l'équipe", sender="François", text=["Réunion demain à 10h"],
    )  # fmt: skip
    add(
        "rfc2047-shift-jis-and-koi8",
        _msg(["From: =?KOI8-R?B?5MXE?= <ded@example.ru>",
              "Subject: =?shift_jis?B?k/qWe4zqgsyDZYNYg2c=?= =?utf-8?Q?_ok?=",
              "Content-Type: text/plain; charset=koi8-r"],
             "Привет".encode("koi8-r") + CRLF, mid="4"),
        subject="日本語のテスト ok", sender="Дед", text=["Привет"],
    )  # fmt: skip
    add(
        "unknown-charset",
        _msg(["From: x@example.org", "Subject: =?x-unknown-42?Q?caf=E9?=",
              "Content-Type: text/plain; charset=x-no-such-charset"],
             b"caf\xc3\xa9 and bytes \xff\xfe\r\n", mid="5"),
        subject="caf", text=["caf", "and bytes"],
    )  # fmt: skip
    add(
        "mislabelled-ascii-8bit",
        _msg(["From: y@example.org", "Subject: 8bit",
              "Content-Type: text/plain; charset=us-ascii"],
             b"na\xefve r\xe9sum\xe9\r\n", mid="6"),
        subject="8bit", text=["na", "sum"],
    )  # fmt: skip
    add(
        "raw-8bit-header",
        _msg(["From: Zoë <z@example.org>", "Subject: Déjà vu without encoding"],
             "body\r\n", mid="7"),
        subject="vu without encoding", sender="z@example.org", text=["body"],
    )  # fmt: skip
    add(
        "html-only",
        _msg(["From: news@shop.example", "Subject: Sale",
              "Content-Type: text/html; charset=utf-8"],
             "<html><head><title>T</title><style>p{color:red}</style>"
             "<script>alert('x')</script></head><body><h1>Big sale</h1>"
             "<p>Everything&nbsp;&amp; more at <a href='https://shop.example/s'>our shop</a>"
             "</p><ul><li>Shoes</li><li>Hats</li></ul></body></html>", mid="8"),
        subject="Sale", text=["Big sale", "Everything", "& more", "- Shoes",
                               "https://shop.example/s"],
        not_text=["<p>", "alert", "color:red"],
    )  # fmt: skip
    add(
        "alternative-prefers-plain",
        _msg(["From: a@example.org", "Subject: Alt", "MIME-Version: 1.0",
              'Content-Type: multipart/alternative; boundary="alt"'],
             _multipart("alternative", "alt", [
                 _part("text/plain; charset=utf-8", b"The plain version."),
                 _part("text/html; charset=utf-8", b"<p>The <b>HTML</b> version.</p>"),
             ]), mid="9"),
        subject="Alt", text=["The plain version."], not_text=["HTML version", "<b>"],
    )  # fmt: skip
    add(
        "nested-mixed-alternative-attachment",
        _msg(["From: b@example.org", "Subject: Invoice", "MIME-Version: 1.0",
              'Content-Type: multipart/mixed; boundary="outer"'],
             _multipart("mixed", "outer", [
                 _part('multipart/alternative; boundary="inner"', _multipart("alternative", "inner", [
                     _part("text/plain; charset=utf-8", b"Invoice attached, due 30 days."),
                     _part("text/html", b"<p>Invoice attached</p>"),
                 ])),
                 _part('application/pdf; name="invoice-2026.pdf"', PDF,
                       "Content-Transfer-Encoding: base64",
                       'Content-Disposition: attachment; filename="invoice-2026.pdf"'),
             ]), mid="10"),
        subject="Invoice", text=["due 30 days"], attachments=["invoice-2026.pdf"],
        not_text=["JVBER", "fake pdf"],
    )  # fmt: skip
    add(
        "rfc2231-attachment-name",
        _msg(["From: c@example.org", "Subject: Photos", "MIME-Version: 1.0",
              'Content-Type: multipart/mixed; boundary="b"'],
             _multipart("mixed", "b", [
                 _part("text/plain", b"See the photo."),
                 _part("image/jpeg", base64.encodebytes(b"\xff\xd8\xff" * 100),
                       "Content-Transfer-Encoding: base64",
                       "Content-Disposition: attachment; filename*=UTF-8''F%C3%A9rias%20%C3%A0%20praia.jpg"),
             ]), mid="11"),
        subject="Photos", text=["See the photo."], attachments=["Férias à praia.jpg"],
    )  # fmt: skip
    add(
        "attachment-name-only-in-content-type",
        _msg(["From: d@example.org", "Subject: Sheet", "MIME-Version: 1.0",
              'Content-Type: multipart/mixed; boundary="b"'],
             _multipart("mixed", "b", [
                 _part("text/plain", b"Numbers inside."),
                 _part('application/vnd.ms-excel; name="=?UTF-8?Q?Z=C3=A4hlung.xls?="',
                       base64.encodebytes(b"xls" * 50), "Content-Transfer-Encoding: base64"),
             ]), mid="12"),
        subject="Sheet", text=["Numbers inside."], attachments=["Zählung.xls"],
    )  # fmt: skip
    add(
        "broken-base64-body",
        _msg(["From: e@example.org", "Subject: Broken b64",
              "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: base64"],
             b"SGVsbG8gd29ybGQ!!!*** not base64 at all ===\r\n", mid="13"),
        subject="Broken b64",
    )  # fmt: skip
    add(
        "unterminated-multipart",
        _msg(["From: f@example.org", "Subject: Cut", "MIME-Version: 1.0",
              'Content-Type: multipart/mixed; boundary="never-closed"'],
             b"--never-closed\r\nContent-Type: text/plain\r\n\r\nThe start of a cut message",
             mid="14"),
        subject="Cut", text=["The start of a cut message"],
    )  # fmt: skip
    add(
        "multipart-without-boundary",
        _msg(["From: g@example.org", "Subject: No boundary", "MIME-Version: 1.0",
              "Content-Type: multipart/mixed"],
             b"Just some text where parts should be.\r\n", mid="15"),
        subject="No boundary",
    )  # fmt: skip
    add(
        "malformed-headers",
        b"From: <<<not an address>>>\r\nSubject: =?utf-8?B?broken==?= =?=?\r\n"
        b"To: ;;;,,,@@@\r\nDate: yesterday-ish\r\nX-Weird:\r\n continued\r\n"
        b"No colon header line\r\nContent-Type: text/plain; charset=\"\r\n\r\nbody text\r\n",
        text=["body text"],
    )  # fmt: skip
    add(
        "no-headers-at-all",
        b"\r\nJust a body with no headers.\r\n",
        text=["Just a body with no headers."],
    )
    add(
        "empty-message",
        b"",
    )
    add(
        "nul-bytes-and-control",
        _msg(["From: h@example.org", "Subject: Nul\x07 bell"],
             b"before\x00after\x1b[31m red\r\n", mid="19"),
        subject="Nul", text=["before", "after"],
    )  # fmt: skip
    add(
        "quoted-printable-soft-breaks",
        _msg(["From: i@example.org", "Subject: QP", "Content-Type: text/plain; charset=utf-8",
              "Content-Transfer-Encoding: quoted-printable"],
             b"A very long line that was wrapped =\r\nby the mailer and contains =C3=A9.\r\n",
             mid="20"),
        subject="QP", text=["wrapped by the mailer and contains é"],
    )  # fmt: skip
    add(
        "forwarded-message-rfc822",
        _msg(["From: j@example.org", "Subject: Fwd: hello", "MIME-Version: 1.0",
              'Content-Type: multipart/mixed; boundary="f"'],
             _multipart("mixed", "f", [
                 _part("text/plain", b"See below."),
                 _part("message/rfc822",
                       b"From: orig@example.org\r\nSubject: hello\r\n\r\nOriginal text.\r\n"),
             ]), mid="21"),
        subject="Fwd: hello", text=["See below."],
    )  # fmt: skip
    add(
        "html-with-broken-markup",
        _msg(["From: k@example.org", "Subject: Broken HTML",
              "Content-Type: text/html; charset=windows-1252"],
             b"<div><p>Unclosed <b>bold <i>caf\xe9 &euro; &#8364; &bogus; <table><tr><td>A"
             b"<td>B</table><!-- comment <p>hidden --> end", mid="22"),
        subject="Broken HTML", text=["Unclosed", "café", "€", "A B", "end"],
        not_text=["<b>", "hidden"],
    )  # fmt: skip
    add(
        "utf16-body",
        _msg(["From: l@example.org", "Subject: UTF-16",
              "Content-Type: text/plain; charset=utf-16"],
             "Hello in UTF-16".encode("utf-16"), mid="23"),
        subject="UTF-16", text=["Hello in UTF-16"],
    )  # fmt: skip
    add(
        "very-long-subject-folded",
        _msg(["From: m@example.org",
              "Subject: " + " ".join(f"=?utf-8?q?word{i}=C3=A9?=" for i in range(60)).replace(
                  " ", "\r\n ")], "x\r\n", mid="24"),
        subject="word0é",
    )  # fmt: skip
    add(
        "huge-5mb-body",
        _msg(["From: Reports <reports@company.com>", "Subject: Huge report",
              "Content-Type: text/plain; charset=utf-8"], BIG_TEXT, mid="25"),
        subject="Huge report", sender="reports@company.com", text=["Quarterly numbers follow."],
    )  # fmt: skip
    return items
