"""The mail agent end to end against a real Dovecot: filters before the LLM, IDLE and polling,
no duplicates and nothing lost across restarts, UIDVALIDITY resets and server outages.

Every wait is bounded and waits for an event (a bus message, a completed sync), never a
fixed sleep; "nothing more arrived" is checked after the monitor finished another sync.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from dovecot import PASSWORD, USER, DovecotServer
from mail_corpus import corpus
from octopussy.agents.mail import MailAgent, format_mail_list
from octopussy.bus.base import Inbox
from octopussy.bus.memory import InMemoryBus, MemoryInbox
from octopussy.bus.messages import Message, MessageType
from octopussy.config import MailAgentSettings, load_config
from octopussy.display import format_message
from octopussy.llm.base import Model
from octopussy.mail.imap import ImapClient
from octopussy.mail.monitor import MailboxMonitor
from octopussy.repl import ChatSession, ReplPresenter
from octopussy.runtime import Runtime
from octopussy.store.sqlite import SqliteStore
from octopussy.testing import FunctionModel, ScriptedModel

pytestmark = pytest.mark.integration


def mail(subject: str, *, sender: str = "boss@company.com", body: str = "Hello.") -> bytes:
    mid = f"{subject.replace(' ', '-')}-{time.monotonic_ns()}@test"
    return (
        f"From: Sender <{sender}>\r\nTo: {USER}@example.org\r\nSubject: {subject}\r\n"
        f"Message-ID: <{mid}>\r\nDate: Tue, 01 Dec 2026 08:00:00 +0000\r\n\r\n{body}\r\n"
    ).encode()


def settings_for(server: DovecotServer, **overrides: Any) -> MailAgentSettings:
    values: dict[str, Any] = {
        "imap_host": "127.0.0.1",
        "imap_port": server.port,
        "imap_user": USER,
        "imap_password": PASSWORD,
        "tls": "plain",
        "poll_interval_seconds": 3600,  # an hour: only IDLE can deliver within a test
        # IDLE renewed (DONE, sync, IDLE) every half second: "nothing more came" is then
        # checked after a sync that started later (``Harness.synced``).
        "idle_renew_seconds": 0.5,
        "retry_initial_seconds": 0.05,
        "retry_max_seconds": 0.2,
        "command_timeout_seconds": 10,
    }
    values.update(overrides)
    return MailAgentSettings(**values)


class Harness:
    """A mail agent on a bus and a store that outlive it (a process restart = a new agent)."""

    def __init__(self, store_path: Path) -> None:
        self.store = SqliteStore(store_path)
        self.bus = InMemoryBus()
        self.inbox: Inbox | None = None
        self.agent: MailAgent | None = None
        self._task: asyncio.Task[None] | None = None
        self.notices: list[Message] = []

    async def open(self) -> None:
        await self.store.open()
        self.inbox = await self.bus.register("coordinator")

    async def start(self, settings: MailAgentSettings, model: Model | None) -> MailAgent:
        agent = self.agent = MailAgent(settings, bus=self.bus, store=self.store, model=model)
        await agent.register()
        self._task = asyncio.create_task(agent.run())
        return agent

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self.agent is not None:
            await self.agent.unregister()

    async def close(self) -> None:
        await self.stop()
        await self.bus.close()
        await self.store.close()

    @property
    def monitors(self) -> list[MailboxMonitor]:
        assert self.agent is not None
        return self.agent.monitors

    async def synced(self, monitor: MailboxMonitor | None = None, timeout: float = 30) -> None:
        """Wait until (each) monitor completes its next sync."""
        targets = [monitor] if monitor else self.monitors
        for target in targets:
            target.synced.clear()
        for target in targets:
            try:
                await asyncio.wait_for(target.synced.wait(), timeout)
            except TimeoutError:
                raise AssertionError(f"no sync in {timeout}s: {self.diagnosis()}") from None

    def diagnosis(self) -> str:
        """What the monitors were doing (for a failure message)."""
        return "; ".join(f"{m.name}: {m.stats}" for m in self.monitors) if self.agent else "-"

    async def next(self, timeout: float = 30) -> Message:
        """The next MAIL_NOTIFICATION (status notices are kept in ``notices``)."""
        assert self.inbox is not None
        deadline = time.monotonic() + timeout
        while True:
            try:
                message = await asyncio.wait_for(
                    self.inbox.get(), max(0.0, deadline - time.monotonic())
                )
            except TimeoutError:
                raise AssertionError(
                    f"no mail notification in {timeout}s: {self.diagnosis()}; "
                    f"notices: {[m.payload.get('text') for m in self.notices]}"
                ) from None
            await self.inbox.ack(message)
            if message.type is MessageType.MAIL_NOTIFICATION:
                return message
            self.notices.append(message)

    async def notice(self, timeout: float = 30) -> Message:
        """The next status notice (AGENT_NOTIFICATION)."""
        assert self.inbox is not None
        if self.notices:
            return self.notices.pop(0)
        message = await asyncio.wait_for(self.inbox.get(), timeout)
        await self.inbox.ack(message)
        assert message.type is MessageType.AGENT_NOTIFICATION, message
        return message

    async def pending(self) -> list[Message]:
        """Whatever is waiting in the coordinator's inbox now (taken out)."""
        inbox = self.inbox
        assert isinstance(inbox, MemoryInbox)
        waiting = [*self.notices]
        self.notices.clear()
        while inbox.qsize():
            message = await inbox.get()
            await inbox.ack(message)
            waiting.append(message)
        return waiting


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(tmp_path / "state.db")
    await h.open()
    yield h
    await h.close()


async def until(condition: Callable[[], bool], timeout: float = 30) -> None:
    """Wait (bounded) for a condition the agent's own tasks make true."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.02)


async def append(server: DovecotServer, *raw: bytes, mailbox: str = "INBOX") -> None:
    await asyncio.to_thread(server.append, *raw, mailbox=mailbox)


# -- filters before the LLM -----------------------------------------------------------------


async def test_matching_mail_is_summarized_and_announced(
    dovecot: DovecotServer, harness: Harness
) -> None:
    model = ScriptedModel(["The boss wants the budget by Friday."])
    settings = settings_for(dovecot, filters=[{"field": "sender", "pattern": r"boss@company\."}])
    await harness.start(settings, model)
    await harness.synced()
    await append(dovecot, mail("Budget", body="Please send the budget by Friday."))
    message = await harness.next()
    payload = message.payload
    assert payload["sender"] == "Sender <boss@company.com>"
    assert payload["subject"] == "Budget"
    assert payload["summary"] == "The boss wants the budget by Friday."
    assert payload["summary_source"] == "llm"
    assert payload["uid"] == 1
    assert len(model.calls) == 1
    assert "Please send the budget by Friday." in model.calls[0].last_user_text
    assert format_message(message).splitlines() == [
        "[MAIL] From: Sender <boss@company.com>",
        "       Subject: Budget",
        "       Summary: The boss wants the budget by Friday.",
    ]


async def test_unmatched_mail_costs_no_llm_call(dovecot: DovecotServer, harness: Harness) -> None:
    model = ScriptedModel(["summary of the second"])
    settings = settings_for(
        dovecot,
        filters=[
            {"name": "boss", "field": "sender", "pattern": "boss@"},
            {"field": "subject", "pattern": "urgent"},
        ],
        match="all",
    )
    agent = await harness.start(settings, model)
    await harness.synced()
    await append(
        dovecot,
        mail("Newsletter", sender="news@shop.example"),  # neither rule
        mail("Lunch?", sender="boss@company.com"),  # only one rule: "all" says no
        mail("URGENT: call me", sender="boss@company.com"),  # both
    )
    message = await harness.next()
    assert message.payload["subject"] == "URGENT: call me"
    assert message.payload["filters"] == ["boss", "subject~/urgent/"]
    # The two others were read and dropped without any model call.
    assert len(model.calls) == 1
    assert "URGENT" in model.calls[0].last_user_text
    assert agent.counters.seen == 3
    assert agent.counters.matched == 1
    await harness.synced()
    assert await harness.pending() == []


async def test_llm_failure_still_notifies_with_the_first_lines(
    dovecot: DovecotServer, harness: Harness
) -> None:
    model = ScriptedModel([RuntimeError("connection refused by the model server")])
    await harness.start(settings_for(dovecot), model)
    await harness.synced()
    await append(dovecot, mail("Report", body="First line.\r\nSecond line.\r\n\r\nThird."))
    payload = (await harness.next()).payload
    assert payload["summary_source"] == "fallback"
    assert payload["summary"].startswith("First line. / Second line. / Third.")
    assert "the model failed: connection refused" in payload["summary"]


# -- IDLE and polling -------------------------------------------------------------------------


async def test_idle_push_delivers_without_polling(dovecot: DovecotServer, harness: Harness) -> None:
    await harness.start(settings_for(dovecot, summarize=False, idle_renew_seconds=1700), None)
    await harness.synced()
    (monitor,) = harness.monitors
    assert monitor.stats.mode == "idle"
    started = time.monotonic()
    await append(dovecot, mail("Pushed"))
    message = await harness.next(timeout=30)  # the poll interval is an hour
    latency = time.monotonic() - started
    assert message.payload["subject"] == "Pushed"
    assert monitor.stats.idle_wakeups >= 1
    print(f"IDLE: APPEND -> notification in {latency * 1000:.0f} ms")


async def test_idle_is_renewed_before_the_server_timeout(
    dovecot: DovecotServer, harness: Harness
) -> None:
    await harness.start(settings_for(dovecot, summarize=False, idle_renew_seconds=0.3), None)
    await harness.synced()
    (monitor,) = harness.monitors
    # Each renewal ends IDLE (DONE), syncs and starts IDLE again on the same connection.
    await until(lambda: monitor.stats.syncs >= 4)
    assert monitor.stats.connects == 1
    await append(dovecot, mail("After renewals"))
    assert (await harness.next()).payload["subject"] == "After renewals"


async def test_mail_arriving_during_a_sync_is_not_left_for_the_next_renewal(
    dovecot: DovecotServer, harness: Harness
) -> None:
    """New mail announced in the middle of a sync (in a FETCH response, not in IDLE) must
    be picked up at once: the server does not announce it a second time."""
    settings = settings_for(dovecot, summarize=False, idle_renew_seconds=1700, fetch_batch=1)
    agent = await harness.start(settings, None)
    await harness.synced()
    real = agent.process
    arrived = False

    async def append_during_the_sync(item: Any) -> None:
        nonlocal arrived
        if not arrived:
            arrived = True
            await append(dovecot, mail("Arrived mid-sync"))
        await real(item)

    for monitor in agent.monitors:
        monitor.handler = append_during_the_sync
    await append(dovecot, mail("First"), mail("Second"))
    got = [(await harness.next(timeout=30)).payload["subject"] for _ in range(3)]
    assert got == ["First", "Second", "Arrived mid-sync"]


async def test_polling_when_the_server_has_no_idle(
    dovecot_noidle: DovecotServer, harness: Harness
) -> None:
    settings = settings_for(dovecot_noidle, summarize=False, poll_interval_seconds=0.2)
    await harness.start(settings, None)
    await harness.synced()
    (monitor,) = harness.monitors
    assert monitor.stats.mode == "polling"
    await append(dovecot_noidle, mail("Polled"))
    assert (await harness.next()).payload["subject"] == "Polled"
    assert monitor.stats.idle_wakeups == 0


async def test_idle_off_in_config_polls(dovecot: DovecotServer, harness: Harness) -> None:
    settings = settings_for(dovecot, summarize=False, idle=False, poll_interval_seconds=0.2)
    await harness.start(settings, None)
    await harness.synced()
    assert harness.monitors[0].stats.mode == "polling"
    await append(dovecot, mail("Polled anyway"))
    assert (await harness.next()).payload["subject"] == "Polled anyway"


# -- no duplicates, nothing lost ----------------------------------------------------------------


async def test_first_start_leaves_existing_mail_alone(
    dovecot: DovecotServer, harness: Harness
) -> None:
    await append(dovecot, mail("Old 1"), mail("Old 2"))
    await harness.start(settings_for(dovecot, summarize=False), None)
    await harness.synced()
    await append(dovecot, mail("New"))
    assert (await harness.next()).payload["subject"] == "New"
    await harness.synced()
    assert await harness.pending() == []


async def test_restart_neither_repeats_nor_misses_mail(
    dovecot: DovecotServer, harness: Harness
) -> None:
    settings = settings_for(dovecot, summarize=False)
    await harness.start(settings, None)
    await harness.synced()
    await append(dovecot, mail("Before stop"))
    assert (await harness.next()).payload["subject"] == "Before stop"
    await harness.stop()

    # Mail arrives while nothing is running.
    await append(dovecot, mail("While down 1"), mail("While down 2"))
    await harness.start(settings, None)
    got = [(await harness.next()).payload["subject"] for _ in range(2)]
    assert got == ["While down 1", "While down 2"]
    await harness.synced()
    assert await harness.pending() == []

    # A second restart with nothing new: nothing at all.
    await harness.stop()
    await harness.start(settings, None)
    await harness.synced()
    await harness.synced()  # a later one, after an IDLE renewal
    assert await harness.pending() == []


async def test_one_process_per_data_dir_watches_and_the_next_takes_over(
    dovecot: DovecotServer, harness: Harness, tmp_path: Path
) -> None:
    """Two agents on one data dir (as `chat` and `serve` would be): only the lock holder
    announces; when it stops the other takes over without repeating anything."""
    settings = settings_for(dovecot, summarize=False)
    lock = tmp_path / "home" / "mail.lock"

    def make(name: str) -> MailAgent:
        return MailAgent(
            settings,
            bus=harness.bus,
            store=harness.store,
            model=None,
            name=name,
            lock_path=lock,
            lock_retry_seconds=0.05,
        )

    first, second = make("mail_first"), make("mail_second")
    for agent in (first, second):
        await agent.register()
    first_task = asyncio.create_task(first.run())
    await asyncio.wait_for(first.monitors[0].synced.wait(), 30)
    second_task = asyncio.create_task(second.run())
    try:
        await append(dovecot, mail("Only once"))
        message = await harness.next()
        assert (message.sender, message.payload["subject"]) == ("mail_first", "Only once")
        await harness.synced(first.monitors[0])
        assert second.monitors[0].stats.syncs == 0  # waiting for the lock, not watching
        assert await harness.pending() == []

        first_task.cancel()
        await asyncio.gather(first_task, return_exceptions=True)
        await asyncio.wait_for(second.monitors[0].synced.wait(), 30)
        await append(dovecot, mail("After the takeover"))
        message = await harness.next()
        assert (message.sender, message.payload["subject"]) == ("mail_second", "After the takeover")
        await harness.synced(second.monitors[0])
        assert await harness.pending() == []
    finally:
        for task in (first_task, second_task):
            task.cancel()
        await asyncio.gather(first_task, second_task, return_exceptions=True)


async def test_old_processed_keys_are_pruned(dovecot: DovecotServer, harness: Harness) -> None:
    old = time.time() - 91 * 86400
    await harness.store.mark_seen("mail", "acct|INBOX|1|1", timestamp=old)
    await harness.store.mark_seen("mail-message-id", "acct|INBOX|abc", timestamp=old)
    await harness.store.mark_seen("mail", "acct|INBOX|1|2")  # recent: kept
    agent = await harness.start(settings_for(dovecot, summarize=False, remember_days=90), None)
    await asyncio.wait_for(agent.pruned.wait(), 30)
    assert not await harness.store.is_seen("mail", "acct|INBOX|1|1")
    assert not await harness.store.is_seen("mail-message-id", "acct|INBOX|abc")
    assert await harness.store.is_seen("mail", "acct|INBOX|1|2")


async def test_a_crash_between_notify_and_commit_is_not_lost(
    dovecot: DovecotServer, harness: Harness
) -> None:
    """The key is stored only after the notification went out: a failing handler means the
    message is tried again (after the retry), never dropped."""
    settings = settings_for(dovecot, summarize=False)
    agent = await harness.start(settings, None)
    await harness.synced()
    real = agent.process
    failures = 0

    async def flaky(item: Any) -> None:
        nonlocal failures
        if failures == 0:
            failures += 1
            raise OSError("disk full while notifying")
        await real(item)

    for monitor in agent.monitors:
        monitor.handler = flaky
    await append(dovecot, mail("Retried"))
    assert (await harness.next()).payload["subject"] == "Retried"
    assert failures == 1
    await harness.synced()
    # The failure was reported once, and its end; the mail itself came exactly once.
    texts = [m.payload["text"] for m in await harness.pending()]
    assert len(texts) == 2
    assert "disk full while notifying" in texts[0]
    assert "connected again" in texts[1]


async def test_uidvalidity_reset_announces_only_new_mail(
    dovecot: DovecotServer, harness: Harness
) -> None:
    settings = settings_for(dovecot, summarize=False)
    await harness.start(settings, None)
    await harness.synced()
    await append(dovecot, mail("Known 1"), mail("Known 2"))
    assert [(await harness.next()).payload["subject"] for _ in range(2)] == ["Known 1", "Known 2"]
    await harness.stop()

    new_validity = await asyncio.to_thread(dovecot.reset_uidvalidity)
    await append(dovecot, mail("After reset"))
    await harness.start(settings, None)
    message = await harness.next()
    assert message.payload["subject"] == "After reset"
    assert message.payload["uidvalidity"] == new_validity
    await harness.synced()
    assert await harness.pending() == []


async def test_uidvalidity_reset_while_running(dovecot: DovecotServer, harness: Harness) -> None:
    await harness.start(settings_for(dovecot, summarize=False), None)
    await harness.synced()
    await append(dovecot, mail("Known"))
    assert (await harness.next()).payload["subject"] == "Known"
    new_validity = await asyncio.to_thread(dovecot.reset_uidvalidity)
    await append(dovecot, mail("New after the reset"))
    message = await harness.next()
    assert message.payload["subject"] == "New after the reset"
    assert message.payload["uidvalidity"] == new_validity
    await harness.synced()
    await harness.synced()
    mails = [m for m in await harness.pending() if m.type is MessageType.MAIL_NOTIFICATION]
    assert mails == []


async def test_server_killed_and_restarted_mid_run(
    dovecot: DovecotServer, harness: Harness
) -> None:
    settings = settings_for(dovecot, summarize=False)
    await harness.start(settings, None)
    await harness.synced()
    (monitor,) = harness.monitors
    await append(dovecot, mail("Before the crash"))
    assert (await harness.next()).payload["subject"] == "Before the crash"

    await asyncio.to_thread(dovecot.stop)
    down = await harness.notice()
    assert "retrying" in down.payload["text"]
    assert down.payload["label"] == "MAIL"
    failures = monitor.stats.failures
    await until(lambda: monitor.stats.failures >= failures + 3)  # several retries ...
    assert await harness.pending() == []  # ... reported once, not in a loop

    await asyncio.to_thread(dovecot.start)
    await append(dovecot, mail("After the restart"))
    assert (await harness.next()).payload["subject"] == "After the restart"
    up = await harness.notice()
    assert "connected again" in up.payload["text"]
    assert monitor.stats.problems_reported == 1
    await harness.synced()
    assert await harness.pending() == []


async def test_wrong_password_is_reported_once(dovecot: DovecotServer, harness: Harness) -> None:
    await harness.start(settings_for(dovecot, imap_password="wrong"), ScriptedModel([]))
    notice = await harness.notice()
    assert "refused the login of 'alice'" in notice.payload["text"]
    (monitor,) = harness.monitors
    await until(lambda: monitor.stats.failures >= 4)
    assert await harness.pending() == []
    assert monitor.stats.problems_reported == 1


async def test_seen_flags_are_never_set(dovecot: DovecotServer, harness: Harness) -> None:
    await harness.start(settings_for(dovecot, summarize=False), None)
    await harness.synced()
    await append(dovecot, mail("Unread 1"), mail("Unread 2"))
    await harness.next()
    await harness.next()
    flags = await asyncio.to_thread(dovecot.flags)
    assert len(flags) == 2
    assert all("\\Seen" not in value for value in flags.values()), flags


# -- awkward mail, several accounts ---------------------------------------------------------------


async def test_corpus_of_awkward_mail_goes_through_without_a_crash(
    dovecot: DovecotServer, harness: Harness
) -> None:
    prompts: list[str] = []

    def summarize(messages: Any, info: Any) -> str:
        prompts.append(info.last_user_text)
        return f"summary {len(prompts)}"

    settings = settings_for(dovecot, max_fetch_bytes=1_000_000, max_summary_chars=3000)
    agent = await harness.start(settings, FunctionModel(summarize))
    await harness.synced()
    items = [item for item in corpus() if item[1]]  # Dovecot refuses a zero-byte APPEND
    assert len(items) >= 20
    await append(dovecot, *(raw for _, raw, _ in items))
    got = [await harness.next(timeout=60) for _ in items]
    assert [m.payload["uid"] for m in got] == list(range(1, len(items) + 1))
    by_name = {name: m.payload for (name, _, _), m in zip(items, got, strict=True)}
    assert by_name["rfc2047-utf8-b"]["subject"] == "Grüße aus München"
    assert "invoice-2026.pdf" in by_name["nested-mixed-alternative-attachment"]["attachments"]
    assert by_name["huge-5mb-body"]["subject"] == "Huge report"
    assert all(m.payload["summary_source"] == "llm" for m in got)
    # Huge bodies are cut before the LLM.
    assert max(len(p) for p in prompts) < 3000 + 500
    assert agent.counters.llm_failures == 0
    (monitor,) = harness.monitors
    assert monitor.stats.failures == 0


async def test_memory_per_fetch_is_bounded(
    dovecot: DovecotServer, harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Big mail arriving together is fetched a few at a time, each cut at max_fetch_bytes."""
    held: list[int] = []
    real_fetch = ImapClient.fetch

    async def recording_fetch(self: ImapClient, uids: Any, **kwargs: Any) -> Any:
        messages = await real_fetch(self, uids, **kwargs)
        if not kwargs.get("headers_only"):
            held.append(sum(len(m.raw) for m in messages))
        return messages

    monkeypatch.setattr(ImapClient, "fetch", recording_fetch)
    settings = settings_for(
        dovecot, summarize=False, max_fetch_bytes=100_000, max_batch_bytes=250_000
    )
    await harness.start(settings, None)
    await harness.synced()
    await append(dovecot, *(mail(f"Big {n}", body="y" * 400_000) for n in range(6)))
    got = [(await harness.next()).payload["subject"] for _ in range(6)]
    assert got == [f"Big {n}" for n in range(6)]
    assert len(held) >= 3
    assert max(held) <= 250_000  # two truncated messages per FETCH, never all six


async def test_several_accounts_and_mailboxes(dovecot: DovecotServer, harness: Harness) -> None:
    await append(dovecot, mail("creates Work"), mailbox="Work")
    settings = MailAgentSettings(
        summarize=False,
        poll_interval_seconds=3600,
        idle_renew_seconds=0.5,
        retry_initial_seconds=0.05,
        accounts=[
            {
                "name": "plain",
                "imap_host": "127.0.0.1",
                "imap_port": dovecot.port,
                "imap_user": USER,
                "imap_password": PASSWORD,
                "tls": "plain",
                "mailboxes": ["INBOX", "Work"],
            },
            {
                "name": "secure",
                "imap_host": "127.0.0.1",
                "imap_port": dovecot.ssl_port,
                "imap_user": USER,
                "imap_password": PASSWORD,
                "tls": "imaps",
                "tls_ca_file": str(dovecot.cert),
                "filters": [{"field": "subject", "pattern": "urgent"}],
            },
        ],
    )
    await harness.start(settings, None)
    assert [m.name for m in harness.monitors] == ["plain/INBOX", "plain/Work", "secure/INBOX"]
    await harness.synced()
    await append(dovecot, mail("Work item"), mailbox="Work")
    message = await harness.next()
    assert (message.payload["account"], message.payload["mailbox"]) == ("plain", "Work")
    await append(dovecot, mail("Urgent thing"))
    got = {
        (m.payload["account"], m.payload["mailbox"]) for m in [await harness.next() for _ in "ab"]
    }
    assert got == {("plain", "INBOX"), ("secure", "INBOX")}
    await append(dovecot, mail("Routine"))
    message = await harness.next()
    assert message.payload["account"] == "plain"  # "secure" filters it out
    await harness.synced()
    assert await harness.pending() == []


# -- through the runtime: stored, shown, /mail ---------------------------------------------------


class Shown:
    def __init__(self) -> None:
        self.messages: asyncio.Queue[Message] = asyncio.Queue()

    async def show(self, message: Message) -> None:
        await self.messages.put(message)


async def test_runtime_shows_and_stores_the_notification(
    dovecot: DovecotServer, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "llm:\n  provider: scripted\n"
        "mail_agent:\n"
        "  imap_host: 127.0.0.1\n"
        f"  imap_port: {dovecot.port}\n"
        f"  imap_user: {USER}\n"
        "  imap_password: ${TEST_IMAP_PASSWORD}\n"
        "  tls: plain\n"
        "  filters:\n    - field: subject\n      pattern: invoice\n"
    )
    env = {"OCTOPUSSY_HOME": str(tmp_path / "home"), "TEST_IMAP_PASSWORD": PASSWORD}
    loaded = load_config(config, env=env, cwd=tmp_path)
    assert loaded.plain_secrets == ()
    shown = Shown()
    model = ScriptedModel(["Invoice 42 is due."])
    runtime = Runtime(loaded, presenter=shown, models={"mail_agent": model})
    async with runtime:
        agent = runtime.agents["mail_agent"]
        assert isinstance(agent, MailAgent)
        await asyncio.wait_for(agent.monitors[0].synced.wait(), 30)
        await append(dovecot, mail("Lunch"), mail("Invoice 42", sender="billing@vendor.example"))
        message = await asyncio.wait_for(shown.messages.get(), 30)
        assert format_message(message).startswith("[MAIL] From: Sender <billing@vendor.example>")
        events = await runtime.store.events(kind="mail_notification")
        capfd.readouterr()
        await ChatSession(runtime, ReplPresenter(write=lambda _: None)).run_command("/mail")
        listed = capfd.readouterr().out
    assert len(events) == 1
    lines = format_mail_list(events)
    assert "Sender <billing@vendor.example> — Invoice 42" in lines[0]
    assert lines[1].strip() == "Invoice 42 is due."
    assert listed.splitlines() == lines  # what /mail prints in the chat
    assert len(model.calls) == 1


async def test_no_accounts_no_mail_agent(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("llm:\n  provider: scripted\nmail_agent:\n  poll_interval_seconds: 5\n")
    loaded = load_config(config, env={"OCTOPUSSY_HOME": str(tmp_path / "home")}, cwd=tmp_path)
    runtime = Runtime(loaded)
    assert "mail_agent" not in runtime.agents
    await runtime.stop()
    # One-shot runs (`ask`) do not build it even with an account: it would never start.
    config.write_text("llm:\n  provider: scripted\nmail_agent:\n  imap_host: h\n  imap_user: u\n")
    loaded = load_config(config, env={"OCTOPUSSY_HOME": str(tmp_path / "home")}, cwd=tmp_path)
    full = Runtime(loaded)
    assert "mail_agent" in full.agents
    await full.stop()
    one_shot = Runtime(loaded, background_agents=False)
    assert "mail_agent" not in one_shot.agents
    await one_shot.stop()
