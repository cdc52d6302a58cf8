"""The IMAP client against a real Dovecot: TLS modes, login, read-only fetch, IDLE, drops."""

from __future__ import annotations

import asyncio
import ssl

import pytest

from dovecot import PASSWORD, USER, DovecotServer
from octopussy.mail.imap import ImapClient, MailLoginError, MailServerError, ssl_context_for

pytestmark = pytest.mark.integration


def simple(subject: str, body: str = "hello", mid: str | None = None) -> bytes:
    mid_line = f"Message-ID: <{mid}@test>\r\n" if mid else ""
    return f"From: a@example.org\r\nSubject: {subject}\r\n{mid_line}\r\n{body}\r\n".encode()


async def connected(server: DovecotServer, tls: str = "plain") -> ImapClient:
    port = server.ssl_port if tls == "imaps" else server.port
    context = ssl_context_for(server.cert) if tls != "plain" else None
    client = ImapClient("127.0.0.1", port, tls=tls, ssl_context=context, timeout=10)
    await client.connect()
    await client.login(USER, PASSWORD)
    return client


@pytest.mark.parametrize("tls", ["plain", "starttls", "imaps"])
async def test_each_tls_mode_logs_in_and_reads(dovecot: DovecotServer, tls: str) -> None:
    dovecot.append(simple("one"), simple("two"))
    client = await connected(dovecot, tls)
    try:
        status = await client.examine("INBOX")
        assert status.exists == 2
        assert status.uidnext == 3
        assert await client.uids_after(0) == [1, 2]
        assert await client.uids_after(1) == [2]
        # "n:*" returns the highest UID even when it is below n: not new mail.
        assert await client.uids_after(2) == []
        messages = await client.fetch([1, 2], max_bytes=100_000)
        assert [m.uid for m in messages] == [1, 2]
        assert b"Subject: two" in messages[1].raw
        assert messages[0].internaldate is not None
    finally:
        await client.aclose()


async def test_imaps_refuses_an_untrusted_certificate(dovecot: DovecotServer) -> None:
    client = ImapClient("127.0.0.1", dovecot.ssl_port, tls="imaps", timeout=10)
    with pytest.raises(MailServerError, match="TLS failed"):
        await client.connect()
    await client.aclose()


async def test_starttls_on_the_imaps_port_fails_clearly(dovecot: DovecotServer) -> None:
    client = ImapClient(
        "127.0.0.1",
        dovecot.ssl_port,
        tls="starttls",
        ssl_context=ssl_context_for(dovecot.cert),
        timeout=3,
    )
    with pytest.raises(MailServerError):
        await client.connect()
    await client.aclose()


async def test_wrong_password_is_a_login_error(dovecot: DovecotServer) -> None:
    client = ImapClient("127.0.0.1", dovecot.port, tls="plain", timeout=10)
    await client.connect()
    with pytest.raises(MailLoginError, match="refused the login"):
        await client.login(USER, "wrong")
    await client.aclose()


async def test_nothing_listening_is_a_server_error() -> None:
    from dovecot import free_port

    client = ImapClient("127.0.0.1", free_port(), tls="plain", timeout=5)
    with pytest.raises(MailServerError, match="cannot connect"):
        await client.connect()


async def test_fetching_never_sets_seen(dovecot: DovecotServer) -> None:
    dovecot.append(simple("unread 1"), simple("unread 2"))
    client = await connected(dovecot)
    try:
        await client.examine("INBOX")
        await client.fetch([1, 2], max_bytes=1_000_000)
        await client.fetch([1, 2], max_bytes=0, headers_only=True)
        flags = await client.flags([1, 2])
    finally:
        await client.aclose()
    assert all("\\Seen" not in f for f in flags.values()), flags
    # And from another connection, after ours is gone.
    assert all("\\Seen" not in f for f in dovecot.flags().values())


async def test_sizes_are_known_before_fetching(dovecot: DovecotServer) -> None:
    dovecot.append(simple("small"), simple("big", "z" * 300_000))
    client = await connected(dovecot)
    try:
        await client.examine("INBOX")
        sizes = await client.sizes([1, 2])
    finally:
        await client.aclose()
    assert sizes[1] < 200
    assert sizes[2] > 300_000


async def test_a_huge_message_is_fetched_only_up_to_the_cap(dovecot: DovecotServer) -> None:
    dovecot.append(simple("huge", "x" * 5_000_000))
    client = await connected(dovecot)
    try:
        await client.examine("INBOX")
        (message,) = await client.fetch([1], max_bytes=200_000)
    finally:
        await client.aclose()
    assert len(message.raw) == 200_000
    assert message.size > 5_000_000
    assert message.truncated


async def test_idle_wakes_on_new_mail_and_returns_false_on_renew(dovecot: DovecotServer) -> None:
    client = await connected(dovecot)
    try:
        await client.examine("INBOX")
        assert await client.idle(0.3) is False  # nothing arrived: renew time
        waiter = asyncio.create_task(client.idle(60))
        await asyncio.sleep(0.2)
        await asyncio.to_thread(dovecot.append, simple("pushed"))
        assert await asyncio.wait_for(waiter, 30) is True
        # The connection is usable again after DONE.
        status = await client.examine("INBOX")
        assert status.exists == 1
    finally:
        await client.aclose()


async def test_a_server_killed_during_idle_raises_at_once(dovecot: DovecotServer) -> None:
    client = await connected(dovecot)
    try:
        await client.examine("INBOX")
        waiter = asyncio.create_task(client.idle(600))
        await asyncio.sleep(0.2)
        await asyncio.to_thread(dovecot.stop)
        with pytest.raises(MailServerError, match="during IDLE"):
            await asyncio.wait_for(waiter, 30)  # bounded: far below the 600 s renew time
    finally:
        await client.aclose()


async def test_unknown_mailbox_says_so(dovecot: DovecotServer) -> None:
    client = await connected(dovecot)
    try:
        with pytest.raises(MailServerError, match="cannot open mailbox 'Nope'"):
            await client.examine("Nope")
    finally:
        await client.aclose()


def test_ssl_context_checks_host_names() -> None:
    context = ssl_context_for(None)
    assert context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED


async def test_a_silent_server_times_out_instead_of_hanging() -> None:
    """Accepts the connection, then says nothing (a hung server, a black-holing proxy)."""
    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = ImapClient("127.0.0.1", port, tls="plain", timeout=0.5)
    try:
        with pytest.raises(MailServerError, match=r"no answer to the greeting in 0\.5s"):
            await client.connect()
    finally:
        await client.aclose()
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()
