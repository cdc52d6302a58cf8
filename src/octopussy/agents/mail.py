"""The mail agent: watches IMAP mailboxes and tells the coordinator about mail that matters.

    MailAgent.background()
      ├─ MailboxMonitor(account 1, INBOX) ─┐   (one IMAP connection each, IDLE or polling)
      ├─ MailboxMonitor(account 1, Work)  ─┼─► process(mail): filters ──no──► done (no LLM)
      ├─ MailboxMonitor(account 2, INBOX) ─┘                    │yes
      └─ prune processed keys daily                             ▼
                                    summary: LLM on the first max_summary_chars characters
                                             (fails → first lines + a note)
                                                                │
                                     MAIL_NOTIFICATION {sender, subject, summary, ...}
                                       ─► coordinator ─► stored event + [MAIL] block

Connection problems are reported to the user once per outage (an AGENT_NOTIFICATION
labelled MAIL) and once more when the mailbox is reachable again; the monitors retry
with backoff meanwhile. The agent has no inbox work: it only sends.

One process per data dir watches the mail: the agent holds an exclusive lock on
``<data dir>/mail.lock`` while its monitors run. A second ``chat`` or ``serve`` on the same
data dir waits for the lock instead of announcing every mail a second time, and takes
over when the first one exits (the kernel drops the lock even if it is killed).
"""

from __future__ import annotations

import asyncio
import fcntl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from octopussy.agents.base import Agent
from octopussy.bus.base import MessageBus
from octopussy.bus.messages import Message, MessageType
from octopussy.config import MailAgentSettings
from octopussy.errors import OctopussyError
from octopussy.llm.base import ChatMessage, Model, ModelSettings
from octopussy.mail.filters import MailRules
from octopussy.mail.monitor import (
    MESSAGE_ID_NAMESPACE,
    SEEN_NAMESPACE,
    IncomingMail,
    MailboxMonitor,
)
from octopussy.mail.parse import ParsedMail
from octopussy.store.base import EventRecord, Store

MAIL_AGENT = "mail_agent"
MAIL_EVENT = MessageType.MAIL_NOTIFICATION.value

SUMMARY_PROMPT = (
    "You summarize one e-mail for a busy person in one or two short sentences: who wants "
    "what, and any date, amount or action asked for. Plain text only, no greeting, no "
    "preamble, do not repeat the subject line."
)


@dataclass(slots=True)
class MailCounters:
    seen: int = 0
    matched: int = 0
    notified: int = 0
    llm_calls: int = 0
    llm_failures: int = 0


class MailAgent(Agent):
    kind = "mail_agent"

    def __init__(
        self,
        settings: MailAgentSettings,
        *,
        bus: MessageBus,
        store: Store,
        model: Model | None,
        recipient: str = "coordinator",
        name: str = MAIL_AGENT,
        lock_path: Path | None = None,
        lock_retry_seconds: float = 5.0,
    ) -> None:
        super().__init__(name, bus=bus, store=store)
        self._store = store
        self.settings = settings
        #: Set after each pruning of old keys (tests wait on it).
        self.pruned = asyncio.Event()
        #: Held while watching, so one process per data dir announces the mail.
        self.lock_path = lock_path
        self.lock_retry_seconds = lock_retry_seconds
        self.model = model if settings.summarize else None
        self.recipient = recipient
        self.counters = MailCounters()
        self.rules: dict[str, MailRules] = {}
        self.monitors: list[MailboxMonitor] = []
        for account in settings.all_accounts():
            filters, match = settings.filters_for(account)
            self.rules[account.label] = MailRules(filters, match)
            for mailbox in account.mailboxes:
                self.monitors.append(
                    MailboxMonitor(
                        account,
                        mailbox,
                        settings=settings,
                        store=store,
                        handler=self.process,
                        report=self.report,
                        log=self.log,
                    )
                )

    async def handle(self, message: Message) -> None:
        self.log.debug("mail agent ignores %s", message.type.value)

    async def background(self) -> None:
        if not self.monitors:
            self.log.info("no mail account configured; the mail agent is idle")
            return
        if self.lock_path is None:
            await self._watch()
            return
        lock = await self._acquire_lock(self.lock_path)
        try:
            await self._watch()
        finally:
            lock.close()  # releases the lock

    async def _acquire_lock(self, path: Path) -> IO[bytes]:
        """The open lock file, once no other process holds it (checked every few seconds)."""
        waited = False
        while True:
            handle = await asyncio.to_thread(_try_lock, path)
            if handle is not None:
                if waited:
                    self.log.info("mail: the other process stopped; watching mail here now")
                return handle
            if not waited:
                waited = True
                self.log.info(
                    "mail: another octopussy process on this data dir watches the mail "
                    "(%s); this one waits and takes over when it stops",
                    path,
                )
            await asyncio.sleep(self.lock_retry_seconds)

    async def _watch(self) -> None:
        async with asyncio.TaskGroup() as group:
            for monitor in self.monitors:
                group.create_task(monitor.run(), name=f"mail:{monitor.name}")
            group.create_task(self._prune_forever(), name="mail:prune")

    async def _prune_forever(self) -> None:
        """Forget processed keys older than ``remember_days``, now and then daily (the
        per-mailbox last UID keeps old mail from coming back after they are gone)."""
        while True:
            older = time.time() - self.settings.remember_days * 86400
            try:
                for namespace in (SEEN_NAMESPACE, MESSAGE_ID_NAMESPACE):
                    removed = await self._store.prune_seen(namespace, older_than=older)
                    if removed:
                        self.log.info("forgot %d processed mail key(s) in %s", removed, namespace)
            except OctopussyError as exc:  # the store is busy or gone: try again tomorrow
                self.log.warning("could not prune processed mail keys: %s", exc)
            self.pruned.set()
            await asyncio.sleep(86400)

    # -- one message ----------------------------------------------------------------------
    async def process(self, item: IncomingMail) -> None:
        """Filter, summarize and announce one new message (the monitors' handler)."""
        self.counters.seen += 1
        hits = self.rules[item.account].match(item.mail)
        if hits is None:
            self.log.debug(
                "mail %s/%s uid %d: no filter matched", item.account, item.mailbox, item.uid
            )
            return
        self.counters.matched += 1
        summary, source = await self.summarize(item.mail)
        mail = item.mail
        payload = {
            "sender": mail.sender or "Unknown",
            "subject": mail.subject or "No subject",
            "summary": summary,
            "summary_source": source,
            "to": mail.to,
            "date": mail.date,
            "message_id": mail.message_id,
            "account": item.account,
            "mailbox": item.mailbox,
            "uid": item.uid,
            "uidvalidity": item.uidvalidity,
            "attachments": list(mail.attachments),
            "filters": hits,
        }
        await self.send(self.recipient, MessageType.MAIL_NOTIFICATION, payload)
        self.counters.notified += 1
        self.log.info("mail from %s: %s", payload["sender"], payload["subject"])

    async def summarize(self, mail: ParsedMail) -> tuple[str, str]:
        """The summary and where it came from: ``llm``, ``text`` (no model) or ``fallback``."""
        extra = f" Attachments: {', '.join(mail.attachments)}." if mail.attachments else ""
        if self.model is None:
            return (mail.first_lines() or "(no text)") + extra, "text"
        limit = self.settings.max_summary_chars
        text = mail.text[:limit]
        if len(mail.text) > limit or mail.truncated:
            text += "\n[… the rest of the message was cut]"
        prompt = [
            ChatMessage.system(SUMMARY_PROMPT),
            ChatMessage.user(
                f"From: {mail.sender}\nSubject: {mail.subject}\n\n{text or '(no text)'}"
            ),
        ]
        self.counters.llm_calls += 1
        try:
            response = await self.model.complete(
                prompt, settings=ModelSettings(max_tokens=160, temperature=0.1)
            )
            summary = " ".join(response.text.split())
            if not summary:
                raise OctopussyError("the model returned an empty summary")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.counters.llm_failures += 1
            self.log.warning("mail summary failed, showing the first lines: %s", exc)
            first = mail.first_lines() or "(no text)"
            return f"{first}{extra} (no summary: the model failed: {_short(exc)})", "fallback"
        return summary + extra, "llm"

    async def report(self, text: str, recovered: bool) -> None:
        """Tell the user about an outage (once) or its end; never raises."""
        try:
            await self.send(
                self.recipient, MessageType.AGENT_NOTIFICATION, {"label": "MAIL", "text": text}
            )
        except OctopussyError:
            self.log.warning("could not report to %s: %s", self.recipient, text)
        await self._record("mail_status", {"text": text, "recovered": recovered})


def format_mail_list(events: list[EventRecord], *, width: int = 100) -> list[str]:
    """``/mail``: one entry per stored mail notification, oldest first."""
    lines: list[str] = []
    for event in events:
        payload = event.payload.get("payload", event.payload)
        when = time.strftime("%m-%d %H:%M", time.localtime(event.timestamp))
        sender = payload.get("sender", "Unknown")
        subject = payload.get("subject", "No subject")
        summary = " ".join(str(payload.get("summary", "")).split())
        if len(summary) > width:
            summary = summary[: width - 1] + "…"
        lines.append(f"  {when}  {sender} — {subject}")
        if summary:
            lines.append(f"               {summary}")
    return lines


def _try_lock(path: Path) -> IO[bytes] | None:
    """An exclusive ``flock`` on ``path`` (the open file), or None if another holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "ab")  # noqa: SIM115 - kept open while the lock is held
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    except BaseException:
        handle.close()
        raise
    return handle


def _short(exc: BaseException, width: int = 120) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= width else text[: width - 1] + "…"
