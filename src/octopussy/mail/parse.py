"""Turn the raw bytes of one mail into what filters and the summary need, whatever arrives.

    raw bytes ──► email (compat32: never raises on bad headers) ──► ParsedMail
                   headers: RFC 2047 words in any charset, unknown charsets replaced
                   body:    text/plain parts preferred; HTML-only mail → readable text
                            (stdlib html.parser); attachments listed by name, not read

Real mail is often broken: a charset nobody knows, base64 with garbage, a header that is
not RFC 2047 at all, a multipart with no closing boundary (also what a truncated fetch
looks like). Every step here degrades to replacement characters instead of raising, so
one odd message never stops the monitor. Pure functions: no I/O.
"""

from __future__ import annotations

import codecs
import email
import email.header
import email.utils
import re
from dataclasses import dataclass
from email.message import Message
from html.parser import HTMLParser

#: Characters of decoded text kept per message (filters see this much; the LLM far less).
MAX_TEXT_CHARS = 500_000
_WS = re.compile(r"[ \t\r\f\v]+")
_BLANK_LINES = re.compile(r"\n{3,}")


@dataclass(frozen=True, slots=True)
class ParsedMail:
    """One message as filters and notifications see it."""

    sender: str
    to: str
    subject: str
    date: str
    message_id: str
    text: str
    attachments: tuple[str, ...] = ()
    html_only: bool = False
    truncated: bool = False

    def first_lines(self, count: int = 3, width: int = 300) -> str:
        """The first non-empty lines of the text (the summary when the LLM fails)."""
        lines = [line.strip() for line in self.text.splitlines() if line.strip()]
        text = " / ".join(lines[:count])
        return text if len(text) <= width else text[: width - 1] + "…"


def _codec(charset: str | None, fallback: str = "utf-8") -> str:
    if not charset:
        return fallback
    name = charset.strip().strip('"').lower()
    try:
        return codecs.lookup(name).name
    except LookupError:
        return fallback


def _decode_bytes(data: bytes, charset: str | None) -> str:
    """Bytes in a declared (maybe wrong or unknown) charset, never raising."""
    if not charset or _codec(charset) == "ascii":
        # Undeclared or "us-ascii" but 8-bit: usually UTF-8, else a Windows code page.
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode("cp1252", errors="replace")
    return data.decode(_codec(charset), errors="replace")


def decode_header(value: object) -> str:
    """A header value with RFC 2047 encoded words decoded, on one line."""
    if value is None:
        return ""
    if isinstance(value, email.header.Header):
        value = str(value)
    text = str(value)
    try:
        parts = email.header.decode_header(text)
    except Exception:  # malformed encoded words: keep the raw text
        parts = [(text, None)]
    out: list[str] = []
    for chunk, charset in parts:
        if isinstance(chunk, bytes):
            out.append(_decode_bytes(chunk, charset))
        else:
            out.append(chunk)
    joined = "".join(out)
    if not joined.strip():
        joined = text  # encoded words that decode to nothing: the raw text says more
    # Surrogates from undecodable 8-bit header bytes (compat32 keeps them escaped).
    joined = joined.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")
    return " ".join(joined.replace("\x00", "").split())


def format_address(value: str) -> str:
    """``Name <addr>`` for each address of a decoded header (the raw text if unparsable)."""
    try:
        pairs = email.utils.getaddresses([value])
    except Exception:
        return value
    shown = []
    for name, address in pairs:
        if not name and not address:
            continue
        shown.append(f"{name} <{address}>" if name and address else (name or address))
    return ", ".join(shown) or value


class _TextExtractor(HTMLParser):
    """HTML to readable text: blocks on their own lines, links kept, scripts dropped."""

    _BLOCKS = frozenset(
        [
            "p",
            "div",
            "br",
            "tr",
            "li",
            "ul",
            "ol",
            "table",
            "h1",
            "h2",
            "h3",
            "h4",
            "h5",
            "h6",
            "blockquote",
            "pre",
            "section",
            "article",
            "header",
            "footer",
            "hr",
            "dd",
            "dt",
        ]
    )
    _SKIP = frozenset({"script", "style", "head", "title", "noscript", "template"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0
        self._href: str | None = None
        self._link_text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skip += 1
        elif tag in self._BLOCKS:
            self.parts.append("\n- " if tag == "li" else "\n")
        elif tag in ("td", "th"):
            self.parts.append(" ")
        elif tag == "a":
            self._href = dict(attrs).get("href")
            self._link_text = []
        elif tag == "img":
            alt = dict(attrs).get("alt")
            if alt:
                self.parts.append(f"[{alt}]")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag in self._BLOCKS:
            self.parts.append("\n")
        elif tag == "a" and self._href:
            text = "".join(self._link_text).strip()
            href = self._href
            if href.startswith(("http://", "https://")) and href != text:
                self.parts.append(f" ({href})")
            self._href = None

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        self.parts.append(data)
        if self._href is not None:
            self._link_text.append(data)


def html_to_text(html: str) -> str:
    """Readable text from HTML mail (stdlib ``html.parser``; broken markup is fine)."""
    parser = _TextExtractor()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # html.parser is lenient; this is a last resort
        return _tidy(re.sub(r"<[^>]*>", " ", html))
    return _tidy("".join(parser.parts))


def _tidy(text: str) -> str:
    lines = [_WS.sub(" ", line).strip() for line in text.replace("\r\n", "\n").split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def _payload_text(part: Message) -> str:
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        payload = None
    if payload is None:
        raw = part.get_payload()
        return raw if isinstance(raw, str) else ""
    if not isinstance(payload, bytes):
        return str(payload)
    return _decode_bytes(payload, part.get_content_charset())


def _filename(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except Exception:
        name = None
    if name is None:
        # Some mailers put it only in Content-Type's name parameter.
        raw = part.get_param("name")
        name = email.utils.collapse_rfc2231_value(raw) if raw else None
    return decode_header(name) if name else None


def _is_attachment(part: Message, filename: str | None) -> bool:
    disposition = (part.get("Content-Disposition") or "").split(";")[0].strip().lower()
    if disposition == "attachment":
        return True
    return filename is not None and part.get_content_maintype() != "text"


def parse_message(
    raw: bytes, *, truncated: bool = False, max_text_chars: int = MAX_TEXT_CHARS
) -> ParsedMail:
    """Parse one message; never raises on malformed input."""
    msg = email.message_from_bytes(raw)
    plain: list[str] = []
    html: list[str] = []
    attachments: list[str] = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        filename = _filename(part)
        if _is_attachment(part, filename):
            attachments.append(filename or part.get_content_type())
            continue
        ctype = part.get_content_type()
        if ctype == "text/plain" or (ctype == "text/enriched"):
            plain.append(_payload_text(part))
        elif ctype == "text/html":
            html.append(_payload_text(part))
        elif part.get_content_maintype() == "text" and not msg.is_multipart():
            plain.append(_payload_text(part))
        elif filename is None and part.get_content_maintype() != "text":
            attachments.append(ctype)
    html_only = not any(p.strip() for p in plain) and bool(html)
    if html_only:
        text = "\n\n".join(html_to_text(h) for h in html)
    else:
        text = "\n\n".join(_tidy(p) for p in plain)
    text = text.replace("\x00", "")
    if len(text) > max_text_chars:
        text, truncated = text[:max_text_chars], True
    return ParsedMail(
        sender=format_address(decode_header(msg.get("From"))),
        to=", ".join(
            value
            for value in (
                format_address(decode_header(msg.get("To"))) if msg.get("To") else "",
                format_address(decode_header(msg.get("Cc"))) if msg.get("Cc") else "",
            )
            if value
        ),
        subject=decode_header(msg.get("Subject")),
        date=decode_header(msg.get("Date")),
        message_id=decode_header(msg.get("Message-ID")),
        text=text,
        attachments=tuple(attachments),
        html_only=html_only,
        truncated=truncated,
    )
