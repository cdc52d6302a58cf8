"""Configuration: one YAML file, validated once, plus where things live on disk.

    config.yaml ──► YAML parse ──► ${VAR} / ${VAR:-default} interpolation ──► pydantic
                 ──► Config (frozen)  +  Paths (data dir, workspace, model cache, logs)

This is the only module that reads environment variables (STYLE.md §9): the environment is
passed in as a mapping, so tests never touch ``os.environ``. Every mistake becomes a
``ConfigError`` naming the file, the key path and what was expected, in one line.

The keys are the seed's (``llm``, ``coordinator``, ``mail_agent``, ``calendar_agent``,
``mcp_servers``) plus ours. Any agent section may carry an ``llm:`` block that overrides
the global one for that agent (provider, model, base_url, api_key, ...).
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import time as dt_time
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FilePath,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from octopussy.errors import ConfigError

ProviderName = Literal["embedded", "openai", "ollama", "scripted"]
ToolMode = Literal["auto", "native", "json"]

DEFAULT_SYSTEM_PROMPT = (
    "You are the coordinator of Octopussy Light, a personal assistant that runs on the "
    "user's own machine. You talk with the user, answer what you can directly, and hand "
    "real work to worker agents that use tools. Be friendly, precise and brief."
)

#: The model name each provider uses when the config names none.
DEFAULT_MODELS: dict[str, str] = {
    "embedded": "qwen2.5-coder-1.5b-instruct",
    "scripted": "echo",
}

DEFAULT_BASE_URLS: dict[str, str] = {
    "ollama": "http://localhost:11434",
    "openai": "https://api.openai.com/v1",
}


class _Section(BaseModel):
    """Base for every config section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class EmbeddedSettings(_Section):
    """The in-process llama.cpp model."""

    model_path: Path | None = Field(
        default=None, description="A GGUF file; default: the bundled Qwen2.5-Coder-1.5B."
    )
    threads: int | None = Field(
        default=None, ge=1, le=256, description="CPU threads; default 1 on ≤2 cores."
    )
    n_ctx: int = Field(default=4096, ge=512, le=131072)


class LLMOverride(_Section):
    """Per-agent override of the global ``llm`` section; every field optional."""

    provider: ProviderName | None = None
    model: str | None = None
    base_url: str | None = None
    api_key: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1)
    timeout: float | None = Field(default=None, gt=0)
    tool_mode: ToolMode | None = None


class LLMSettings(_Section):
    """The global ``llm`` section (seed keys plus ours)."""

    provider: ProviderName = "embedded"
    base_url: str | None = None
    api_key: str | None = None
    model: str | None = None
    coordinator_model: str | None = None
    worker_model: str | None = None
    temperature: float = Field(default=0.2, ge=0, le=2)
    max_tokens: int | None = Field(default=1024, ge=1)
    timeout: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=2, ge=0, le=10)
    tool_mode: ToolMode = "auto"
    embedded: EmbeddedSettings = EmbeddedSettings()
    script: list[str] | None = Field(
        default=None,
        description="provider scripted: answers in order (default: echo the user's text).",
    )
    script_delay: float = Field(default=0.0, ge=0, description="provider scripted: latency.")


class CoordinatorSettings(_Section):
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    llm: LLMOverride | None = None
    history_turns: int = Field(
        default=40, ge=2, description="Most turns kept before older ones are summarized."
    )
    history_tokens: int = Field(
        default=2500,
        ge=200,
        description="Token budget of the conversation; older turns are summarized beyond it.",
    )
    routing: bool = Field(
        default=True, description="Let the model hand work to workers (off: chat only)."
    )


MailTLS = Literal["imaps", "starttls", "plain"]
_MAIL_ACCOUNT_KEYS = (
    "imap_host",
    "imap_port",
    "imap_user",
    "imap_password",
    "keyring_service",
    "tls",
    "tls_ca_file",
    "mailboxes",
    "idle",
)


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (where plain IMAP is allowed)."""
    if host.lower() in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class MailFilter(_Section):
    """One rule: ``pattern`` (a regular expression) searched in ``field`` of each mail."""

    name: str | None = Field(default=None, description="Shown in errors and notifications.")
    field: Literal["sender", "subject", "body", "to", "any"] = "any"
    pattern: str
    ignore_case: bool = True

    @field_validator("pattern")
    @classmethod
    def _valid_regex(cls, value: str, info: ValidationInfo) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            name = info.data.get("name")
            which = f"filter {name!r}: " if name else ""
            raise ValueError(f"{which}invalid regular expression {value!r}: {exc}") from exc
        return value

    @property
    def label(self) -> str:
        return self.name or f"{self.field}~/{self.pattern}/"


class MailAccount(_Section):
    """One IMAP account; each mailbox of it gets its own monitor (one connection each)."""

    name: str | None = Field(default=None, description="Default: user@host.")
    imap_host: str = Field(min_length=1)
    imap_port: int | None = Field(default=None, ge=1, le=65535, description="993 / 143.")
    imap_user: str = Field(min_length=1)
    imap_password: str | None = Field(
        default=None,
        description="${ENV_VAR}, keyring:SERVICE, or unset: the keyring (keyring_service).",
    )
    keyring_service: str = "octopussy"
    tls: MailTLS = "imaps"
    tls_ca_file: FilePath | None = Field(default=None, description="Trust this CA (self-signed).")
    mailboxes: list[str] = Field(default=["INBOX"], min_length=1)
    idle: bool = Field(default=True, description="Use IMAP IDLE when the server offers it.")
    filters: list[MailFilter] | None = Field(default=None, description="Default: the agent's.")
    match: Literal["any", "all"] | None = None

    @model_validator(mode="after")
    def _plain_only_on_loopback(self) -> MailAccount:
        if self.tls == "plain" and not is_loopback_host(self.imap_host):
            raise ValueError(
                f"tls: plain sends the password unencrypted; it is allowed only for a "
                f"loopback host, not {self.imap_host!r} (use tls: imaps or starttls)"
            )
        return self

    @property
    def label(self) -> str:
        return self.name or f"{self.imap_user}@{self.imap_host}"

    @property
    def port(self) -> int:
        return self.imap_port or (993 if self.tls == "imaps" else 143)


class MailAgentSettings(_Section):
    """The seed's single-account keys (still accepted) plus ``accounts:`` for several."""

    enabled: bool = True
    poll_interval_seconds: float = Field(default=60, gt=0)
    imap_host: str | None = None
    imap_port: int | None = Field(default=None, ge=1, le=65535)
    imap_user: str | None = None
    imap_password: str | None = None
    keyring_service: str = "octopussy"
    tls: MailTLS = "imaps"
    tls_ca_file: FilePath | None = None
    mailboxes: list[str] = Field(default=["INBOX"], min_length=1)
    idle: bool = True
    match: Literal["any", "all"] = "any"
    filters: list[MailFilter] = []
    accounts: list[MailAccount] = []
    summarize: bool = Field(default=True, description="Off: the first lines, no LLM call.")
    idle_renew_seconds: float = Field(
        default=1500, gt=0, le=1740, description="Re-issue IDLE before the server's 30 min."
    )
    command_timeout_seconds: float = Field(default=60, gt=0)
    retry_initial_seconds: float = Field(default=2, gt=0)
    retry_max_seconds: float = Field(default=300, gt=0)
    fetch_batch: int = Field(default=50, ge=1, le=1000, description="Messages per FETCH.")
    max_fetch_bytes: int = Field(
        default=2_000_000, ge=10_000, description="Bytes of one message read (the rest skipped)."
    )
    max_batch_bytes: int = Field(
        default=8_000_000, ge=10_000, description="Bytes held by one FETCH of several messages."
    )
    max_summary_chars: int = Field(
        default=4000, ge=200, description="Characters of the text given to the LLM."
    )
    remember_days: float = Field(default=90, gt=0, description="Processed keys kept this long.")
    llm: LLMOverride | None = None

    @model_validator(mode="after")
    def _single_account_form(self) -> MailAgentSettings:
        if self.imap_host is not None and self.imap_user is None:
            raise ValueError("imap_host is set but imap_user is missing (add imap_user: NAME)")
        if self.imap_user is not None and self.imap_host is None:
            raise ValueError("imap_user is set but imap_host is missing (add imap_host: HOST)")
        try:
            accounts = self.all_accounts()
        except ValidationError as exc:  # the seed-style keys, checked as one account
            error = exc.errors()[0]
            raise ValueError(str(error["msg"]).removeprefix("Value error, ")) from None
        names = [account.label for account in accounts]
        doubles = sorted({name for name in names if names.count(name) > 1})
        if doubles:
            raise ValueError(f"two accounts are named {doubles[0]!r} (give each a name:)")
        return self

    def all_accounts(self) -> list[MailAccount]:
        """The seed-style account (from the top-level keys, when given) and ``accounts``."""
        accounts = list(self.accounts)
        if self.imap_host is not None and self.imap_user is not None:
            keys = {key: getattr(self, key) for key in _MAIL_ACCOUNT_KEYS}
            accounts.insert(0, MailAccount(**keys))
        return accounts

    def filters_for(self, account: MailAccount) -> tuple[list[MailFilter], str]:
        """The filters and match mode an account uses (its own, else the agent's)."""
        filters = self.filters if account.filters is None else account.filters
        return filters, account.match or self.match


CalendarBackendName = Literal["local", "caldav", "google"]
#: Minutes before an occurrence starts: one number or several (``[1440, 15]``).
Reminders = int | list[int]
_SOURCE_NAME = r"^[A-Za-z0-9_.@-]{1,64}$"


def _minutes_list(value: Any) -> Any:
    if isinstance(value, list):
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in value):
            raise ValueError("expected minutes as whole numbers >= 0, e.g. [1440, 15]")
        return sorted(set(value), reverse=True)
    return value


def _time_of_day(value: Any) -> Any:
    # YAML 1.1 reads an unquoted 18:00 as the base-60 integer 1080 (minutes), 09:00 as text.
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value < 24 * 60:
            raise ValueError("expected a time of day such as '09:00'")
        return f"{value // 60:02d}:{value % 60:02d}"
    return value


class CalDavCalendar(_Section):
    """One entry of ``calendars`` given as a mapping: a CalDAV calendar with its own reminders."""

    name: str = Field(min_length=1)
    notify_minutes_before: Reminders | None = None
    all_day_notify_time: dt_time | None = None
    all_day_notify_days_before: int | None = Field(default=None, ge=0, le=30)

    _minutes = field_validator("notify_minutes_before", mode="before")(_minutes_list)
    _at = field_validator("all_day_notify_time", mode="before")(_time_of_day)


class _CalendarFields(_Section):
    """Where one calendar lives (the seed's flat keys, also each entry of ``sources``)."""

    backend: CalendarBackendName = "local"
    local_ics_path: Path | None = Field(
        default=None, description="backend local: an .ics file or a folder of .ics files."
    )
    url: str | None = Field(default=None, description="backend caldav: the server's URL.")
    username: str | None = None
    password: str | None = Field(
        default=None, description="${ENV_VAR}, or keyring:SERVICE (the system keyring)."
    )
    calendars: list[str | CalDavCalendar] = Field(
        default=[],
        description="backend caldav: calendar names to watch (default: all); an entry may be "
        "{name: ..., notify_minutes_before: ...} to give that calendar its own reminders.",
    )
    google_credentials_path: Path | None = None
    google_token_path: Path | None = None
    google_calendar_id: str = "primary"

    def _has_location(self) -> bool:
        if self.backend == "local":
            return self.local_ics_path is not None
        if self.backend == "caldav":
            return self.url is not None
        return self.google_credentials_path is not None or self.google_token_path is not None

    def _missing(self) -> str:
        return {
            "local": "local_ics_path (an .ics file or folder)",
            "caldav": "url (the CalDAV server, e.g. https://cloud.example.org/remote.php/dav)",
            "google": "google_credentials_path (the OAuth client file from Google Cloud)",
        }[self.backend]


class CalendarSource(_CalendarFields):
    """One entry of ``calendar_agent.sources``: a calendar with its own reminders."""

    name: str | None = Field(default=None, pattern=_SOURCE_NAME)
    enabled: bool = True
    notify_minutes_before: Reminders | None = Field(
        default=None, description="Overrides calendar_agent.notify_minutes_before."
    )
    all_day_notify_time: dt_time | None = None
    all_day_notify_days_before: int | None = Field(default=None, ge=0, le=30)

    _minutes = field_validator("notify_minutes_before", mode="before")(_minutes_list)
    _at = field_validator("all_day_notify_time", mode="before")(_time_of_day)

    @model_validator(mode="after")
    def _located(self) -> CalendarSource:
        if not self._has_location():
            raise ValueError(f"backend {self.backend} needs {self._missing()}")
        return self

    @property
    def label(self) -> str:
        """The name notifications and the store use for this calendar (stable)."""
        return self.name or self.backend


class CalendarAgentSettings(_CalendarFields):
    """``calendar_agent``: the seed's keys describe one calendar; ``sources`` adds more."""

    enabled: bool = True
    poll_interval_seconds: float = Field(default=300, gt=0)
    notify_minutes_before: Reminders = Field(
        default=30, description="Minutes before each occurrence; a list gives several."
    )
    all_day_notify_time: dt_time = Field(
        default=dt_time(9, 0), description="When all-day events are announced (local time)."
    )
    all_day_notify_days_before: int = Field(
        default=0, ge=0, le=30, description="0: that morning; 1: the day before; ..."
    )
    timezone: str | None = Field(
        default=None, description="IANA zone for floating times and display; default: system."
    )
    agenda_days: int = Field(default=7, ge=1, le=366, description="Default span of /agenda.")
    sources: list[CalendarSource] = []
    llm: LLMOverride | None = None

    _minutes = field_validator("notify_minutes_before", mode="before")(_minutes_list)
    _at = field_validator("all_day_notify_time", mode="before")(_time_of_day)

    @field_validator("notify_minutes_before")
    @classmethod
    def _non_negative(cls, value: Reminders) -> Reminders:
        if isinstance(value, int) and value < 0:
            raise ValueError("expected minutes >= 0")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name such as Europe/Berlin)"
            ) from exc
        return value

    @model_validator(mode="after")
    def _watch_something(self) -> CalendarAgentSettings:
        explicit = self.model_fields_set & set(_CalendarFields.model_fields)
        if self.enabled and not self._has_location() and (explicit or not self.sources):
            raise ValueError(
                f"backend {self.backend} needs {self._missing()}, or list calendars in sources"
            )
        labels = [source.label for source in self.watched()]
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        if duplicates:
            raise ValueError(
                f"two calendars are named {duplicates[0]!r} (give each entry of sources a name:)"
            )
        return self

    def watched(self) -> list[CalendarSource]:
        """Every enabled calendar: the seed's flat keys (when set) first, then ``sources``."""
        found: list[CalendarSource] = []
        if self._has_location():
            flat = {name: getattr(self, name) for name in _CalendarFields.model_fields}
            found.append(CalendarSource(**flat))
        found.extend(source for source in self.sources if source.enabled)
        return found


class MCPServerEntry(_Section):
    """One entry of the seed's ``mcp_servers`` list."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    type: Literal["local", "stdio", "http", "sse"] = "local"
    command: list[str] | str | None = None
    args: list[str] = []
    env: dict[str, str] = {}
    cwd: Path | None = None
    url: str | None = None
    api_key: str | None = None
    headers: dict[str, str] = {}
    enabled: bool = True
    timeout: float = Field(default=60.0, gt=0)


class MCPServersJSONEntry(BaseModel):
    """One value of the ``mcpServers`` object (Claude Desktop / Cursor / Claude Code shape)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    command: str | None = None
    args: list[str] = []
    env: dict[str, str] = {}
    url: str | None = None
    type: str | None = None
    headers: dict[str, str] = {}


class SandboxSettings(_Section):
    """Limits for code run by ``execute_python`` (and, later, generated tools)."""

    timeout_seconds: float = Field(default=10.0, gt=0, le=3600, description="Wall clock.")
    cpu_seconds: int = Field(default=10, ge=1, le=3600)
    memory_mb: int = Field(default=512, ge=32, le=65536, description="Address space.")
    max_processes: int = Field(default=64, ge=1, le=4096)
    max_file_mb: int = Field(default=64, ge=1, le=65536, description="Largest file written.")
    tmp_size_mb: int = Field(default=64, ge=1, le=65536, description="The private /tmp.")
    max_output_chars: int = Field(default=20000, ge=100, le=10_000_000)
    require_isolation: bool = Field(
        default=False, description="Refuse to run code when bubblewrap is unavailable."
    )
    bwrap_path: Path | None = Field(default=None, description="Default: bwrap on PATH.")


class MCPSettings(_Section):
    """The MCP layer: the built-in tools server and how servers are called."""

    builtin: bool = Field(default=True, description="Run the built-in tools server.")
    call_timeout: float = Field(default=60.0, gt=0, description="Seconds per tool call.")
    connect_timeout: float = Field(default=30.0, gt=0, description="Seconds to connect.")
    max_read_chars: int = Field(default=50_000, ge=1000, description="read_file page size.")


class WorkerSettings(_Section):
    max_workers: int = Field(default=4, ge=1, le=1000)
    max_idle_workers: int = Field(default=3, ge=0, le=1000)
    max_steps: int = Field(default=10, ge=1, le=200)
    optimize_prompts: bool = Field(default=True, description="Rewrite tasks before running.")
    question_withholds: list[str] = Field(
        default_factory=lambda: ["write_file", "edit_file"],
        description="Tools a task made from a question (a message that only asks, such as "
        "'Which month has the highest revenue?') runs without, so answering cannot change "
        "files; [] gives questions every tool.",
    )
    role: str = Field(
        default="worker",
        min_length=1,
        description="Whose long-term memory workers share (one memory per role).",
    )
    llm: LLMOverride | None = None


class MemorySettings(_Section):
    """Long-term memory of worker agents (ChromaDB; the ``memory`` extra)."""

    enabled: bool = Field(default=True, description="Off also when the extra is not installed.")
    recall_k: int = Field(default=3, ge=0, le=20, description="Notes recalled per task.")
    threshold: float = Field(
        default=0.55, ge=-1, le=1, description="Minimum cosine similarity of a recalled note."
    )
    tool_threshold: float = Field(
        default=0.8,
        ge=-1,
        le=1,
        description="The same, for a note whose answer came from tool calls (a file read, a "
        "script run): those are recalled only for nearly the same request.",
    )
    max_entries: int = Field(default=5000, ge=1, description="Per role; the oldest go first.")
    max_age_days: float | None = Field(
        default=180, gt=0, description="Older entries are pruned; 0 keeps them forever."
    )

    @field_validator("max_age_days", mode="before")
    @classmethod
    def _zero_is_forever(cls, value: Any) -> Any:
        # YAML null means "use the default" here (see _drop_empty), so 0 says "no limit".
        return None if value == 0 and not isinstance(value, bool) else value


class ToolAgentSettings(_Section):
    """The tool agent: writes, checks, sandbox-tests and deploys new tools."""

    enabled: bool = True
    max_attempts: int = Field(
        default=3, ge=1, le=20, description="Tries per request; each failure goes back to the LLM."
    )
    llm: LLMOverride | None = None
    allowed_imports: list[str] = Field(
        default=["stdlib"],
        description="Modules a generated tool may import; 'stdlib' = the standard library.",
    )
    network_modules: list[str] | None = Field(
        default=None,
        description="Modules refused unless the tool may use the network (default: socket, "
        "ssl, asyncio, http, urllib, ...).",
    )
    allow_network_requests: bool = Field(
        default=True,
        description="Honour a request that the tool may use the network (off: never).",
    )
    test_timeout_seconds: float | None = Field(
        default=None, gt=0, le=600, description="Sandbox test of the examples; default: sandbox."
    )
    worker_requests: Literal["off", "on_missing_tool", "always"] = Field(
        default="on_missing_tool",
        description="When workers are offered request_tool: after they call a tool that does "
        "not exist (default), on every step, or never.",
    )
    request_timeout_seconds: float = Field(
        default=600, gt=0, description="How long a worker waits for a requested tool."
    )

    @field_validator("worker_requests", mode="before")
    @classmethod
    def _yaml_booleans(cls, value: Any) -> Any:
        # YAML reads a bare `off` as false (and `on` as true).
        if value is False:
            return "off"
        if value is True:
            return "on_missing_tool"
        return value


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    file: Path | None = Field(default=None, description="Default: <data dir>/logs/octopussy.log")
    stderr: bool = Field(default=False, description="Also log to stderr (colored per agent).")

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class BusSettings(_Section):
    backend: Literal["memory"] = "memory"
    inbox_size: int = Field(default=1000, ge=1)


class StoreSettings(_Section):
    backend: Literal["sqlite"] = "sqlite"
    path: Path | None = Field(default=None, description="Default: <data dir>/octopussy.db")


class Config(_Section):
    """The whole validated configuration."""

    llm: LLMSettings = LLMSettings()
    coordinator: CoordinatorSettings = CoordinatorSettings()
    mail_agent: MailAgentSettings | None = None
    calendar_agent: CalendarAgentSettings | None = None
    mcp_servers: list[MCPServerEntry] = []
    mcpServers: dict[str, MCPServersJSONEntry] = {}  # the name users paste
    mcp: MCPSettings = MCPSettings()
    sandbox: SandboxSettings = SandboxSettings()
    workers: WorkerSettings = WorkerSettings()
    tool_agent: ToolAgentSettings = ToolAgentSettings()
    memory: MemorySettings = MemorySettings()
    workspace: Path | None = Field(default=None, description="Default: the current directory.")
    data_dir: Path | None = Field(default=None, description="Default: $OCTOPUSSY_HOME or XDG.")
    logging: LoggingSettings = LoggingSettings()
    bus: BusSettings = BusSettings()
    store: StoreSettings = StoreSettings()

    def llm_for(self, agent: str) -> ResolvedLLM:
        """The effective model settings of ``agent`` (coordinator, worker, mail_agent, ...)."""
        base = self.llm
        override: LLMOverride | None = None
        seed_model: str | None = None
        if agent == "coordinator":
            override, seed_model = self.coordinator.llm, base.coordinator_model
        elif agent in ("worker", "workers", "prompt_optimizer"):
            override, seed_model = self.workers.llm, base.worker_model
        elif agent == "mail_agent" and self.mail_agent is not None:
            override = self.mail_agent.llm
        elif agent == "calendar_agent" and self.calendar_agent is not None:
            override = self.calendar_agent.llm
        elif agent == "tool_agent":
            override = self.tool_agent.llm
        o = override or LLMOverride()
        provider = o.provider or base.provider
        provider_changed = o.provider is not None and o.provider != base.provider
        model = o.model or (None if provider_changed else (seed_model or base.model))
        model = model or DEFAULT_MODELS.get(provider)
        where = f"{agent}.llm" if override is not None else "llm"
        if model is None:
            raise ConfigError(
                f"no model named for provider {provider!r}",
                path=f"{where}.model" if override else "llm.model",
                hint="name one, e.g. `model: llama3.2` (see `ollama list`) or `model: gpt-4o-mini`",
            )
        base_url = o.base_url or (None if provider_changed else base.base_url)
        return ResolvedLLM(
            agent=agent,
            provider=provider,
            model=model,
            base_url=base_url or DEFAULT_BASE_URLS.get(provider),
            api_key=o.api_key or (None if provider_changed else base.api_key),
            temperature=o.temperature if o.temperature is not None else base.temperature,
            max_tokens=o.max_tokens if o.max_tokens is not None else base.max_tokens,
            timeout=o.timeout if o.timeout is not None else base.timeout,
            max_retries=base.max_retries,
            tool_mode=o.tool_mode or base.tool_mode,
        )


@dataclass(frozen=True, slots=True)
class ResolvedLLM:
    """Everything a provider needs for one agent, after overrides and defaults."""

    agent: str
    provider: ProviderName
    model: str
    base_url: str | None
    api_key: str | None
    temperature: float
    max_tokens: int | None
    timeout: float
    max_retries: int
    tool_mode: ToolMode

    @property
    def key(self) -> tuple[str, str, str | None, str | None]:
        """Agents whose settings share this key share one provider instance."""
        return (self.provider, self.model, self.base_url, self.api_key)


@dataclass(frozen=True, slots=True)
class Paths:
    """Where things live. Two different homes share nothing."""

    home: Path
    workspace: Path
    model_cache: Path
    log_file: Path
    store: Path

    @property
    def spool(self) -> Path:
        """Where ``octopussy notify`` drops notifications for a running instance."""
        return self.home / "spool"

    @property
    def memory(self) -> Path:
        """The Chroma database of the workers' long-term memory."""
        return self.home / "memory"

    @property
    def generated_tools(self) -> Path:
        """The tools the tool agent wrote (one file each, with their versions)."""
        return self.home / "generated_tools"

    def ensure(self) -> None:
        """Create the directories (user-only permissions for the data dir)."""
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.model_cache.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.store.parent.mkdir(parents=True, exist_ok=True)


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    """A validated config, where it came from, and the resolved paths."""

    config: Config
    source: str  # the file path, or "<defaults>"
    paths: Paths
    env: Mapping[str, str]
    #: Key paths whose secret was written literally in the file (``doctor`` warns).
    plain_secrets: tuple[str, ...] = ()


_SECRET_KEYS = {"api_key", "imap_password", "password"}
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(value: Any, env: Mapping[str, str], *, source: str, path: str = "") -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string of a YAML tree.

    ``$$`` stands for a literal ``$``. A missing variable without a default is a
    ``ConfigError`` naming the key path.
    """
    if isinstance(value, dict):
        return {
            k: interpolate(v, env, source=source, path=f"{path}.{k}" if path else str(k))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            interpolate(v, env, source=source, path=f"{path}[{i}]") for i, v in enumerate(value)
        ]
    if not isinstance(value, str) or "$" not in value:
        return value

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if name in env and env[name] != "":
            return env[name]
        if default is not None:
            return default
        raise ConfigError(
            f"environment variable {name} is not set",
            source=source,
            path=path,
            hint=f"export {name}=... or write ${{{name}:-default}}",
        )

    return _VAR.sub(replace, value)


def _drop_empty(tree: Any) -> Any:
    """Treat a key with no value (``mcp_servers:`` followed by comments only) as unset."""
    if isinstance(tree, dict):
        return {k: _drop_empty(v) for k, v in tree.items() if v is not None}
    if isinstance(tree, list):
        return [_drop_empty(v) for v in tree]
    return tree


def _plain_secret_paths(tree: Any, path: str = "") -> list[str]:
    found: list[str] = []
    if isinstance(tree, dict):
        for k, v in tree.items():
            sub = f"{path}.{k}" if path else str(k)
            if (
                k in _SECRET_KEYS
                and isinstance(v, str)
                and v
                and "${" not in v
                and not v.startswith("keyring:")  # a reference to the keyring, not a secret
            ):
                found.append(sub)
            found.extend(_plain_secret_paths(v, sub))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            found.extend(_plain_secret_paths(v, f"{path}[{i}]"))
    return found


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _known_keys(loc: tuple[int | str, ...]) -> list[str]:
    """Field names of the section that holds ``loc`` (for did-you-mean hints)."""
    model: Any = Config
    for part in loc[:-1]:
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        if field is None:
            return []
        annotation = field.annotation
        model = None
        for candidate in (annotation, *getattr(annotation, "__args__", ())):
            for inner in (candidate, *getattr(candidate, "__args__", ())):
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    model = inner
                    break
            if model is not None:
                break
    return list(model.model_fields) if model is not None else []


def _validation_error(exc: ValidationError, source: str) -> ConfigError:
    error = exc.errors()[0]
    loc = tuple(error["loc"])
    path = _loc(loc)
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        close = difflib.get_close_matches(key, _known_keys(loc), n=1)
        hint = f"did you mean {close[0]!r}?" if close else "remove it or check the README"
        return ConfigError(f"unknown key {key!r}", source=source, path=path, hint=hint)
    message = error["msg"]
    if kind == "value_error":
        message = message.removeprefix("Value error, ")
    got = error.get("input")
    if kind not in ("missing",) and not isinstance(got, (dict, list)):
        message += f" (got {got!r})"
    more = len(exc.errors()) - 1
    return ConfigError(
        message,
        source=source,
        path=path,
        hint=f"{more} more problem(s) after this one" if more else None,
    )


def default_home(env: Mapping[str, str]) -> Path:
    """``$OCTOPUSSY_HOME``, else ``$XDG_DATA_HOME/octopussy``, else ``~/.local/share/octopussy``."""
    if env.get("OCTOPUSSY_HOME"):
        return Path(env["OCTOPUSSY_HOME"]).expanduser()
    xdg = env.get("XDG_DATA_HOME") or str(Path(env.get("HOME", "~")) / ".local" / "share")
    return Path(xdg).expanduser() / "octopussy"


def resolve_paths(config: Config, env: Mapping[str, str], *, cwd: Path | None = None) -> Paths:
    cwd = cwd or Path.cwd()
    home = (config.data_dir.expanduser() if config.data_dir else default_home(env)).absolute()
    workspace = (cwd / config.workspace.expanduser()) if config.workspace else cwd
    cache = (
        Path(env["OCTOPUSSY_MODEL_CACHE"]) if env.get("OCTOPUSSY_MODEL_CACHE") else home / "models"
    )
    log_file = (
        config.logging.file.expanduser() if config.logging.file else home / "logs" / "octopussy.log"
    )
    store = config.store.path.expanduser() if config.store.path else home / "octopussy.db"
    return Paths(
        home=home,
        workspace=workspace.resolve(),
        model_cache=cache.expanduser().absolute(),
        log_file=log_file.absolute(),
        store=store.absolute(),
    )


def parse_config(
    text: str, *, source: str, env: Mapping[str, str] | None = None
) -> tuple[Config, list[str]]:
    """Validate YAML text; returns the config and the key paths of plain-text secrets."""
    env = os.environ if env is None else env
    try:
        raw = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        raise ConfigError(
            f"invalid YAML at {where}: {exc.problem}",
            source=source,
            hint="check indentation and quoting",
        ) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", source=source) from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"the top level must be a mapping of sections, not {type(raw).__name__}",
            source=source,
            hint="start with `llm:` (see config.example.yaml)",
        )
    plain = _plain_secret_paths(raw)
    tree = interpolate(_drop_empty(raw), env, source=source)
    try:
        config = Config.model_validate(tree)
    except ValidationError as exc:
        raise _validation_error(exc, source) from exc
    # Resolve every agent's model now so a missing model name fails at load, not mid-chat.
    for agent in ("coordinator", "worker"):
        try:
            config.llm_for(agent)
        except ConfigError as exc:
            exc.source = source
            raise
    return config, plain


def find_config_file(explicit: str | None, env: Mapping[str, str], cwd: Path) -> Path | None:
    """``--config`` wins, then ``$OCTOPUSSY_CONFIG``, then ``./config.yaml`` if present."""
    if explicit:
        return Path(explicit).expanduser()
    if env.get("OCTOPUSSY_CONFIG"):
        return Path(env["OCTOPUSSY_CONFIG"]).expanduser()
    candidate = cwd / "config.yaml"
    return candidate if candidate.is_file() else None


def load_config(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> LoadedConfig:
    """Find, read and validate the config; built-in defaults when there is no file."""
    env = dict(os.environ) if env is None else env
    cwd = cwd or Path.cwd()
    file = find_config_file(str(path) if path else None, env, cwd)
    plain: list[str] = []
    if file is None:
        config, source = Config(), "<defaults>"
    else:
        source = str(file)
        try:
            text = file.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise ConfigError(
                "file not found", source=source, hint="check the path given to --config"
            ) from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read: {exc}", source=source) from exc
        config, plain = parse_config(text, source=source, env=env)
    paths = resolve_paths(config, env, cwd=cwd)
    return LoadedConfig(
        config=config, source=source, paths=paths, env=env, plain_secrets=tuple(plain)
    )
