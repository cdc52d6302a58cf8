"""A small read-only IMAP client over ``aioimaplib``'s protocol, made safe for a monitor.

    ImapClient.connect()  TCP ─► TLS (imaps) | greeting ─► STARTTLS ─► TLS | plain (loopback)
              .login()    LOGIN, then CAPABILITY again (servers add IDLE etc. after login)
              .examine()  EXAMINE (read-only: nothing can set \\Seen) ─► UIDVALIDITY, UIDNEXT
              .uids_after(n)      UID SEARCH UID n+1:*
              .fetch(uids, cap)   UID FETCH (UID RFC822.SIZE INTERNALDATE BODY.PEEK[]<0.cap>)
              .idle(renew)        IDLE until the server pushes EXISTS or ``renew`` seconds pass

Why not ``aioimaplib.IMAP4`` itself: it has no STARTTLS, its EXAMINE leaves the client in
a state where UID commands are refused, and a command whose connection dies waits until
its timeout. Here every command races the connection-lost event and a timeout, so a
killed server is noticed at once and a silent one after ``timeout`` seconds; both raise
``MailServerError`` for the monitor to retry. Bodies are fetched with a byte cap, so a
5 MB message costs at most ``cap`` bytes of memory, and never with ``RFC822``/``BODY[]``,
which would mark the mail read.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from aioimaplib import aioimaplib

from octopussy.errors import BackendUnavailable

_T = TypeVar("_T")

_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]")
_UIDNEXT = re.compile(rb"\[UIDNEXT (\d+)\]")
_EXISTS = re.compile(rb"^(\d+) EXISTS")
_FETCH_START = re.compile(rb"^\d+ FETCH \(")
_UID = re.compile(rb"\bUID (\d+)")
_SIZE = re.compile(rb"\bRFC822\.SIZE (\d+)")
_INTERNALDATE = re.compile(rb'\bINTERNALDATE "([^"]+)"')
_FLAGS = re.compile(rb"\bFLAGS \(([^)]*)\)")


class MailServerError(BackendUnavailable):
    """The IMAP server is unreachable, dropped us, timed out or refused a command."""


class MailLoginError(MailServerError):
    """The server refused the user name or password."""


@dataclass(frozen=True, slots=True)
class MailboxStatus:
    uidvalidity: int
    uidnext: int | None
    exists: int


@dataclass(frozen=True, slots=True)
class FetchedMessage:
    uid: int
    raw: bytes
    size: int
    internaldate: float | None

    @property
    def truncated(self) -> bool:
        return self.size > len(self.raw)


def _internaldate(text: bytes) -> float | None:
    try:
        return datetime.strptime(text.decode().strip(), "%d-%b-%Y %H:%M:%S %z").timestamp()
    except ValueError:
        return None


def parse_fetch(lines: Sequence[Any]) -> list[FetchedMessage]:
    """The messages of a FETCH response (items may come in any order around the literal)."""
    found: list[FetchedMessage] = []
    attrs = b""
    body: bytes | None = None

    def flush() -> None:
        match = _UID.search(attrs)
        # A FETCH without a literal is an unsolicited flag update, not the message.
        if match is None or body is None:
            return
        size = _SIZE.search(attrs)
        date = _INTERNALDATE.search(attrs)
        raw = bytes(body or b"")
        found.append(
            FetchedMessage(
                uid=int(match.group(1)),
                raw=raw,
                size=int(size.group(1)) if size else len(raw),
                internaldate=_internaldate(date.group(1)) if date else None,
            )
        )

    started = False
    for line in lines:
        if isinstance(line, bytearray):
            body = bytes(line)
            continue
        if not isinstance(line, bytes):
            continue
        if _FETCH_START.match(line):
            if started:
                flush()
            started, attrs, body = True, line, None
        elif started:
            attrs += b" " + line
    if started:
        flush()
    return found


def ssl_context_for(ca_file: Path | None) -> ssl.SSLContext:
    """Certificate and host name checked; ``ca_file`` trusts a private CA (self-signed)."""
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    return context


class _Protocol(aioimaplib.IMAP4ClientProtocol):  # type: ignore[misc]
    """aioimaplib's protocol, noting every ``* n EXISTS`` (it drops those outside IDLE)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, conn_lost_cb: Any) -> None:
        super().__init__(loop, conn_lost_cb)
        self.exists_seen = False

    def _untagged_response(self, line: bytes) -> Any:
        if line.endswith(b" EXISTS"):
            self.exists_seen = True
        return super()._untagged_response(line)


class ImapClient:
    """One connection to one server, one mailbox examined at a time."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: str = "imaps",
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.timeout = timeout
        self._ssl = ssl_context
        self._lost = asyncio.Event()
        self._lost_reason: str = "connection closed by the server"
        self._proto: _Protocol | None = None
        self._idle_task: asyncio.Future[Any] | None = None

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def capabilities(self) -> set[str]:
        return set(self._protocol.capabilities) if self._proto else set()

    def take_mail_hint(self) -> bool:
        """True if the server announced EXISTS since the last call (new mail, maybe)."""
        if self._proto is None:
            return False
        seen, self._proto.exists_seen = self._proto.exists_seen, False
        return seen

    @property
    def _protocol(self) -> _Protocol:
        if self._proto is None:
            raise MailServerError(f"not connected to {self.where}")
        return self._proto

    def _on_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self._lost_reason = f"connection lost: {exc}"
        self._lost.set()

    async def _call(self, awaitable: Awaitable[_T], what: str, timeout: float | None = None) -> _T:
        """Await ``awaitable`` unless the connection drops or ``timeout`` passes first."""
        task = asyncio.ensure_future(awaitable)
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            done, _ = await asyncio.wait(
                {task, lost}, timeout=timeout or self.timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            lost.cancel()
        if task in done:
            return task.result()
        task.cancel()
        if lost in done:
            raise MailServerError(f"{self.where}: {self._lost_reason} during {what}")
        raise MailServerError(
            f"{self.where}: no answer to {what} in {timeout or self.timeout:g}s",
            hint="the server is slow or unreachable; retrying",
        )

    async def connect(self) -> None:
        """Open the connection, read the greeting and set up TLS as configured."""
        loop = asyncio.get_running_loop()
        proto = _Protocol(loop, self._on_lost)
        tls_now = self.tls == "imaps"
        context = self._ssl or ssl.create_default_context()
        try:
            await asyncio.wait_for(
                loop.create_connection(
                    lambda: proto,
                    self.host,
                    self.port,
                    ssl=context if tls_now else None,
                    server_hostname=self.host if tls_now else None,
                ),
                self.timeout,
            )
        except ssl.SSLError as exc:
            raise MailServerError(
                f"{self.where}: TLS failed: {exc.reason or exc}",
                hint="check tls: (imaps on 993, starttls on 143) and tls_ca_file",
            ) from exc
        except (OSError, TimeoutError) as exc:
            detail = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise MailServerError(f"cannot connect to {self.where}: {detail}") from exc
        self._proto = proto
        await self._call(proto.wait("AUTH|NONAUTH"), "the greeting")
        if self.tls == "starttls":
            await self._starttls(context)

    async def _starttls(self, context: ssl.SSLContext) -> None:
        proto = self._protocol
        if "STARTTLS" not in proto.capabilities:
            raise MailServerError(
                f"{self.where} does not offer STARTTLS", hint="use tls: imaps (port 993)"
            )
        command = aioimaplib.Command("STARTTLS", proto.new_tag(), loop=proto.loop)
        response = await self._call(proto.execute(command), "STARTTLS")
        if response.result != "OK":
            raise MailServerError(f"{self.where} refused STARTTLS: {_text(response)}")
        loop = asyncio.get_running_loop()
        transport = proto.transport
        try:
            upgraded = await asyncio.wait_for(
                loop.start_tls(transport, proto, context, server_hostname=self.host),
                self.timeout,
            )
        except (ssl.SSLError, OSError, TimeoutError) as exc:
            raise MailServerError(
                f"{self.where}: TLS after STARTTLS failed: {exc}", hint="check tls_ca_file"
            ) from exc
        proto.transport = upgraded
        # Capabilities before TLS are not to be trusted (RFC 3501 §6.2.1): ask again.
        await self._call(proto.capability(), "CAPABILITY")

    async def login(self, user: str, password: str) -> None:
        proto = self._protocol
        try:
            # Quoted: a user name may hold characters an IMAP atom may not (RFC 3501 §9).
            response = await self._call(proto.login(aioimaplib.quoted(user), password), "LOGIN")
        except aioimaplib.Abort as exc:
            raise MailServerError(f"{self.where}: LOGIN not possible: {exc}") from exc
        if response.result != "OK":
            raise MailLoginError(
                f"{self.where} refused the login of {user!r}: {_text(response)}",
                hint="check imap_user and the password (env variable or keyring)",
            )
        await self._call(proto.capability(), "CAPABILITY")

    async def examine(self, mailbox: str) -> MailboxStatus:
        """Open ``mailbox`` read-only."""
        proto = self._protocol
        response = await self._call(
            proto.simple_command("EXAMINE", aioimaplib.quoted(mailbox)), "EXAMINE"
        )
        if response.result != "OK":
            raise MailServerError(
                f"{self.where}: cannot open mailbox {mailbox!r}: {_text(response)}",
                hint="check mail_agent mailboxes: (names are case-sensitive except INBOX)",
            )
        # aioimaplib only tracks SELECT; EXAMINE opens the mailbox just the same.
        proto.state = aioimaplib.SELECTED
        uidvalidity = uidnext = exists = None
        for line in response.lines:
            if not isinstance(line, bytes):
                continue
            if (m := _UIDVALIDITY.search(line)) is not None:
                uidvalidity = int(m.group(1))
            if (m := _UIDNEXT.search(line)) is not None:
                uidnext = int(m.group(1))
            if (m := _EXISTS.match(line)) is not None:
                exists = int(m.group(1))
        if uidvalidity is None:
            raise MailServerError(f"{self.where}: EXAMINE {mailbox!r} gave no UIDVALIDITY")
        return MailboxStatus(uidvalidity=uidvalidity, uidnext=uidnext, exists=exists or 0)

    async def uids_after(self, last_uid: int) -> list[int]:
        """UIDs greater than ``last_uid``, ascending."""
        response = await self._call(
            self._protocol.search("UID", f"{last_uid + 1}:*", by_uid=True, charset=None),
            "UID SEARCH",
        )
        if response.result != "OK":
            raise MailServerError(f"{self.where}: UID SEARCH failed: {_text(response)}")
        uids: set[int] = set()
        # aioimaplib strips "* SEARCH" from the untagged line: the numbers are left.
        for line in response.lines[:-1]:
            if isinstance(line, bytes):
                parts = line.split()
                if parts and parts[0] == b"SEARCH":
                    parts = parts[1:]
                if all(part.isdigit() for part in parts):
                    uids.update(int(part) for part in parts)
        # "n:*" always includes the highest UID, even when it is below n (RFC 3501 §6.4.8).
        return sorted(uid for uid in uids if uid > last_uid)

    async def fetch(
        self, uids: Sequence[int], *, max_bytes: int, headers_only: bool = False
    ) -> list[FetchedMessage]:
        """The messages ``uids`` (at most ``max_bytes`` of each), without setting \\Seen."""
        if not uids:
            return []
        part = (
            "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"
            if headers_only
            else f"BODY.PEEK[]<0.{max_bytes}>"
        )
        proto = self._protocol
        response = await self._call(
            proto.fetch(
                ",".join(str(uid) for uid in uids),
                f"(UID RFC822.SIZE INTERNALDATE {part})",
                by_uid=True,
            ),
            "UID FETCH",
        )
        if response.result != "OK":
            raise MailServerError(f"{self.where}: UID FETCH failed: {_text(response)}")
        return parse_fetch(response.lines)

    async def sizes(self, uids: Sequence[int]) -> dict[int, int]:
        """RFC822.SIZE of ``uids`` (to plan FETCHes that fit a memory budget)."""
        response = await self._call(
            self._protocol.fetch(",".join(map(str, uids)), "(UID RFC822.SIZE)", by_uid=True),
            "UID FETCH RFC822.SIZE",
        )
        if response.result != "OK":
            raise MailServerError(f"{self.where}: UID FETCH failed: {_text(response)}")
        result: dict[int, int] = {}
        for line in response.lines:
            uid = _UID.search(line) if isinstance(line, bytes) else None
            size = _SIZE.search(line) if uid is not None else None
            if uid is not None and size is not None:
                result[int(uid.group(1))] = int(size.group(1))
        return result

    async def flags(self, uids: Sequence[int]) -> dict[int, str]:
        """FLAGS of ``uids`` (for checks: the monitor never changes them)."""
        response = await self._call(
            self._protocol.fetch(",".join(map(str, uids)), "(UID FLAGS)", by_uid=True),
            "UID FETCH FLAGS",
        )
        result: dict[int, str] = {}
        for line in response.lines:
            if isinstance(line, bytes) and (uid := _UID.search(line)):
                flags = _FLAGS.search(line)
                result[int(uid.group(1))] = flags.group(1).decode() if flags else ""
        return result

    async def idle(self, renew: float) -> bool:
        """Wait in IDLE; True when the server announced new mail, False after ``renew`` s.

        Other pushes (flag changes, expunges) keep waiting. DONE is always sent, so the
        connection is ready for the next command when this returns.
        """
        proto = self._protocol
        while not proto.idle_queue.empty():
            proto.idle_queue.get_nowait()
        self._idle_task = asyncio.ensure_future(proto.idle())
        try:
            await self._call(
                _first(self._idle_task, proto.wait_for_idle_response()), "IDLE", timeout=30
            )
            if not proto.has_pending_idle_command():
                raise MailServerError(f"{self.where} refused IDLE")
            loop = asyncio.get_running_loop()
            deadline = loop.time() + renew
            while True:
                left = deadline - loop.time()
                if left <= 0:
                    return False
                try:
                    # A silent, dead server is caught by the next command's timeout.
                    push = await self._call(proto.idle_queue.get(), "IDLE", timeout=left)
                except MailServerError:
                    if self._lost.is_set():
                        raise
                    return False
                if any(isinstance(line, bytes) and b"EXISTS" in line for line in push):
                    return True
        finally:
            if proto.has_pending_idle_command() and not self._lost.is_set():
                proto.idle_done()
            idle_task, self._idle_task = self._idle_task, None
            if self._lost.is_set():
                idle_task.cancel()  # its answer will never come
            else:
                await self._call(idle_task, "IDLE DONE")

    async def aclose(self) -> None:
        """LOGOUT politely (briefly), then close the socket."""
        proto, self._proto = self._proto, None
        if proto is None:
            return
        if not self._lost.is_set() and proto.state in (
            aioimaplib.AUTH,
            aioimaplib.SELECTED,
            aioimaplib.NONAUTH,
        ):
            with contextlib.suppress(MailServerError, aioimaplib.AioImapException):
                await self._call(proto.logout(), "LOGOUT", timeout=min(2.0, self.timeout))
        if proto.transport is not None:
            proto.transport.close()
        for task in list(proto.tasks):
            task.cancel()


async def _first(*awaitables: Awaitable[Any]) -> None:
    """Return when the first of ``awaitables`` is done (the others keep running)."""
    futures = [asyncio.ensure_future(a) for a in awaitables]
    done, pending = await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)
    for future in pending:
        if future is not futures[0]:  # the IDLE command itself must keep running
            future.cancel()
    for future in done:
        future.result()


def _text(response: Any) -> str:
    for line in reversed(response.lines):
        if isinstance(line, bytes):
            return line.decode(errors="replace")
    return str(response.result)
