"""The spool agent: other programs drop notifications into a folder; the user sees them.

    `octopussy notify "backup done"` ─► <data dir>/spool/<time>-<id>.json ─► SpoolAgent
        (or any script writing that file)        (write tmp + rename)        polls, sends
                                                                              AGENT_NOTIFICATION
                                                                              ─► coordinator

Like ``notify-send`` for the assistant: cron jobs, build scripts and other tools reach a
running ``octopussy chat`` or ``serve`` without a network. A file is deleted only after
its message was handed to the bus, so a crash never loses one; a malformed file is moved
to ``spool/bad/`` with a warning instead of being retried forever.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from octopussy.agents.base import Agent
from octopussy.bus.base import MessageBus
from octopussy.bus.messages import Message, MessageType
from octopussy.store.base import Store

SPOOL_AGENT = "spool"
MAX_TEXT = 4000


def write_spool_file(spool: Path, text: str, *, label: str | None = None) -> Path:
    """Atomically drop one notification into ``spool`` (used by ``octopussy notify``)."""
    spool.mkdir(parents=True, exist_ok=True)
    name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.json"
    payload: dict[str, Any] = {"text": text}
    if label:
        payload["label"] = label
    temporary = spool / f".{name}.tmp"
    temporary.write_text(json.dumps(payload, ensure_ascii=False), encoding="utf-8")
    final = spool / name
    os.replace(temporary, final)
    return final


def _parse(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("text"), str):
        raise ValueError('expected a JSON object with a "text" string')
    payload: dict[str, Any] = {"text": data["text"][:MAX_TEXT]}
    if isinstance(data.get("label"), str) and data["label"].strip():
        payload["label"] = data["label"].strip()[:40]
    return payload


class SpoolAgent(Agent):
    kind = "system"

    def __init__(
        self,
        *,
        bus: MessageBus,
        spool: Path,
        store: Store | None = None,
        recipient: str = "coordinator",
        interval: float = 0.5,
    ) -> None:
        super().__init__(SPOOL_AGENT, bus=bus, store=store)
        self.spool = spool
        self.recipient = recipient
        self.interval = interval

    async def handle(self, message: Message) -> None:
        self.log.debug("spool agent ignores %s", message.type.value)

    def _pending(self) -> list[Path]:
        try:
            return sorted(p for p in self.spool.glob("*.json") if p.is_file())
        except FileNotFoundError:
            return []

    async def drain(self) -> int:
        """Forward every waiting file once; returns how many were forwarded."""
        forwarded = 0
        for path in await asyncio.to_thread(self._pending):
            try:
                payload = await asyncio.to_thread(_parse, path)
            except (OSError, ValueError) as exc:
                await asyncio.to_thread(self._quarantine, path)
                self.log.warning("moved malformed spool file %s to bad/: %s", path.name, exc)
                continue
            await self.send(self.recipient, MessageType.AGENT_NOTIFICATION, payload)
            await asyncio.to_thread(path.unlink, missing_ok=True)
            forwarded += 1
        return forwarded

    def _quarantine(self, path: Path) -> None:
        bad = self.spool / "bad"
        bad.mkdir(exist_ok=True)
        os.replace(path, bad / path.name)

    async def background(self) -> None:
        await asyncio.to_thread(self.spool.mkdir, parents=True, exist_ok=True)
        while True:
            await self.drain()
            await asyncio.sleep(self.interval)
