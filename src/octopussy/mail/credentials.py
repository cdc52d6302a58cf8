"""Where an account's password comes from: the config (``${ENV}``) or the system keyring.

    imap_password set (literal or ${IMAP_PASSWORD})  ──► used as is (doctor warns if literal)
    imap_password: keyring:SERVICE ──► keyring.get_password(SERVICE, imap_user)
    imap_password unset ──► keyring.get_password(keyring_service, imap_user)
                            (``keyring set octopussy me@example.org`` stores it)

``keyring`` is optional: imported only when needed, and its absence is a clear error.
The lookup may block on D-Bus, so it runs in a thread.
"""

from __future__ import annotations

import asyncio
import importlib

from octopussy.config import MailAccount
from octopussy.errors import ConfigError

KEYRING_PREFIX = "keyring:"


def _keyring_service(account: MailAccount) -> str | None:
    """The keyring service to ask, or None when the config holds the password itself."""
    value = account.imap_password
    if not value:
        return account.keyring_service
    if value.startswith(KEYRING_PREFIX):
        return value[len(KEYRING_PREFIX) :].strip() or account.keyring_service
    return None


def password_source(account: MailAccount) -> str:
    """``config`` or ``keyring`` (for doctor and logs; never the password itself)."""
    return "config" if _keyring_service(account) is None else "keyring"


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
    service = _keyring_service(account)
    if service is None:
        return str(account.imap_password)
    value = await asyncio.to_thread(_from_keyring, service, account.imap_user)
    if not value:
        raise ConfigError(
            f"no password for {account.label}: the keyring has none for service "
            f"{service!r} and user {account.imap_user!r}",
            path="mail_agent.imap_password",
            hint=f"run `keyring set {service} {account.imap_user}` "
            "or set imap_password: ${IMAP_PASSWORD}",
        )
    return value
