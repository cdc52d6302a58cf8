"""Which MCP servers to connect to: both config shapes normalised into one ``ServerSpec`` list.

    mcp.builtin + builtin_command               ──► ServerSpec("builtin", origin="builtin")
    mcp_servers: [ {type: local, command, args, env}       ──► ServerSpec(transport="stdio")
                   {type: http|sse, url, api_key, headers} ──► ServerSpec(transport="http"|"sse")
    mcpServers:  { name: {command, args, env}              ──► ServerSpec(transport="stdio")
                   name: {url, type?, headers} }           ──► ServerSpec(transport="http"|"sse")

The seed's ``mcp_servers`` list and the ``mcpServers`` object that Claude Desktop, Cursor and
Claude Code write may both be present; their names share one namespace, and a name used
twice is a ``ConfigError`` naming both places. The seed's own ``builtin`` entry (its
``builtin_tools_server.py``) is skipped: our built-in server takes its place. A stdio
server does not inherit our whole environment (which holds API keys and passwords): it
gets a few harmless variables of ours (PATH, HOME, LANG, ...) plus the ``env`` its entry
names. The built-in server is our own code re-run as a child (``octopussy mcp builtin``):
it reads the same config file, whose ``${VAR}`` references must resolve there too, so it
gets our whole environment (its ``execute_python`` sandbox hands the code it runs a minimal
one). Pure functions, no I/O.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from octopussy.config import LoadedConfig, MCPServerEntry, MCPServersJSONEntry
from octopussy.errors import ConfigError

Transport = Literal["stdio", "http", "sse"]
Origin = Literal["builtin", "config", "mcpServers"]

BUILTIN_NAME = "builtin"
_SEED_BUILTIN_SCRIPT = "builtin_tools_server.py"

#: Variables of ours every stdio server gets: enough to find programs, a home and a locale.
INHERITED_ENV = (
    "PATH",
    "HOME",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "USER",
    "LOGNAME",
    "SHELL",
    "TERM",
)

_HTTP_TYPES = {"http": "http", "streamable-http": "http", "streamablehttp": "http", "sse": "sse"}


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """How to reach one MCP server. ``env`` is the complete environment of a stdio child."""

    name: str
    transport: Transport
    command: str | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = None  # per-call seconds; None: the registry's call_timeout
    enabled: bool = True
    origin: Origin = "config"

    def describe(self) -> str:
        """One line for logs and ``octopussy mcp list``: the command or the URL."""
        if self.transport == "stdio":
            return shlex.join([self.command or "", *self.args])
        return f"{self.url} ({self.transport})"


def inherited_env(parent: Mapping[str, str], *, builtin: bool = False) -> dict[str, str]:
    """The part of our environment a stdio server may see (all of it for the built-in one)."""
    if builtin:
        return dict(parent)
    return {k: parent[k] for k in INHERITED_ENV if parent.get(k)}


def server_specs(
    loaded: LoadedConfig, *, builtin_command: Sequence[str] | None
) -> list[ServerSpec]:
    """Every configured server, builtin first, then ``mcp_servers`` in order, then ``mcpServers``.

    Disabled servers are included (``enabled=False``) so ``mcp list`` can show them; the
    registry does not start them. Raises ``ConfigError`` for an entry that cannot be run
    (no command, no URL, an unknown type) or a name defined twice.
    """
    config = loaded.config
    parent = loaded.env
    specs: list[ServerSpec] = []
    where: dict[str, str] = {}

    def add(spec: ServerSpec, place: str) -> None:
        if spec.name in where:
            raise ConfigError(
                f"two MCP servers are named {spec.name!r}: {where[spec.name]} and {place}",
                source=loaded.source,
                path=place,
                hint="give each server its own name"
                + ("; `builtin` is the built-in tools server" if spec.name == BUILTIN_NAME else ""),
            )
        where[spec.name] = place
        specs.append(spec)

    if config.mcp.builtin and builtin_command:
        add(
            ServerSpec(
                name=BUILTIN_NAME,
                transport="stdio",
                command=builtin_command[0],
                args=tuple(builtin_command[1:]),
                env=inherited_env(parent, builtin=True),
                cwd=loaded.paths.workspace,
                timeout=None,
                origin="builtin",
            ),
            "the built-in tools server (mcp.builtin)",
        )
    for index, entry in enumerate(config.mcp_servers):
        if is_seed_builtin(entry):
            # The seed's config lists its own built-in server; ours replaces it.
            continue
        place = f"mcp_servers[{index}]"
        add(_from_seed(entry, parent, source=loaded.source, path=place), place)
    for name, json_entry in config.mcpServers.items():
        place = f"mcpServers.{name}"
        add(_from_json(name, json_entry, parent, source=loaded.source, path=place), place)
    return specs


def is_seed_builtin(entry: MCPServerEntry) -> bool:
    """Whether this is the seed's ``builtin`` entry (its ``builtin_tools_server.py``)."""
    if entry.name != BUILTIN_NAME or entry.type not in ("local", "stdio"):
        return False
    try:
        argv = _split_command(entry.command) + list(entry.args)
    except ValueError:
        return False
    return any(Path(part).name == _SEED_BUILTIN_SCRIPT for part in argv)


def _split_command(command: list[str] | str | None) -> list[str]:
    if command is None:
        return []
    if isinstance(command, str):
        return shlex.split(command)
    return [part for part in command if part != ""]


def _from_seed(
    entry: MCPServerEntry, parent: Mapping[str, str], *, source: str, path: str
) -> ServerSpec:
    # The seed's per-server ``timeout`` always has a value; only one the user wrote overrides
    # the global ``mcp.call_timeout``.
    timeout = entry.timeout if "timeout" in entry.model_fields_set else None
    if entry.type in ("local", "stdio"):
        try:
            argv = _split_command(entry.command)
        except ValueError as exc:  # shlex: unbalanced quotes
            raise ConfigError(
                f"cannot split command: {exc}", source=source, path=f"{path}.command"
            ) from exc
        if not argv:
            raise ConfigError(
                f"server {entry.name!r} of type {entry.type!r} needs a command",
                source=source,
                path=f"{path}.command",
                hint="e.g. `command: [uvx, mcp-server-time]` or `command: npx -y some-server`",
            )
        if entry.url:
            raise ConfigError(
                f"server {entry.name!r} has both a command and a url",
                source=source,
                path=path,
                hint="use `type: http` with a url, or `type: local` with a command",
            )
        return ServerSpec(
            name=entry.name,
            transport="stdio",
            command=str(Path(argv[0]).expanduser()) if argv[0].startswith("~") else argv[0],
            args=(*argv[1:], *entry.args),
            env={**inherited_env(parent), **entry.env},
            cwd=entry.cwd.expanduser() if entry.cwd else None,
            timeout=timeout,
            enabled=entry.enabled,
            origin="config",
        )
    if not entry.url:
        raise ConfigError(
            f"server {entry.name!r} of type {entry.type!r} needs a url",
            source=source,
            path=f"{path}.url",
            hint="e.g. `url: http://127.0.0.1:8000/mcp`",
        )
    if entry.command:
        raise ConfigError(
            f"server {entry.name!r} has both a url and a command",
            source=source,
            path=path,
            hint="use `type: local` for a command",
        )
    headers = dict(entry.headers)
    if entry.api_key and not any(k.lower() == "authorization" for k in headers):
        headers["Authorization"] = f"Bearer {entry.api_key}"
    return ServerSpec(
        name=entry.name,
        transport="sse" if entry.type == "sse" else "http",
        url=entry.url,
        headers=headers,
        timeout=timeout,
        enabled=entry.enabled,
        origin="config",
    )


def _extra(entry: MCPServersJSONEntry) -> dict[str, Any]:
    return dict(entry.model_extra or {})


def _from_json(
    name: str,
    entry: MCPServersJSONEntry,
    parent: Mapping[str, str],
    *,
    source: str,
    path: str,
) -> ServerSpec:
    extra = _extra(entry)
    # Cline writes "disabled": true, others "enabled": false; both mean "do not start".
    enabled = not bool(extra.get("disabled", False)) and bool(extra.get("enabled", True))
    raw_timeout = extra.get("timeout")
    timeout = (
        float(raw_timeout) if isinstance(raw_timeout, int | float) and raw_timeout > 0 else None
    )
    kind = (entry.type or "").strip().lower()
    if not name.strip():
        raise ConfigError("an MCP server needs a non-empty name", source=source, path=path)
    if entry.command and entry.url:
        raise ConfigError(
            f"server {name!r} has both a command and a url",
            source=source,
            path=path,
            hint="a server is either a command (stdio) or a url (http/sse)",
        )
    if entry.command:
        if kind not in ("", "stdio", "local"):
            raise ConfigError(
                f"server {name!r} has a command but type {entry.type!r}",
                source=source,
                path=f"{path}.type",
                hint='use "type": "stdio" or leave it out',
            )
        cwd = extra.get("cwd")
        return ServerSpec(
            name=name,
            transport="stdio",
            command=entry.command,
            args=tuple(entry.args),
            env={**inherited_env(parent), **entry.env},
            cwd=Path(cwd).expanduser() if isinstance(cwd, str) and cwd else None,
            timeout=timeout,
            enabled=enabled,
            origin="mcpServers",
        )
    if entry.url:
        transport = _HTTP_TYPES.get(kind.replace("_", "-") if kind else "http")
        if transport is None:
            raise ConfigError(
                f"server {name!r} has unknown type {entry.type!r}",
                source=source,
                path=f"{path}.type",
                hint='use "http" (Streamable HTTP) or "sse" (legacy)',
            )
        return ServerSpec(
            name=name,
            transport="sse" if transport == "sse" else "http",
            url=entry.url,
            headers=dict(entry.headers),
            timeout=timeout,
            enabled=enabled,
            origin="mcpServers",
        )
    raise ConfigError(
        f"server {name!r} has neither a command nor a url",
        source=source,
        path=path,
        hint='e.g. {"command": "uvx", "args": ["mcp-server-time"]} or {"url": "http://.../mcp"}',
    )
