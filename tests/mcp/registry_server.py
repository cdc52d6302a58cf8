"""A small MCP server for the registry tests and benchmark (stdio by default, or HTTP).

    python registry_server.py [--name N] [--fail-start] [--http PORT [--token T]]

Tools: ``echo`` (answers ``<name>:<message>`` so a test can tell servers apart), ``add``
(structured), ``sleep``, ``crash`` (``os._exit``), ``add_tool`` (adds a tool at run time and
announces it both ways: ``subscriptions/listen`` for 2026-07-28 sessions and
``notifications/tools/list_changed`` for earlier ones), ``shout`` (floods stderr),
``get_env`` and ``pid``.
``--http`` serves Streamable HTTP on 127.0.0.1; with ``--token`` every request must carry
``Authorization: Bearer <token>`` (401 otherwise). Never prints to stdout.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import anyio
from mcp.server import MCPServer
from mcp.server.mcpserver import Context


def build(name: str) -> MCPServer:
    server = MCPServer(f"registry-test-{name}", log_level="WARNING")

    @server.tool()
    def echo(message: str) -> str:
        """Echo the message, prefixed with this server's name."""
        return f"{name}:{message}"

    @server.tool()
    def add(a: int, b: int) -> dict[str, int]:
        """Add two integers (structured result)."""
        return {"sum": a + b}

    @server.tool()
    async def sleep(seconds: float) -> str:
        """Sleep, then answer."""
        await anyio.sleep(seconds)
        return "slept"

    @server.tool()
    def crash() -> str:
        """Exit the whole server process at once."""
        sys.stderr.write("crashing on purpose\n")
        sys.stderr.flush()
        os._exit(3)

    @server.tool()
    async def add_tool(tool_name: str, ctx: Context) -> str:
        """Add a tool named tool_name that answers its own name."""

        def added() -> str:
            return tool_name

        server.add_tool(added, name=tool_name, description=f"added at run time: {tool_name}")
        await ctx.notify_tools_changed()
        try:
            await ctx.request_context.session.send_tool_list_changed()
        except Exception as exc:  # a modern session may have no standalone channel
            sys.stderr.write(f"legacy list_changed not sent: {exc}\n")
        return "added"

    @server.tool()
    def shout(lines: int) -> str:
        """Write that many 100-byte lines to stderr (more than a pipe holds), then answer."""
        for i in range(lines):
            sys.stderr.write(f"shout {i:06d} " + "x" * 87 + "\n")
        sys.stderr.flush()
        return "done"

    @server.tool()
    def get_env(variable: str) -> str:
        """The value of an environment variable, or <unset>."""
        return os.environ.get(variable, "<unset>")

    @server.tool()
    def pid() -> int:
        """This server's process id."""
        return os.getpid()

    return server


class _BearerCheck:
    """ASGI middleware: 401 unless the request carries the expected bearer token."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and dict(scope["headers"]).get(b"authorization") != (
            self.expected
        ):
            await send({"type": "http.response.start", "status": 401, "headers": []})
            await send({"type": "http.response.body", "body": b"unauthorized"})
            return
        await self.app(scope, receive, send)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", default="test")
    parser.add_argument("--fail-start", action="store_true")
    parser.add_argument("--http", type=int, default=None, metavar="PORT")
    parser.add_argument("--token", default=None)
    args = parser.parse_args()
    if args.fail_start:
        sys.stderr.write("fatal: this server is configured to fail at start\n")
        sys.exit(2)
    server = build(args.name)
    sys.stderr.write(f"registry test server {args.name} starting\n")
    if args.http is None:
        server.run()
        return
    import uvicorn

    app: Any = server.streamable_http_app(host="127.0.0.1")
    if args.token:
        app = _BearerCheck(app, args.token)
    uvicorn.run(app, host="127.0.0.1", port=args.http, log_level="warning")


if __name__ == "__main__":
    main()
