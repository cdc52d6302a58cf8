"""One monitor per (account, mailbox): notice new mail, hand each message over exactly once.

    run() ── forever ──► session: connect ─ login ─ EXAMINE ─ sync ─┬─ IDLE (push or renew)
      ▲   backoff 2 s → 5 min, a problem reported once              └─ or sleep (polling)
      └── MailServerError / timeout / login refused                     ─ EXAMINE ─ sync ...

    sync: state (UIDVALIDITY, last UID) from the store ─► UID SEARCH last+1:* ─► FETCH in
          batches (BODY.PEEK[]<0.cap>) ─► per message: key seen? ─► parse ─► handler
          ─► mark_seen(key) ─► state.last_uid advanced after each batch

Nothing lost, nothing twice: the key of a message is (account, mailbox, UIDVALIDITY, UID),
marked seen only after the handler returned; the last UID survives restarts, so mail that
arrived while the process was down is found by the first search. The first start ever
takes the current UIDNEXT as its baseline (old mail is not announced). When UIDVALIDITY
changes, old UIDs mean nothing: messages whose Message-ID was already handled, or that
arrived before the last sync, are skipped; the rest are handled as new. Memory is bounded
by ``max_batch_bytes`` per FETCH (sizes are asked first); old keys are pruned by the agent.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from octopussy.config import MailAccount, MailAgentSettings
from octopussy.errors import ConfigError
from octopussy.mail.credentials import resolve_password
from octopussy.mail.imap import (
    FetchedMessage,
    ImapClient,
    MailboxStatus,
    MailLoginError,
    MailServerError,
)
from octopussy.mail.imap import ssl_context_for as _ssl_context_for
from octopussy.mail.parse import ParsedMail, parse_message
from octopussy.store.base import Store

SEEN_NAMESPACE = "mail"
MESSAGE_ID_NAMESPACE = "mail-message-id"
STATE_NAMESPACE = "mail"
#: Larger messages are parsed in a thread so the event loop keeps serving IDLE pushes.
_THREAD_PARSE_BYTES = 256_000


@dataclass(frozen=True, slots=True)
class IncomingMail:
    """One new message of one mailbox, parsed."""

    account: str
    mailbox: str
    uidvalidity: int
    uid: int
    mail: ParsedMail
    size: int


Handler = Callable[[IncomingMail], Awaitable[None]]
Reporter = Callable[[str, bool], Awaitable[None]]


@dataclass(slots=True)
class MonitorStats:
    syncs: int = 0
    fetched: int = 0
    handled: int = 0
    skipped: int = 0
    connects: int = 0
    failures: int = 0
    mode: str = "starting"
    last_error: str | None = None
    problems_reported: int = 0
    idle_wakeups: int = 0
    #: ``time.monotonic()`` when IDLE last woke up for new mail (latency measurements).
    last_wakeup: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def mail_key(account: str, mailbox: str, uidvalidity: int, uid: int) -> str:
    return f"{account}|{mailbox}|{uidvalidity}|{uid}"


def message_id_key(account: str, mailbox: str, message_id: str) -> str:
    digest = hashlib.sha256(message_id.encode("utf-8", errors="replace")).hexdigest()[:32]
    return f"{account}|{mailbox}|{digest}"


class MailboxMonitor:
    """Watches one mailbox of one account; ``run()`` never returns on its own."""

    def __init__(
        self,
        account: MailAccount,
        mailbox: str,
        *,
        settings: MailAgentSettings,
        store: Store,
        handler: Handler,
        report: Reporter,
        log: logging.LoggerAdapter[logging.Logger] | logging.Logger,
    ) -> None:
        self.account = account
        self.mailbox = mailbox
        self.settings = settings
        self.store = store
        self.handler = handler
        self.report = report
        self.log = log
        self.stats = MonitorStats()
        #: Set after each completed sync (tests and benchmarks wait on it).
        self.synced = asyncio.Event()
        self._problem: str | None = None
        self._client: ImapClient | None = None
        #: The current session got through its first sync (resets the backoff).
        self._session_ok = False
        self._commits: set[asyncio.Future[None]] = set()

    @property
    def name(self) -> str:
        return f"{self.account.label}/{self.mailbox}"

    @property
    def state_key(self) -> str:
        return f"{self.account.label}|{self.mailbox}"

    # -- the outer loop -------------------------------------------------------------------
    async def run(self) -> None:
        """Sessions forever; failures retried with a growing backoff, reported once."""
        settings = self.settings
        delay = settings.retry_initial_seconds
        while True:
            self._session_ok = False
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except MailLoginError as exc:
                problem = str(exc)
                # Retrying a refused password quickly only risks locking the account.
                delay = max(delay, settings.retry_max_seconds)
            except (MailServerError, ConfigError, OSError, TimeoutError) as exc:
                problem = str(exc)
            except Exception as exc:  # an aioimaplib protocol error, a bug: retry too
                self.log.debug("mail monitor %s failed", self.name, exc_info=exc)
                problem = f"{type(exc).__name__}: {exc}"
            finally:
                if self._commits:
                    await asyncio.gather(*self._commits, return_exceptions=True)
                await self._disconnect()
            self.stats.failures += 1
            self.stats.last_error = problem
            self.stats.mode = "retrying"
            if self._session_ok:
                delay = settings.retry_initial_seconds  # it was working: a fresh outage
            await self._problem_seen(problem)
            self.log.debug("mail %s: retry in %.1fs (%s)", self.name, delay, problem)
            await asyncio.sleep(delay)
            delay = min(settings.retry_max_seconds, delay * 2)

    async def _problem_seen(self, problem: str) -> None:
        if self._problem is None:
            self._problem = problem
            self.stats.problems_reported += 1
            self.log.warning("mail %s: %s; retrying in the background", self.name, problem)
            await self.report(f"{self.name}: {problem}; retrying in the background", False)
        else:
            self._problem = problem

    async def _recovered(self) -> None:
        if self._problem is not None:
            self._problem = None
            self.log.info("mail %s: connected again", self.name)
            await self.report(f"{self.name}: connected again", True)

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.aclose()
            except Exception:
                self.log.debug("closing the IMAP connection failed", exc_info=True)

    # -- one connection -------------------------------------------------------------------
    def _new_client(self) -> ImapClient:
        account = self.account
        context = _ssl_context_for(account.tls_ca_file) if account.tls != "plain" else None
        return ImapClient(
            account.imap_host,
            account.port,
            tls=account.tls,
            ssl_context=context,
            timeout=self.settings.command_timeout_seconds,
        )

    async def _session(self) -> None:
        password = await resolve_password(self.account)
        client = self._client = self._new_client()
        await client.connect()
        await client.login(self.account.imap_user, password)
        self.stats.connects += 1
        use_idle = self.account.idle and "IDLE" in client.capabilities
        first = True
        while True:
            status = await client.examine(self.mailbox)
            client.take_mail_hint()  # EXAMINE's own EXISTS: the sync below covers it
            await self.sync(client, status)
            if first:
                first = False
                self._session_ok = True
                await self._recovered()
                self.stats.mode = "idle" if use_idle else "polling"
                self.log.info(
                    "mail %s: watching (%s)",
                    self.name,
                    "IDLE"
                    if use_idle
                    else f"polling every {self.settings.poll_interval_seconds:g}s",
                )
            if client.take_mail_hint():
                # Mail arrived while we were syncing; the server will not announce it
                # again in IDLE, so sync once more now.
                continue
            if use_idle:
                if await client.idle(self.settings.idle_renew_seconds):
                    self.stats.idle_wakeups += 1
                    self.stats.last_wakeup = time.monotonic()
            else:
                await asyncio.sleep(self.settings.poll_interval_seconds)

    # -- one sync -------------------------------------------------------------------------
    async def sync(self, client: ImapClient, status: MailboxStatus) -> int:
        """Handle every message newer than the stored state; returns how many were new."""
        state = await self.store.get_state(STATE_NAMESPACE, self.state_key)
        now = time.time()
        if state is None:
            baseline = (status.uidnext or 1) - 1
            if status.uidnext is None and status.exists:
                found = await client.uids_after(0)
                baseline = found[-1] if found else 0
            await self._save(status.uidvalidity, baseline, now)
            self.log.info(
                "mail %s: first start, %d existing message(s) left alone",
                self.name,
                status.exists,
            )
            self._done()
            return 0
        last_uid = int(state.get("last_uid", 0))
        if int(state.get("uidvalidity", -1)) != status.uidvalidity:
            handled = await self._after_uidvalidity_change(client, status, state)
        else:
            handled = await self._handle_uids(client, status, await client.uids_after(last_uid))
        self._done()
        return handled

    def _done(self) -> None:
        self.stats.syncs += 1
        self.synced.set()

    async def _save(self, uidvalidity: int, last_uid: int, synced_at: float) -> None:
        await self.store.set_state(
            STATE_NAMESPACE,
            self.state_key,
            {"uidvalidity": uidvalidity, "last_uid": last_uid, "synced_at": synced_at},
        )

    async def _handle_uids(self, client: ImapClient, status: MailboxStatus, uids: list[int]) -> int:
        handled = 0
        batch_size = self.settings.fetch_batch
        for start in range(0, len(uids), batch_size):
            batch = uids[start : start + batch_size]
            # Seen keys first (all looked up together: the store's thread runs them back to
            # back), so mail handled before a crash is not even downloaded again.
            seen = await asyncio.gather(
                *(
                    self.store.is_seen(
                        SEEN_NAMESPACE,
                        mail_key(self.account.label, self.mailbox, status.uidvalidity, uid),
                    )
                    for uid in batch
                )
            )
            todo = [uid for uid, already in zip(batch, seen, strict=True) if not already]
            self.stats.skipped += len(batch) - len(todo)
            for group in await self._by_size(client, todo):
                messages = await client.fetch(group, max_bytes=self.settings.max_fetch_bytes)
                self.stats.fetched += len(messages)
                for message in sorted(messages, key=lambda m: m.uid):
                    if await self._handle_one(status.uidvalidity, message):
                        handled += 1
            # Advance past the whole batch: a UID the server did not return was expunged
            # meanwhile and is simply gone.
            await self._save(status.uidvalidity, batch[-1], time.time())
        if not uids:
            state = await self.store.get_state(STATE_NAMESPACE, self.state_key) or {}
            await self._save(status.uidvalidity, int(state.get("last_uid", 0)), time.time())
        return handled

    async def _by_size(self, client: ImapClient, uids: list[int]) -> list[list[int]]:
        """Split ``uids`` so one FETCH holds at most ``max_batch_bytes`` (memory bound)."""
        if len(uids) <= 1:
            return [uids] if uids else []
        cap, budget = self.settings.max_fetch_bytes, self.settings.max_batch_bytes
        sizes = await client.sizes(uids)
        groups: list[list[int]] = [[]]
        used = 0
        for uid in uids:
            size = min(sizes.get(uid, cap), cap)
            if groups[-1] and used + size > budget:
                groups.append([])
                used = 0
            groups[-1].append(uid)
            used += size
        return groups

    async def _handle_one(self, uidvalidity: int, message: FetchedMessage) -> bool:
        account = self.account.label
        key = mail_key(account, self.mailbox, uidvalidity, message.uid)
        if len(message.raw) > _THREAD_PARSE_BYTES:
            parsed = await asyncio.to_thread(
                parse_message, message.raw, truncated=message.truncated
            )
        else:
            parsed = parse_message(message.raw, truncated=message.truncated)
        await self.handler(
            IncomingMail(account, self.mailbox, uidvalidity, message.uid, parsed, message.size)
        )
        # The notification is out: remembering it must finish even if we are being
        # cancelled right now (shutdown), or the next start would announce it again. The
        # task is ours: ``run`` waits for it before it returns or raises.
        commit = asyncio.ensure_future(self._commit(key, parsed.message_id))
        self._commits.add(commit)
        commit.add_done_callback(self._commits.discard)
        await asyncio.shield(commit)
        self.stats.handled += 1
        return True

    async def _commit(self, key: str, message_id: str) -> None:
        marks = [self.store.mark_seen(SEEN_NAMESPACE, key)]
        if message_id:
            marks.append(
                self.store.mark_seen(
                    MESSAGE_ID_NAMESPACE,
                    message_id_key(self.account.label, self.mailbox, message_id),
                )
            )
        await asyncio.gather(*marks)

    async def _after_uidvalidity_change(
        self, client: ImapClient, status: MailboxStatus, state: dict[str, Any]
    ) -> int:
        """The server renumbered the mailbox: find what is really new without UIDs."""
        synced_at = float(state.get("synced_at", 0.0))
        self.log.warning(
            "mail %s: UIDVALIDITY changed (%s -> %d); matching messages by Message-ID",
            self.name,
            state.get("uidvalidity"),
            status.uidvalidity,
        )
        uids = await client.uids_after(0)
        fresh: list[int] = []
        for start in range(0, len(uids), 200):
            batch = uids[start : start + 200]
            for head in await client.fetch(batch, max_bytes=0, headers_only=True):
                message_id = parse_message(head.raw).message_id
                known = message_id and await self.store.is_seen(
                    MESSAGE_ID_NAMESPACE,
                    message_id_key(self.account.label, self.mailbox, message_id),
                )
                # Allow for clock skew between us and the server when comparing dates.
                arrived_before = head.internaldate is not None and head.internaldate < (
                    synced_at - 120
                )
                if not known and not arrived_before:
                    fresh.append(head.uid)
        self.log.info(
            "mail %s: %d of %d message(s) are new after the UIDVALIDITY change",
            self.name,
            len(fresh),
            len(uids),
        )
        handled = await self._handle_uids(client, status, fresh)
        await self._save(status.uidvalidity, uids[-1] if uids else 0, time.time())
        return handled
