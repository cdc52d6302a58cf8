"""``doctor``'s mail check: one real login per account, and where the password comes from."""

from __future__ import annotations

from pathlib import Path

import pytest

from dovecot import PASSWORD, USER, DovecotServer
from octopussy.config import LoadedConfig, load_config
from octopussy.doctor import check_mail

pytestmark = pytest.mark.integration


def loaded(tmp_path: Path, body: str, env: dict[str, str] | None = None) -> LoadedConfig:
    config = tmp_path / "config.yaml"
    config.write_text("llm:\n  provider: scripted\nmail_agent:\n" + body)
    return load_config(config, env={"OCTOPUSSY_HOME": str(tmp_path), **(env or {})}, cwd=tmp_path)


async def test_a_working_account_is_ok(dovecot: DovecotServer, tmp_path: Path) -> None:
    config = loaded(
        tmp_path,
        f"  imap_host: 127.0.0.1\n  imap_port: {dovecot.ssl_port}\n  imap_user: {USER}\n"
        f"  imap_password: ${{PW}}\n  tls: imaps\n  tls_ca_file: {dovecot.cert}\n",
        env={"PW": PASSWORD},
    )
    (check,) = await check_mail(config)
    assert check.status == "OK", check.line()
    assert "(imaps)" in check.detail
    assert "IDLE" in check.detail
    assert "password from config" in check.detail
    assert config.plain_secrets == ()


async def test_a_refused_login_fails_with_a_fix(dovecot: DovecotServer, tmp_path: Path) -> None:
    config = loaded(
        tmp_path,
        f"  imap_host: 127.0.0.1\n  imap_port: {dovecot.port}\n  imap_user: {USER}\n"
        "  imap_password: wrong\n  tls: plain\n  mailboxes: [INBOX]\n",
    )
    (check,) = await check_mail(config)
    assert check.status == "FAIL"
    assert "refused the login" in check.detail
    assert check.fix is not None
    assert "password" in check.fix
    # The literal password is what doctor's secret check warns about.
    assert config.plain_secrets == ("mail_agent.imap_password",)


async def test_an_unknown_mailbox_fails(dovecot: DovecotServer, tmp_path: Path) -> None:
    config = loaded(
        tmp_path,
        f"  imap_host: 127.0.0.1\n  imap_port: {dovecot.port}\n  imap_user: {USER}\n"
        f"  imap_password: {PASSWORD}\n  tls: plain\n  mailboxes: [INBOX, Nope]\n",
    )
    (check,) = await check_mail(config)
    assert check.status == "FAIL"
    assert "'Nope'" in check.detail


async def test_no_mail_agent_no_check(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("llm:\n  provider: scripted\n")
    loaded_config = load_config(config, env={"OCTOPUSSY_HOME": str(tmp_path)}, cwd=tmp_path)
    assert await check_mail(loaded_config) == []
