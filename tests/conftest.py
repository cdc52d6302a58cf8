"""Test-wide guards: nothing leaves loopback, and no test reaches a real model endpoint.

The socket guard refuses any connect/sendto to an address outside 127.0.0.0/8 and ::1 (and
name lookups of anything but localhost), so a test that would talk to the outside world
fails loudly instead of sending traffic. Child processes a test starts are not covered:
those tests point them at loopback themselves.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from octopussy.bus.base import Inbox
from octopussy.bus.memory import InMemoryBus
from octopussy.store.sqlite import SqliteStore

_REPO = Path(__file__).resolve().parents[1]
_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", ""}


class NonLoopbackTraffic(RuntimeError):
    pass


def _is_loopback(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode()
    if not isinstance(host, str):
        return False
    if host in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _check(address: Any) -> None:
    if isinstance(address, (str, bytes)):  # AF_UNIX path
        return
    if isinstance(address, tuple) and address and not _is_loopback(address[0]):
        raise NonLoopbackTraffic(f"tests may only reach loopback, not {address!r}")


@pytest.fixture(autouse=True, scope="session")
def _loopback_only() -> Iterator[None]:
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_sendto = socket.socket.sendto
    real_getaddrinfo = socket.getaddrinfo

    def connect(self: socket.socket, address: Any) -> None:
        _check(address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        _check(address)
        return real_connect_ex(self, address)

    def sendto(self: socket.socket, data: Any, *args: Any) -> int:
        _check(args[-1])
        return real_sendto(self, data, *args)  # type: ignore[arg-type]

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and not _is_loopback(host):
            raise NonLoopbackTraffic(f"tests may only resolve loopback names, not {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.socket.sendto = sendto  # type: ignore[method-assign, assignment]
    socket.getaddrinfo = getaddrinfo
    try:
        yield
    finally:
        socket.socket.connect = real_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = real_connect_ex  # type: ignore[method-assign]
        socket.socket.sendto = real_sendto  # type: ignore[method-assign]
        socket.getaddrinfo = real_getaddrinfo


@pytest.fixture(autouse=True, scope="session")
def _model_cache() -> None:
    """The embedded model (1.1 GB) is assembled once into the checkout's .cache/ and reused
    by every test and every later run, instead of once per test home."""
    os.environ.setdefault("OCTOPUSSY_MODEL_CACHE", str(_REPO / ".cache" / "models"))


@pytest.fixture(autouse=True)
def _isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every test gets its own OCTOPUSSY_HOME and no provider secrets from the developer."""
    home = tmp_path_factory.mktemp("octopussy-home")
    monkeypatch.setenv("OCTOPUSSY_HOME", str(home))
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OCTOPUSSY_CONFIG"):
        monkeypatch.delenv(name, raising=False)


# Shared building blocks for agent and orchestration tests -----------------------------
@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """A fresh SQLite store in the test's temp dir."""
    store = SqliteStore(tmp_path / "state.db")
    await store.open()
    yield store
    await store.close()


@pytest.fixture
async def bus() -> AsyncIterator[InMemoryBus]:
    bus = InMemoryBus()
    yield bus
    await bus.close()


@pytest.fixture
async def coordinator(bus: InMemoryBus) -> Inbox:
    """The inbox workers report to."""
    return await bus.register("coordinator")
