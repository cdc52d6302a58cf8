"""The default setup end to end: the embedded model summarizes a real mail from Dovecot."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from dovecot import PASSWORD, USER, DovecotServer
from octopussy.bus.messages import Message, MessageType
from octopussy.config import load_config
from octopussy.runtime import Runtime

pytestmark = pytest.mark.integration


class Collect:
    def __init__(self) -> None:
        self.mail: asyncio.Queue[Message] = asyncio.Queue()

    async def show(self, message: Message) -> None:
        if message.type is MessageType.MAIL_NOTIFICATION:
            await self.mail.put(message)


async def test_the_embedded_model_summarizes_a_mail(dovecot: DovecotServer, tmp_path: Path) -> None:
    pytest.importorskip("xllamacpp", reason="the `embedded` extra is not installed")
    (tmp_path / "config.yaml").write_text(
        # Greedy decoding: the same summary every run.
        "llm:\n  temperature: 0\nmemory:\n  enabled: false\n"
        "mail_agent:\n"
        f"  imap_host: 127.0.0.1\n  imap_port: {dovecot.port}\n  tls: plain\n"
        f"  imap_user: {USER}\n  imap_password: {PASSWORD}\n"
        "  filters:\n    - field: subject\n      pattern: budget\n"
    )
    loaded = load_config(None, cwd=tmp_path)
    presenter = Collect()
    async with Runtime(loaded, presenter=presenter) as runtime:
        await runtime.warm_up(tools=False)
        agent = runtime.agents["mail_agent"]
        await asyncio.wait_for(agent.monitors[0].synced.wait(), 60)  # type: ignore[attr-defined]
        await asyncio.to_thread(
            dovecot.append,
            b"From: Maria Rossi <maria@company.com>\r\nSubject: Budget for Q3\r\n"
            b"Content-Type: text/html; charset=utf-8\r\n\r\n"
            b"<p>Hi,</p><p>please send me the <b>Q3 budget</b> spreadsheet by Friday noon, "
            b"the board meets on Monday.</p><p>Thanks, Maria</p>",
        )
        async with asyncio.timeout(300):
            message = await presenter.mail.get()
    payload = message.payload
    assert payload["sender"] == "Maria Rossi <maria@company.com>"
    assert payload["summary_source"] == "llm", payload["summary"]
    summary = payload["summary"].lower()
    assert "budget" in summary
    assert "friday" in summary
    assert "<" not in summary  # the HTML was turned into text before the model saw it
