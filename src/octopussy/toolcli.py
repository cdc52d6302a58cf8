"""``octopussy tools ...`` and the REPL's ``/tools``: every tool with its origin and version.

    tools list [--json] [--local]   built-in, generated (from the directory) and remote tools
                                    (remote: the configured servers are connected; --local
                                    skips them); a generated tool failing call after call
                                    is FLAGGED
    tools show NAME [--json]        one generated tool: metadata, code, examples, versions
    tools disable|enable NAME       ┐ act on <data dir>/generated_tools; a running built-in
    tools rollback NAME [--to N]    │ server picks the change up within a fraction of a
    tools remove NAME               ┘ second and tells its clients (no restart)

The management commands never import or run a tool's code; they rewrite its file.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from octopussy import __version__
from octopussy.config import LoadedConfig
from octopussy.errors import ConfigError, ToolError
from octopussy.mcp.builtin import BUILTIN_TOOLS
from octopussy.mcp.generated import FLAG_AFTER, GeneratedToolStore
from octopussy.mcp.registry import MCPRegistry, ToolInfo
from octopussy.mcp.servers import BUILTIN_NAME
from octopussy.mcp.toolcheck import ImportPolicy, ToolCheckError, check_tool


@dataclass(slots=True)
class ToolRow:
    """One tool in a listing."""

    name: str
    origin: str  # "builtin", "generated" or "remote:<server>"
    version: str
    description: str
    enabled: bool = True
    flagged: bool = False
    calls: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    last_error: str | None = None

    def state(self) -> str:
        if self.flagged:
            last = f" (last: {self.last_error[:120]})" if self.last_error else ""
            return f"FLAGGED: {self.consecutive_failures} failed calls in a row{last}"
        if not self.enabled:
            return "disabled"
        if self.origin == "generated":
            failed = f", {self.failures} failed" if self.failures else ""
            return f"{self.calls} call(s){failed}"
        return ""


def add_parser(sub: Any) -> None:
    """The ``tools`` subcommand (``sub`` is the CLI's subparsers object)."""
    tools = sub.add_parser("tools", help="built-in, generated and remote tools; manage generated")
    actions = tools.add_subparsers(dest="tools_command", metavar="ACTION")
    listing = actions.add_parser("list", help="every tool with its origin and version (default)")
    listing.add_argument("--json", action="store_true", help="machine-readable")
    listing.add_argument("--local", action="store_true", help="do not connect remote servers")
    show = actions.add_parser("show", help="one generated tool: code, examples, versions")
    show.add_argument("name")
    show.add_argument("--json", action="store_true", help="machine-readable")
    for action, text in (
        ("disable", "stop serving a generated tool (kept on disk)"),
        ("enable", "serve a disabled generated tool again"),
        ("remove", "delete a generated tool (its versions stay under versions/)"),
    ):
        actions.add_parser(action, help=text).add_argument("name")
    rollback = actions.add_parser("rollback", help="make the previous version live again")
    rollback.add_argument("name")
    rollback.add_argument("--to", type=int, metavar="N", help="this version instead")


def generated_rows(store: GeneratedToolStore) -> list[ToolRow]:
    rows: list[ToolRow] = []
    for name in store.names():
        try:
            record = store.require(name)
        except ToolError as exc:
            rows.append(ToolRow(name, "generated", "?", f"unreadable: {exc}", enabled=False))
            continue
        stats = store.stats(name)
        rows.append(
            ToolRow(
                name=name,
                origin="generated",
                version=f"v{record.version}",
                description=record.description,
                enabled=record.enabled,
                flagged=stats.flagged and stats.version in (None, record.version),
                calls=stats.calls,
                failures=stats.failures,
                consecutive_failures=stats.consecutive_failures,
                last_error=stats.last_error,
            )
        )
    return rows


def tool_rows(
    loaded: LoadedConfig, *, remote: Sequence[ToolInfo] = (), store: GeneratedToolStore
) -> list[ToolRow]:
    """Built-in tools, then generated ones, then ``remote`` (tools of other servers)."""
    rows: list[ToolRow] = []
    if loaded.config.mcp.builtin:
        rows.extend(ToolRow(name, "builtin", __version__, "") for name in BUILTIN_TOOLS)
    rows.extend(generated_rows(store))
    taken = {row.name for row in rows}
    for info in remote:
        if info.server == BUILTIN_NAME:
            continue
        # A name that a local tool also has is shown as server.tool (both stay callable so).
        name = info.qualified if info.name in taken or info.tool in taken else info.name
        first_line = info.description.split("\n")[0]
        rows.append(ToolRow(name, f"remote:{info.server}", "-", first_line))
    return rows


def format_rows(rows: Sequence[ToolRow]) -> str:
    if not rows:
        return "no tools"
    width = max(len(r.name) for r in rows)
    origin = max(len(r.origin) for r in rows)
    lines = []
    for r in rows:
        line = f"{r.name:<{width}}  {r.origin:<{origin}}  {r.version:<8}  {r.state()}"
        lines.append(line.rstrip())
    flagged = [r.name for r in rows if r.flagged]
    if flagged:
        lines.append(
            f"\n{len(flagged)} tool(s) flagged after {FLAG_AFTER}+ failed calls in a row: "
            f"see `octopussy tools show NAME`; `tools rollback NAME` or `tools disable NAME`"
        )
    return "\n".join(lines)


def show_tool(store: GeneratedToolStore, name: str) -> dict[str, Any]:
    record = store.require(name)
    stats = store.stats(name)
    try:
        checked = check_tool(record.code, policy=ImportPolicy(allowed=("*",)))
        signature = checked.signature()
        schema = checked.input_schema
    except ToolCheckError as exc:
        signature, schema = f"(does not pass the checks: {exc})", {}
    return {
        **record.model_dump(mode="json"),
        "signature": signature,
        "input_schema": schema,
        "stats": {**stats.model_dump(mode="json"), "flagged": stats.flagged},
        "versions": [
            {"version": v.version, "created_at": v.created_at, "requested_by": v.requested_by}
            for v in store.versions(name)
        ],
        "file": str(store.live_path(name)),
    }


def format_show(data: dict[str, Any]) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(data["created_at"] or 0))
    state = "enabled" if data["enabled"] else "DISABLED"
    stats = data["stats"]
    lines = [
        f"{data['name']} v{data['version']} (generated, {state})",
        f"  signature:    {data['signature']}",
        f"  description:  {data['description']}",
        f"  requested by: {data['requested_by']} at {when}: {data['request']}",
        f"  network:      {'allowed' if data['allow_network'] else 'none'}",
        f"  attempts:     {data['attempts']}",
        f"  calls:        {stats['calls']} ({stats['failures']} failed, "
        f"{stats['consecutive_failures']} in a row)" + ("  FLAGGED" if stats["flagged"] else ""),
    ]
    if stats.get("last_error"):
        lines.append(f"  last error:   {stats['last_error']}")
    if data.get("rolled_back_from"):
        lines.append(f"  rolled back from v{data['rolled_back_from']}")
    versions = ", ".join(f"v{v['version']}" for v in data["versions"]) or "none"
    lines.append(f"  versions:     {versions}")
    lines.append(f"  file:         {data['file']}")
    lines.append("  examples:")
    for test in data["tests"]:
        call = test.get("call") or json.dumps(test.get("arguments"))
        lines.append(f"    {call} == {json.dumps(test.get('expected'))}")
    lines.append("  code:")
    lines.extend(f"    {line}" for line in data["code"].rstrip("\n").split("\n"))
    return "\n".join(lines)


def manage(store: GeneratedToolStore, action: str, name: str, to: int | None = None) -> str:
    """disable / enable / rollback / remove; the line to print."""
    if action == "disable":
        record = store.set_enabled(name, False)
        return f"{name} v{record.version} disabled (a running server stops serving it now)"
    if action == "enable":
        record = store.set_enabled(name, True)
        return f"{name} v{record.version} enabled"
    if action == "rollback":
        before = store.require(name).version
        record = store.rollback(name, to)
        return f"{name} rolled back from v{before} to v{record.version} (live now)"
    if action == "remove":
        record = store.remove(name)
        return (
            f"{name} removed (v{record.version} was live; its versions stay in "
            f"{store.directory / 'versions' / name})"
        )
    raise ConfigError(f"unknown tools action {action!r}", hint="see `octopussy tools --help`")


async def run_tools(loaded: LoadedConfig, args: argparse.Namespace) -> int:
    """``octopussy tools ...``; returns the exit code."""
    store = GeneratedToolStore(loaded.paths.generated_tools)
    action = args.tools_command or "list"
    if action == "list":
        remote: list[ToolInfo] = []
        if not getattr(args, "local", False):
            remote = await _remote_tools(loaded)
        rows = tool_rows(loaded, remote=remote, store=store)
        if getattr(args, "json", False):
            print(json.dumps([asdict(r) for r in rows], ensure_ascii=False, indent=2))
        else:
            print(format_rows(rows))
        return 0
    if action == "show":
        data = show_tool(store, args.name)
        print(json.dumps(data, ensure_ascii=False, indent=2) if args.json else format_show(data))
        return 0
    print(manage(store, action, args.name, getattr(args, "to", None)))
    return 0


async def _remote_tools(loaded: LoadedConfig) -> list[ToolInfo]:
    """Tools of the configured servers other than the built-in one (connected briefly)."""
    from octopussy.mcp.servers import server_specs

    specs = [s for s in server_specs(loaded, builtin_command=None) if s.enabled]
    if not specs:
        return []
    registry = MCPRegistry(
        specs,
        call_timeout=loaded.config.mcp.call_timeout,
        connect_timeout=loaded.config.mcp.connect_timeout,
    )
    async with registry:
        return registry.tools()
