"""How MCP servers and tools look to the user: ``octopussy mcp list``, ``/mcp``, ``mcp call``.

Pure formatting over ``MCPRegistry.status()`` / ``tools()`` and ``ToolResult``; no I/O here.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from octopussy.mcp.registry import MCPRegistry, ToolResult


def format_status(registry: MCPRegistry, *, with_tools: bool = True) -> str:
    """One block per server: name, state, transport/target, error, then its tools."""
    statuses = registry.status()
    if not statuses:
        return "no MCP servers configured"
    tools = registry.tools()
    lines: list[str] = []
    for status in statuses:
        head = f"{status.name}  [{status.state}]  {status.transport}: {status.target}"
        lines.append(head)
        if status.last_error and status.state != "ready":
            retry = (
                f"; retrying in {status.next_retry_in:.0f}s"
                if status.next_retry_in is not None
                else ""
            )
            lines.append(f"    error: {status.last_error}{retry}")
        if with_tools:
            for tool in sorted((t for t in tools if t.server == status.name), key=_name):
                summary = (tool.description or "").strip().splitlines()
                first = summary[0][:90] if summary else ""
                lines.append(f"    {tool.name:<28} {first}")
    return "\n".join(lines)


def _name(tool: Any) -> str:
    return str(tool.name)


def status_json(registry: MCPRegistry) -> str:
    """``mcp list --json``: servers with their state and tools."""
    tools = registry.tools()
    servers = []
    for status in registry.status():
        entry = asdict(status)
        entry["tool_list"] = [
            {
                "name": t.name,
                "qualified": t.qualified,
                "description": t.description,
                "input_schema": t.input_schema,
            }
            for t in tools
            if t.server == status.name
        ]
        servers.append(entry)
    return json.dumps({"servers": servers}, indent=2, default=str)


def parse_arguments(pairs: list[str], json_args: str | None) -> dict[str, Any]:
    """``key=value`` pairs (values parsed as JSON when they are JSON, else text)."""
    arguments: dict[str, Any] = {}
    if json_args:
        loaded = json.loads(json_args)
        if not isinstance(loaded, dict):
            raise ValueError("--json must be a JSON object")
        arguments.update(loaded)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"expected key=value, got {pair!r}")
        try:
            arguments[key] = json.loads(value)
        except json.JSONDecodeError:
            arguments[key] = value
    return arguments


def format_result(result: ToolResult) -> str:
    """The text a person reads; structured content pretty-printed when there is no text."""
    if result.text:
        return result.text
    if result.structured is not None:
        return json.dumps(result.structured, indent=2, ensure_ascii=False, default=str)
    return "(no content)"
