"""The mail_agent config: the seed's single-account keys, several accounts, TLS rules,
filters named in errors, secrets flagged for doctor."""

from __future__ import annotations

import pytest

from octopussy.config import Config, parse_config
from octopussy.errors import ConfigError


def parse(text: str, env: dict[str, str] | None = None) -> tuple[Config, list[str]]:
    return parse_config(text, source="config.yaml", env=env or {})


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return str(info.value)


def test_seed_keys_make_one_account() -> None:
    config, plain = parse(
        "mail_agent:\n"
        "  poll_interval_seconds: 30\n"
        "  imap_host: imap.example.org\n"
        "  imap_user: me@example.org\n"
        "  imap_password: ${IMAP_PASSWORD}\n"
        "  filters:\n    - field: sender\n      pattern: boss@company.com\n",
        env={"IMAP_PASSWORD": "pw"},
    )
    assert plain == []
    settings = config.mail_agent
    assert settings is not None
    (account,) = settings.all_accounts()
    assert account.label == "me@example.org@imap.example.org"
    assert (account.port, account.tls, account.mailboxes) == (993, "imaps", ["INBOX"])
    assert account.imap_password == "pw"
    filters, match = settings.filters_for(account)
    assert [f.pattern for f in filters] == ["boss@company.com"]
    assert match == "any"


def test_several_accounts_with_their_own_filters() -> None:
    config, plain = parse(
        "mail_agent:\n"
        "  match: all\n"
        "  filters:\n    - pattern: x\n"
        "  accounts:\n"
        "    - name: work\n"
        "      imap_host: imap.work.example\n"
        "      imap_user: me\n"
        "      imap_password: literal-secret\n"
        "      tls: starttls\n"
        "      mailboxes: [INBOX, Projects]\n"
        "    - imap_host: 127.0.0.1\n"
        "      imap_port: 1143\n"
        "      imap_user: me\n"
        "      tls: plain\n"
        "      match: any\n"
        "      filters:\n        - field: subject\n          pattern: urgent\n"
    )
    settings = config.mail_agent
    assert settings is not None
    work, local = settings.all_accounts()
    assert (work.label, work.port, work.mailboxes) == ("work", 143, ["INBOX", "Projects"])
    assert (local.label, local.port) == ("me@127.0.0.1", 1143)
    assert settings.filters_for(work)[1] == "all"
    local_filters, local_match = settings.filters_for(local)
    assert [f.pattern for f in local_filters] == ["urgent"]
    assert local_match == "any"
    # A literal password is accepted, and doctor is told about it.
    assert plain == ["mail_agent.accounts[0].imap_password"]


def test_a_keyring_reference_is_not_a_plain_secret() -> None:
    _, plain = parse(
        "mail_agent:\n  imap_host: h\n  imap_user: u\n  imap_password: keyring:octopussy\n"
    )
    assert plain == []


def test_plain_imap_only_on_loopback() -> None:
    line = error_of("mail_agent:\n  imap_host: imap.example.org\n  imap_user: u\n  tls: plain\n")
    assert line.startswith("config.yaml: mail_agent: tls: plain")
    assert "loopback" in line
    line = error_of(
        "mail_agent:\n  accounts:\n    - imap_host: mail.example\n      imap_user: u\n"
        "      tls: plain\n"
    )
    assert "mail_agent.accounts[0]" in line
    for host in ("127.0.0.1", "localhost", "::1"):
        config, _ = parse(f"mail_agent:\n  imap_host: '{host}'\n  imap_user: u\n  tls: plain\n")
        assert config.mail_agent is not None


def test_invalid_regex_names_the_filter() -> None:
    line = error_of(
        "mail_agent:\n  filters:\n    - name: boss\n      field: sender\n      pattern: '(boss'\n"
    )
    assert "mail_agent.filters[0].pattern" in line
    assert "filter 'boss': invalid regular expression '(boss'" in line
    line = error_of(
        "mail_agent:\n  accounts:\n    - imap_host: h\n      imap_user: u\n"
        "      filters:\n        - pattern: '[a-'\n"
    )
    assert "mail_agent.accounts[0].filters[0].pattern" in line


def test_host_without_user_and_duplicate_names() -> None:
    assert "imap_user is missing" in error_of("mail_agent:\n  imap_host: h\n")
    assert "imap_host is missing" in error_of("mail_agent:\n  imap_user: u\n")
    line = error_of(
        "mail_agent:\n  imap_host: h\n  imap_user: u\n"
        "  accounts:\n    - imap_host: h\n      imap_user: u\n"
    )
    assert "two accounts are named 'u@h'" in line


def test_bad_field_and_match_values() -> None:
    assert "mail_agent.filters[0].field" in error_of(
        "mail_agent:\n  filters:\n    - field: cc\n      pattern: x\n"
    )
    assert "mail_agent.match" in error_of("mail_agent:\n  match: most\n")
    assert "mail_agent.idle_renew_seconds" in error_of("mail_agent:\n  idle_renew_seconds: 3600\n")


def test_the_commented_example_in_config_example_yaml_validates() -> None:
    """config.example.yaml ships the mail section commented out; uncommented it must load."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "config.example.yaml").read_text()
    block = text[text.index("# mail_agent:") : text.index("# calendar_agent:")]
    lines = [
        line[2:] if line.startswith("# ") else line.lstrip("#")
        for line in block.splitlines()
        if not line.startswith("#   #")  # optional keys left commented inside the example
    ]
    config, plain = parse("\n".join(lines), env={"IMAP_PASSWORD": "a", "WORK_IMAP_PASSWORD": "b"})
    assert config.mail_agent is not None
    labels = [account.label for account in config.mail_agent.all_accounts()]
    assert labels == ["me@example.org@imap.example.org", "work"]
    assert plain == []
