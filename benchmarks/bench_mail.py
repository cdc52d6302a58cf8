"""Mail agent: APPEND → [MAIL] shown latency (IDLE and polling), and 1,000-message throughput.

Dovecot on loopback (tests/dovecot.py) ─► Runtime with the mail agent (scripted model)
latency:    one imaplib connection APPENDs, t0 just before it; t1 when the REPL presenter
            gets the MAIL_NOTIFICATION. Baseline: the APPEND round trip alone. With
            polling, each APPEND waits a random part of the interval first (mail does
            not arrive in step with our polls).
throughput: 1,000 messages (a mix of the test corpus, ~2-9 KB each) APPENDed while the
            agent is stopped; then the agent starts and handles them all: messages/s
            from start to the last one handled (connect, search, fetch, parse, filter,
            dedup keys in SQLite, notifications for the ~10 % that match; the LLM step is
            off: summary = first lines). Baseline: the same UID FETCH of all 1,000 with
            our IMAP client and nothing else.

.venv/bin/python benchmarks/bench_mail.py [--samples 20] [--messages 1000] [--poll 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import imaplib
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from dovecot import PASSWORD, USER, DovecotServer  # noqa: E402
from mail_corpus import corpus  # noqa: E402
from octopussy.agents.mail import MailAgent  # noqa: E402
from octopussy.bus.memory import InMemoryBus  # noqa: E402
from octopussy.bus.messages import Message, MessageType  # noqa: E402
from octopussy.config import MailAgentSettings, load_config  # noqa: E402
from octopussy.mail.imap import ImapClient  # noqa: E402
from octopussy.mail.parse import parse_message  # noqa: E402
from octopussy.runtime import Runtime  # noqa: E402
from octopussy.store.sqlite import SqliteStore  # noqa: E402


def message(n: int, *, matching: bool) -> bytes:
    sender = "boss@company.com" if matching else f"news{n}@shop.example"
    return (
        f"From: Someone <{sender}>\r\nTo: {USER}@example.org\r\nSubject: Message {n}\r\n"
        f"Message-ID: <bench-{n}-{time.time_ns()}@bench>\r\n\r\nBody of message {n}.\r\n"
    ).encode()


class Presenter:
    def __init__(self) -> None:
        self.shown: asyncio.Queue[tuple[float, Message]] = asyncio.Queue()

    async def show(self, msg: Message) -> None:
        if msg.type is MessageType.MAIL_NOTIFICATION:
            await self.shown.put((time.perf_counter(), msg))


def _config(root: Path, server: DovecotServer, *, idle: bool, poll: float) -> Path:
    path = root / f"config-{'idle' if idle else 'poll'}.yaml"
    path.write_text(
        "llm:\n  provider: scripted\n"
        "mail_agent:\n"
        f"  imap_host: 127.0.0.1\n  imap_port: {server.port}\n"
        f"  imap_user: {USER}\n  imap_password: {PASSWORD}\n  tls: plain\n"
        f"  idle: {'true' if idle else 'false'}\n  poll_interval_seconds: {poll}\n"
        "  summarize: false\n"
        "  filters:\n    - field: sender\n      pattern: boss@company\\.com\n"
    )
    return path


async def latency(server: DovecotServer, root: Path, *, idle: bool, samples: int, poll: float):  # type: ignore[no-untyped-def]
    home = root / f"home-{'idle' if idle else 'poll'}"
    loaded = load_config(
        _config(root, server, idle=idle, poll=poll), env={"OCTOPUSSY_HOME": str(home)}, cwd=root
    )
    presenter = Presenter()
    runtime = Runtime(loaded, presenter=presenter)
    conn = imaplib.IMAP4("127.0.0.1", server.port)
    conn.login(USER, PASSWORD)
    results: list[float] = []
    appends: list[float] = []
    ours: list[float] = []  # IDLE: from the server's push to [MAIL] shown
    try:
        async with runtime:
            agent = runtime.agents["mail_agent"]
            assert isinstance(agent, MailAgent)
            await asyncio.wait_for(agent.monitors[0].synced.wait(), 30)
            rng = random.Random(5)
            for n in range(samples):
                if not idle:
                    # Mail arrives at any moment of the polling cycle, not right after a sync.
                    await asyncio.sleep(rng.uniform(0, poll))
                raw = message(n, matching=True)
                t0 = time.perf_counter()
                await asyncio.to_thread(conn.append, "INBOX", "", None, raw)
                appends.append(time.perf_counter() - t0)
                t1, shown = await asyncio.wait_for(presenter.shown.get(), 60)
                assert shown.payload["subject"] == f"Message {n}"
                results.append(t1 - t0)
                wakeup = agent.monitors[0].stats.last_wakeup
                if idle and wakeup:
                    ours.append(time.monotonic() - (time.perf_counter() - t1) - wakeup)
    finally:
        conn.logout()
    return results, appends, ours


async def throughput(server: DovecotServer, root: Path, count: int) -> dict[str, float]:
    pool = [raw for _, raw, _ in corpus() if raw and len(raw) < 20_000]
    settings = MailAgentSettings(
        imap_host="127.0.0.1",
        imap_port=server.port,
        imap_user=USER,
        imap_password=PASSWORD,
        tls="plain",
        summarize=False,
        mailboxes=["Bulk"],
        filters=[
            {"field": "sender", "pattern": r"boss@company\.com"},
            {"field": "subject", "pattern": r"^(Invoice|Budget)\b"},
            {"field": "body", "pattern": r"\burgent\b"},
        ],
    )
    server.append(b"Subject: creates Bulk\r\n\r\nx\r\n", mailbox="Bulk")
    store = SqliteStore(root / "throughput.db")
    await store.open()
    bus = InMemoryBus(maxsize=count * 2)
    inbox = await bus.register("coordinator", maxsize=count * 2)

    async def run_agent() -> MailAgent:
        agent = MailAgent(settings, bus=bus, store=store, model=None)
        await agent.register()
        return agent

    # First start: baseline at the current UIDNEXT; then stop and let 1,000 arrive.
    agent = await run_agent()
    task = asyncio.create_task(agent.run())
    await asyncio.wait_for(agent.monitors[0].synced.wait(), 30)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await agent.unregister()
    batch = []
    for n in range(count):
        raw = message(n, matching=True) if n % 10 == 0 else pool[n % len(pool)]
        batch.append(raw)
    conn = imaplib.IMAP4("127.0.0.1", server.port)
    conn.login(USER, PASSWORD)
    for raw in batch:
        conn.append("Bulk", "", None, raw)
    conn.logout()
    size = sum(len(raw) for raw in batch)

    # Baseline: the bare fetch of the same messages, same batches.
    client = ImapClient("127.0.0.1", server.port, tls="plain", timeout=60)
    t0 = time.perf_counter()
    await client.connect()
    await client.login(USER, PASSWORD)
    await client.examine("Bulk")
    uids = await client.uids_after(1)
    fetched = 0
    for start in range(0, len(uids), settings.fetch_batch):
        fetched += len(
            await client.fetch(
                uids[start : start + settings.fetch_batch], max_bytes=settings.max_fetch_bytes
            )
        )
    bare = time.perf_counter() - t0
    await client.aclose()
    assert fetched == count, fetched

    agent = await run_agent()
    t0 = time.perf_counter()
    task = asyncio.create_task(agent.run())
    while agent.counters.seen < count:
        await asyncio.sleep(0.005)
        if task.done():
            task.result()
    elapsed = time.perf_counter() - t0
    matched = agent.counters.matched
    notified = inbox.qsize()
    # Where the time goes: parsing and filtering alone, in process, same messages.
    rules = agent.rules[settings.all_accounts()[0].label]
    t0 = time.perf_counter()
    for raw in batch:
        rules.match(parse_message(raw))
    parse_only = time.perf_counter() - t0
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await bus.close()
    await store.close()
    return {
        "count": count,
        "bytes": size,
        "elapsed": elapsed,
        "bare": bare,
        "matched": matched,
        "notified": notified,
        "parse": parse_only,
    }


def _ms(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return f"{1000 * statistics.median(ordered):7.1f} {1000 * p95:7.1f} {1000 * ordered[0]:7.1f}"


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--poll", type=float, default=1.0, help="polling interval, seconds")
    args = parser.parse_args(argv)
    print(f"python {platform.python_version()}, {os.cpu_count()} cores, {platform.machine()}")
    with tempfile.TemporaryDirectory(prefix="bench-mail-") as tmp:
        root = Path(tmp)
        server = DovecotServer(root / "dovecot").start()
        try:
            idle, appends, ours = await latency(
                server, root, idle=True, samples=args.samples, poll=3600
            )
            poll, _, _ = await latency(
                server, root, idle=False, samples=args.samples, poll=args.poll
            )
            stats: dict[str, Any] = await throughput(server, root, args.messages)
        finally:
            server.stop()
    print(f"\nAPPEND -> [MAIL] shown, ms ({args.samples} samples)   median     p95     min")
    print(f"  baseline: the APPEND round trip alone      {_ms(appends)}")
    print(f"  IDLE                                       {_ms(idle)}")
    print(f"  polling every {args.poll:g} s                      {_ms(poll)}")
    print(f"  IDLE: from the server's push to shown     {_ms(ours)}")
    print(
        f"  IDLE over the APPEND alone (median): "
        f"{statistics.median(idle) / statistics.median(appends):.1f}x"
    )
    rate = stats["count"] / stats["elapsed"]
    bare_rate = stats["count"] / stats["bare"]
    print(
        f"\n{stats['count']} messages at once ({stats['bytes'] / 1e6:.1f} MB), LLM step off:"
        f"\n  agent: {stats['elapsed']:.2f} s = {rate:,.0f} messages/s filtered "
        f"({stats['matched']} matched, {stats['notified']} notifications)"
        f"\n  baseline, bare UID FETCH of the same: {stats['bare']:.2f} s = {bare_rate:,.0f} msg/s"
        f"\n  agent / bare fetch (time): {stats['elapsed'] / stats['bare']:.2f}x"
        f"\n  of which parse + filters alone: {stats['parse']:.2f} s "
        f"({1000 * stats['parse'] / stats['count']:.2f} ms/message)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
