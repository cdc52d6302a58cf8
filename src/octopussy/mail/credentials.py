"""Where an account's password comes from: the config (``${ENV}``) or the system keyring.

    imap_password set (literal or ${IMAP_PASSWORD})  ──► used as is (doctor warns if literal)
    imap_password unset ──► keyring.get_password(keyring_service, imap_user)
                            (``pip install keyring``; ``keyring set octopussy me@example.org``)

``keyring`` is optional: imported only when needed, and its absence is a clear error.
The lookup may block on D-Bus, so it runs in a thread.
"""

from __future__ import annotations

import asyncio
import importlib

from octopussy.config import MailAccount
from octopussy.errors import ConfigError


def password_source(account: MailAccount) -> str:
    """``config`` or ``keyring`` (for doctor and logs; never the password itself)."""
    return "config" if account.imap_password else "keyring"


def _from_keyring(service: str, user: str) -> str | None:
    try:
        keyring = importlib.import_module("keyring")
    except ImportError as exc:
        raise ConfigError(
            "no imap_password and the keyring package is not installed",
            path="mail_agent.imap_password",
            hint="set imap_password: ${IMAP_PASSWORD}, or pip install keyring and run "
            f"`keyring set {service} {user}`",
        ) from exc
    try:
        value = keyring.get_password(service, user)
    except Exception as exc:  # keyring.errors.* : no backend, locked, D-Bus down
        raise ConfigError(
            f"the system keyring failed: {exc}",
            path="mail_agent.imap_password",
            hint="set imap_password: ${IMAP_PASSWORD} instead",
        ) from exc
    return value if isinstance(value, str) else None


async def resolve_password(account: MailAccount) -> str:
    """The password of ``account``; ``ConfigError`` naming what to do when there is none."""
    if account.imap_password:
        return account.imap_password
    value = await asyncio.to_thread(_from_keyring, account.keyring_service, account.imap_user)
    if not value:
        raise ConfigError(
            f"no password for {account.label}: imap_password is unset and the keyring has "
            f"none for service {account.keyring_service!r}",
            path="mail_agent.imap_password",
            hint=f"run `keyring set {account.keyring_service} {account.imap_user}` "
            "or set imap_password: ${IMAP_PASSWORD}",
        )
    return value
