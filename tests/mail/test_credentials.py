"""Passwords: from the config (an ${ENV} reference) or the system keyring."""

from __future__ import annotations

from collections.abc import Iterator

import keyring
import pytest
from keyring.backend import KeyringBackend

from octopussy.config import MailAccount
from octopussy.errors import ConfigError
from octopussy.mail.credentials import password_source, resolve_password


class MemoryKeyring(KeyringBackend):
    """A keyring backend in memory (the real desktop keyring is not for tests)."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.items: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.items.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.items[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.items.pop((service, username), None)


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        keyring.set_keyring(previous)


def account(**fields: str) -> MailAccount:
    return MailAccount(imap_host="imap.example.org", imap_user="me@example.org", **fields)


async def test_a_configured_password_is_used() -> None:
    assert await resolve_password(account(imap_password="from-env")) == "from-env"
    assert password_source(account(imap_password="x")) == "config"


async def test_the_keyring_is_asked_when_there_is_none(memory_keyring: MemoryKeyring) -> None:
    memory_keyring.set_password("octopussy", "me@example.org", "from-keyring")
    assert await resolve_password(account()) == "from-keyring"
    assert password_source(account()) == "keyring"
    memory_keyring.set_password("work-mail", "me@example.org", "other")
    assert await resolve_password(account(keyring_service="work-mail")) == "other"
    # The calendar agent's spelling works too: imap_password: keyring:SERVICE
    assert await resolve_password(account(imap_password="keyring:work-mail")) == "other"
    assert password_source(account(imap_password="keyring:work-mail")) == "keyring"


async def test_no_password_anywhere_says_what_to_do(memory_keyring: MemoryKeyring) -> None:
    with pytest.raises(ConfigError) as info:
        await resolve_password(account())
    line = str(info.value)
    assert "no password for me@example.org@imap.example.org" in line
    assert "service 'octopussy' and user 'me@example.org'" in line
    assert "keyring set octopussy me@example.org" in line


async def test_without_the_keyring_package_the_error_says_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "keyring", None)  # makes `import keyring` fail
    with pytest.raises(ConfigError, match="keyring package is not installed"):
        await resolve_password(account())
