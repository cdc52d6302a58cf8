"""``octopussy doctor``: what is configured and reachable, each with OK or a one-line fix.

    config ─ data dir ─ model endpoint(s) ─ embedded model ─ long-term memory ─ sandbox
           ─ MCP servers ─ mail accounts (one login each) ─ calendars ─ secrets

Checks are quick and side-effect free: no model is loaded, no tool is run outside the
sandbox probe, endpoints get one short request. Exit code 0 when nothing FAILs.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from octopussy.config import LoadedConfig, ResolvedLLM
from octopussy.errors import OctopussyError

Status = Literal["OK", "WARN", "FAIL"]


@dataclass(frozen=True, slots=True)
class Check:
    status: Status
    name: str
    detail: str
    fix: str | None = None

    def line(self) -> str:
        text = f"{self.status:<4}  {self.name}: {self.detail}"
        return f"{text} — fix: {self.fix}" if self.fix else text


def _agents(loaded: LoadedConfig) -> list[str]:
    config = loaded.config
    agents = ["coordinator", "worker"]
    if config.mail_agent is not None and config.mail_agent.enabled:
        agents.append("mail_agent")
    if config.calendar_agent is not None and config.calendar_agent.enabled:
        agents.append("calendar_agent")
    if config.tool_agent.enabled:
        agents.append("tool_agent")
    return agents


def check_data_dir(loaded: LoadedConfig) -> Check:
    home = loaded.paths.home
    try:
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        with tempfile.NamedTemporaryFile(dir=home, prefix=".doctor-"):
            pass
    except OSError as exc:
        return Check(
            "FAIL",
            "data dir",
            f"{home} is not writable ({exc.strerror})",
            "set OCTOPUSSY_HOME to a writable directory",
        )
    return Check("OK", "data dir", str(home))


def check_embedded(loaded: LoadedConfig) -> Check:
    from octopussy.llm import weights

    settings = loaded.config.llm.embedded
    if importlib.util.find_spec("xllamacpp") is None:
        return Check(
            "FAIL",
            "embedded model",
            "the llama.cpp runtime (xllamacpp) is missing",
            "pip install 'octopussy-light[embedded]'",
        )
    if settings.model_path is not None:
        path = settings.model_path.expanduser()
        if path.is_file():
            return Check("OK", "embedded model", f"{path} ({path.stat().st_size / 1e9:.2f} GB)")
        return Check(
            "FAIL",
            "embedded model",
            f"{path} does not exist",
            "fix llm.embedded.model_path or remove it to use the bundled model",
        )
    target = loaded.paths.model_cache / weights.QWEN_GGUF_NAME
    if weights.is_verified(target, sha256=weights.QWEN_SHA256, size=weights.QWEN_SIZE):
        return Check("OK", "embedded model", f"ready at {target}")
    try:
        weights.find_qwen_parts()
    except OctopussyError as exc:
        return Check("FAIL", "embedded model", exc.message, exc.hint)
    return Check(
        "OK",
        "embedded model",
        f"installed; assembled into {target} on first start (a few seconds, once)",
    )


def _get_json(url: str, headers: dict[str, str]) -> tuple[int, object]:
    """GET ``url``; (status, parsed JSON or None). Raises OSError when unreachable."""
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            body = response.read(2_000_000)
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code, None
    try:
        return status, json.loads(body)
    except ValueError:
        return status, None


async def check_endpoint(resolved: ResolvedLLM) -> Check:
    name = f"model endpoint ({resolved.agent})"
    url = (resolved.base_url or "").rstrip("/")
    if resolved.provider == "ollama" and not url.endswith("/v1"):
        url += "/v1"
    headers = {"Authorization": f"Bearer {resolved.api_key}"} if resolved.api_key else {}
    try:
        status, data = await asyncio.to_thread(_get_json, f"{url}/models", headers)
    except (OSError, ValueError) as exc:
        hint = (
            "is Ollama running? try `ollama serve`"
            if resolved.provider == "ollama"
            else "check llm.base_url and that the server is running"
        )
        reason = getattr(exc, "reason", None) or exc
        return Check("FAIL", name, f"cannot reach {url} ({reason})", hint)
    if status in (401, 403):
        return Check(
            "FAIL",
            name,
            f"{url} refused the API key (HTTP {status})",
            "check llm.api_key (e.g. api_key: ${OPENAI_API_KEY})",
        )
    if status >= 400:
        return Check("WARN", name, f"{url}/models answered HTTP {status}")
    items = data.get("data", []) if isinstance(data, dict) else []
    ids = {str(item.get("id")) for item in items if isinstance(item, dict)}
    if ids and resolved.model not in ids and f"{resolved.model}:latest" not in ids:
        fix = (
            f"ollama pull {resolved.model}"
            if resolved.provider == "ollama"
            else "choose one the endpoint lists"
        )
        return Check("WARN", name, f"{url} does not list model {resolved.model!r}", fix)
    return Check("OK", name, f"{resolved.provider} {resolved.model} at {url}")


async def check_models(loaded: LoadedConfig) -> list[Check]:
    checks: list[Check] = []
    seen: set[tuple[str, str, str | None, str | None]] = set()
    for agent in _agents(loaded):
        try:
            resolved = loaded.config.llm_for(agent)
        except OctopussyError as exc:
            checks.append(Check("FAIL", f"model ({agent})", exc.message, exc.hint))
            continue
        if resolved.key in seen:
            continue
        seen.add(resolved.key)
        if resolved.provider == "embedded":
            checks.append(check_embedded(loaded))
        elif resolved.provider == "scripted":
            checks.append(Check("OK", f"model ({agent})", "scripted test model (no LLM)"))
        else:
            checks.append(await check_endpoint(resolved))
    return checks


def check_memory(loaded: LoadedConfig) -> Check:
    """Whether workers get long-term memory: configured, packages and model installed."""
    from octopussy.memory.notes import ENABLE_HINT, unavailable_reason

    settings = loaded.config.memory
    if not settings.enabled:
        return Check("OK", "long-term memory", "disabled in the config (memory.enabled: false)")
    reason = unavailable_reason()
    if reason is not None:
        return Check("WARN", "long-term memory", f"off: {reason}", ENABLE_HINT)
    role = loaded.config.workers.role
    return Check("OK", "long-term memory", f"role {role!r} at {loaded.paths.memory}")


async def check_sandbox(loaded: LoadedConfig) -> Check:
    """Probe bubblewrap with the same mounts a real ``execute_python`` run uses."""
    from octopussy.mcp.sandbox import Sandbox

    sandbox = Sandbox(loaded.config.sandbox, loaded.paths.workspace)
    ok, reason = await asyncio.to_thread(sandbox.isolation_available)
    if ok:
        return Check("OK", "sandbox", reason)
    status: Status = "FAIL" if loaded.config.sandbox.require_isolation else "WARN"
    return Check(
        status,
        "sandbox",
        f"{reason}; execute_python runs with rlimits and a timeout only",
        "apt-get install bubblewrap (and allow unprivileged user namespaces)",
    )


def check_generated_tools(loaded: LoadedConfig) -> Check:
    """The tool agent's directory: how many tools, which fail call after call."""
    from octopussy.mcp.generated import GeneratedToolStore
    from octopussy.toolcli import generated_rows

    store = GeneratedToolStore(loaded.paths.generated_tools)
    rows = generated_rows(store)
    state = "on" if loaded.config.tool_agent.enabled else "off (tool_agent.enabled: false)"
    flagged = [r.name for r in rows if r.flagged]
    unreadable = [r.name for r in rows if r.version == "?"]
    if flagged or unreadable:
        names = ", ".join(flagged + unreadable)
        return Check(
            "WARN",
            "generated tools",
            f"{len(rows)} in {store.directory}; failing or unreadable: {names}",
            "`octopussy tools show NAME`, then `tools rollback NAME` or `tools disable NAME`",
        )
    enabled = sum(r.enabled for r in rows)
    return Check("OK", "generated tools", f"{enabled} of {len(rows)} enabled; tool agent {state}")


async def check_mcp_servers(loaded: LoadedConfig) -> list[Check]:
    """Connect every configured MCP server as the runtime would; report state and tools."""
    from octopussy.mcp.registry import MCPRegistry
    from octopussy.mcp.servers import server_specs
    from octopussy.runtime import builtin_command

    try:
        specs = server_specs(loaded, builtin_command=builtin_command(loaded))
    except OctopussyError as exc:
        return [Check("FAIL", "MCP servers", exc.message, exc.hint)]
    if not specs:
        return [Check("OK", "MCP servers", "none configured")]
    registry = MCPRegistry(specs, call_timeout=loaded.config.mcp.call_timeout, connect_timeout=10.0)
    checks = []
    async with registry:
        tools = registry.tools()
        for status in registry.status():
            label = f"MCP server {status.name}"
            count = sum(tool.server == status.name for tool in tools)
            if status.state == "ready":
                checks.append(Check("OK", label, f"{count} tools ({status.transport})"))
            elif status.state == "stopped":
                checks.append(Check("OK", label, "disabled"))
            else:
                checks.append(
                    Check(
                        "FAIL",
                        label,
                        f"{status.last_error or status.state} ({status.target})",
                        "check its command/url in the config; `octopussy mcp list` retries",
                    )
                )
    return checks


async def check_mail(loaded: LoadedConfig, *, timeout: float = 8.0) -> list[Check]:
    """Each mail account: where its password comes from, and one login (then LOGOUT)."""
    settings = loaded.config.mail_agent
    if settings is None or not settings.enabled:
        return []
    from octopussy.mail.credentials import password_source, resolve_password
    from octopussy.mail.imap import ImapClient, ssl_context_for

    checks: list[Check] = []
    for account in settings.all_accounts():
        name = f"mail {account.label}"
        source = password_source(account)
        try:
            password = await resolve_password(account)
        except OctopussyError as exc:
            checks.append(Check("FAIL", name, exc.message, exc.hint))
            continue
        client = ImapClient(
            account.imap_host,
            account.port,
            tls=account.tls,
            ssl_context=ssl_context_for(account.tls_ca_file) if account.tls != "plain" else None,
            timeout=timeout,
        )
        try:
            await client.connect()
            await client.login(account.imap_user, password)
            for mailbox in account.mailboxes:
                await client.examine(mailbox)
            push = "IDLE" if "IDLE" in client.capabilities and account.idle else "polling"
        except OctopussyError as exc:
            checks.append(Check("FAIL", name, exc.message, exc.hint or "see README, Mail"))
            continue
        finally:
            await client.aclose()
        checks.append(
            Check(
                "OK",
                name,
                f"{account.imap_host}:{account.port} ({account.tls}), "
                f"{len(account.mailboxes)} mailbox(es), {push}, password from {source}",
            )
        )
    return checks


async def check_calendars(loaded: LoadedConfig) -> list[Check]:
    """Read each configured calendar once (one day ahead), as the calendar agent would."""
    settings = loaded.config.calendar_agent
    if settings is None or not settings.enabled:
        return []
    from datetime import timedelta

    from octopussy.calendar.base import system_clock
    from octopussy.calendar.factory import build_backend
    from octopussy.calendar.google import GoogleBackend
    from octopussy.calendar.text import local_zone

    zone = local_zone(settings.timezone, env_tz=loaded.env.get("TZ"))
    checks = []
    for source in settings.watched():
        label = f"calendar {source.label}"
        backend = build_backend(source, zone=zone, home=loaded.paths.home)
        if isinstance(backend, GoogleBackend) and not backend.token_path.is_file():
            checks.append(
                Check(
                    "WARN",
                    label,
                    "not signed in to Google yet",
                    "run `octopussy agenda` once and finish the sign-in in the browser",
                )
            )
            continue
        now = system_clock()
        try:
            fetched = await backend.fetch(now, now + timedelta(days=1))
        except OctopussyError as exc:
            checks.append(Check("FAIL", label, exc.message, exc.hint))
            continue
        finally:
            await backend.close()
        detail = f"{source.backend}, {len(fetched.occurrences)} event(s) in the next 24 h"
        if fetched.warnings:
            checks.append(
                Check(
                    "WARN",
                    label,
                    f"{detail}; {len(fetched.warnings)} bad event(s) skipped: "
                    f"{fetched.warnings[0]}",
                    "fix or remove those events",
                )
            )
        else:
            checks.append(Check("OK", label, f"{detail} (times in {zone})"))
    return checks


async def run_doctor(loaded: LoadedConfig, *, write: Callable[[str], None] = print) -> int:
    """Print one line per check; 0 if nothing failed, 1 otherwise."""
    checks = [Check("OK", "config", loaded.source)]
    checks.append(check_data_dir(loaded))
    checks.append(
        Check("OK", "workspace", str(loaded.paths.workspace))
        if loaded.paths.workspace.is_dir()
        else Check(
            "FAIL",
            "workspace",
            f"{loaded.paths.workspace} is not a directory",
            "set `workspace:` to an existing directory",
        )
    )
    checks.extend(await check_models(loaded))
    checks.append(check_memory(loaded))
    checks.append(await check_sandbox(loaded))
    checks.append(check_generated_tools(loaded))
    checks.extend(await check_mcp_servers(loaded))
    checks.extend(await check_mail(loaded))
    checks.extend(await check_calendars(loaded))
    for key in loaded.plain_secrets:
        checks.append(
            Check(
                "WARN",
                "secret",
                f"{key} is written in plain text in {loaded.source}",
                f"use {key.rsplit('.', 1)[-1]}: ${{ENV_VAR}} and export the variable",
            )
        )
    for check in checks:
        write(check.line())
    failed = sum(check.status == "FAIL" for check in checks)
    warned = sum(check.status == "WARN" for check in checks)
    write(f"{len(checks)} checks: {failed} failed, {warned} warnings")
    return 1 if failed else 0
