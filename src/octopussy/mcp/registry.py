"""The MCP client registry: one persistent session per server, every tool callable by name.

    MCPRegistry ─┬─ owner task "builtin" ── AsyncExitStack ─ Client ─ stdio ─► child (own pgid)
                 │                            ├─ refresher  (tools/list_changed ► re-list)
                 │                            └─ listener   (2026-07-28: subscriptions/listen)
                 ├─ owner task "time"    ── ...                      stderr ─► pipe ─► our log
                 └─ owner task "remote"  ── ... ─ Streamable HTTP / SSE ─► http://…/mcp
    call("echo" | "server.echo")  ── from any task ──► routes[name] ──► that server's Client

Each server has exactly one long-lived *owner task* that enters and exits its ``Client``
(the SDK's sessions must be closed by the task that opened them), keeps the tool index
current, and when the connection fails — the server did not start, the child exited, the
HTTP session vanished — logs why, drops that server's tools, waits (exponential backoff,
capped) and connects again. A server never takes the others down. Calls run in the
caller's task, straight on the shared ``Client``; concurrent calls are fine.

Tool names: as in the seed, a plain name belongs to the *later* server in config order when
two offer it (a warning is logged), and every tool is also reachable as ``server.tool``.
``tool_specs()`` gives the model names that OpenAI-style APIs accept (``[A-Za-z0-9_-]``,
≤ 64 chars); ``call`` accepts those too.

Errors, by who can act on them:

- ``ToolError`` — the call could not be made: unknown tool (with close names), the server
  is not connected (``server X is not connected: <reason>; retrying in Ns``), or the
  connection broke during the call (the tool may or may not have run; never retried).
- ``ToolResult(is_error=True)`` — the server answered with an error, or the call timed out
  (the model can read it and change course; the SDK also sends the server a cancel).

Shutdown: ``stop()`` asks every owner to leave its ``async with Client``; the SDK closes a
stdio child's stdin, then SIGTERMs and SIGKILLs its process group. Anything still alive
after that (say, ``stop`` was itself cancelled by Ctrl-C) is SIGKILLed by process group,
found through the child's stderr pipe — so no server process outlives the registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import hashlib
import logging
import math
import os
import re
import signal
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import IO, Any, Literal, TextIO, cast

import anyio
import httpx2
import mcp_types as types
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from mcp import Client, StdioServerParameters
from octopussy import __version__
from octopussy.errors import ToolError
from octopussy.llm.base import ToolSpec
from octopussy.mcp.servers import ServerSpec

_sse_client: Any
try:  # legacy HTTP+SSE: only while the SDK still ships it
    from mcp.client.sse import sse_client as _sse_client
except ImportError:  # pragma: no cover - depends on the SDK version
    _sse_client = None

__all__ = [
    "MCPRegistry",
    "ServerState",
    "ServerStatus",
    "ToolInfo",
    "ToolResult",
]

log = logging.getLogger("octopussy.mcp")

ServerState = Literal["connecting", "ready", "failed", "stopped"]
TransportStreams = tuple[Any, Any]  # (ReadStream[SessionMessage | Exception], WriteStream)

#: Our outer bound on a call exceeds the SDK's by this much; it only fires when the SDK's
#: own timer cannot (a write blocked on a child that stopped reading its stdin).
_CALL_GRACE = 2.0
#: How long a stopping owner may take before it is cancelled (the SDK's stdio shutdown
#: needs at most 2 s grace + 2 s SIGTERM + 2 s SIGKILL).
_STOP_TIMEOUT = 8.0
#: A probe that decides whether an HTTP session still exists after an error.
_PROBE_TIMEOUT = 5.0
_LIST_PAGES = 100
_STDERR_TAIL = 20
_STDERR_LINE = 2000
_LLM_NAME = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True, slots=True)
class ToolInfo:
    """One tool of one connected server, as the registry exposes it."""

    name: str  # the plain tool name, or ``server.tool`` when another server owns the plain name
    qualified: str  # always ``server.tool``
    server: str
    tool: str  # the name on the server
    description: str
    input_schema: dict[str, Any]
    llm_name: str  # ``name`` made acceptable to OpenAI-style APIs (what ``tool_specs`` uses)


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What a tool call produced."""

    text: str  # every text block (and embedded text resource) joined; markers for others
    structured: Any  # ``structuredContent`` or None
    is_error: bool
    server: str
    tool: str
    content: tuple[Any, ...] = field(default=(), repr=False)  # the raw MCP content blocks


@dataclass(frozen=True, slots=True)
class ServerStatus:
    """One server's state, for ``octopussy mcp list`` and ``doctor``."""

    name: str
    transport: str
    state: ServerState
    tools: int
    last_error: str | None
    retries: int  # consecutive failed attempts since the last stable connection
    origin: str
    target: str  # the command line or the URL
    pid: int | None  # the stdio child, while it runs
    next_retry_in: float | None  # seconds, while failed
    protocol_version: str | None


OnChange = Callable[[str], None]


# --------------------------------------------------------------------------- the registry


class MCPRegistry:
    """Connects to every enabled server and routes tool calls to them. See the module doc."""

    def __init__(
        self,
        specs: Sequence[ServerSpec],
        *,
        call_timeout: float = 60.0,
        connect_timeout: float = 30.0,
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
        on_change: OnChange | None = None,
    ) -> None:
        names = [spec.name for spec in specs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate MCP server names: {', '.join(duplicates)}")
        self.call_timeout = call_timeout
        self.connect_timeout = connect_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.on_change = on_change
        self._servers: dict[str, _Server] = {spec.name: _Server(spec, self) for spec in specs}
        self._routes: dict[str, tuple[_Server, str]] = {}
        self._infos: list[ToolInfo] = []
        self._specs: list[ToolSpec] = []
        self._warned: set[tuple[str, tuple[str, ...]]] = set()
        self._started = False

    # -- lifecycle

    async def start(self) -> None:
        """Connect every enabled server concurrently; return once each is ready or has failed.

        Bounded by ``connect_timeout``. A server that failed keeps retrying in the background.
        """
        if self._started:
            return
        self._started = True
        servers = [s for s in self._servers.values() if s.spec.enabled]
        for server in servers:
            server.launch()
        if not servers:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.connect_timeout + 1.0):
                await asyncio.gather(*(s.first_attempt.wait() for s in servers))
        pending = [s.name for s in servers if not s.first_attempt.is_set()]
        if pending:
            log.warning("MCP servers still connecting after start: %s", ", ".join(pending))

    async def stop(self) -> None:
        """Close every session from its owner task; no server process survives this call.

        Safe to call twice and safe to cancel: whatever is still running when it is
        cancelled (or times out) is killed by process group before it returns or raises.
        """
        servers = [s for s in self._servers.values() if s.task is not None]
        for server in servers:
            server.request_stop()
        tasks = [s.task for s in servers if s.task is not None and not s.task.done()]
        try:
            if tasks:
                _, pending = await asyncio.wait(tasks, timeout=_STOP_TIMEOUT)
                for task in pending:
                    task.cancel()
                if pending:
                    await asyncio.wait(pending, timeout=2.0)
        finally:
            self.kill_children()
            self._rebuild()

    def kill_children(self) -> list[int]:
        """SIGKILL the process group of every stdio child still alive; returns their pids.

        Synchronous, for ``stop`` and for last-resort cleanup (an atexit hook, a signal
        handler). Only kills a pid that is still our child, never a recycled one.
        """
        return [pid for s in self._servers.values() if (pid := s.kill_leftover()) is not None]

    async def __aenter__(self) -> MCPRegistry:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- what is there

    def tools(self) -> list[ToolInfo]:
        """Every tool of every connected server, in config order (later servers last)."""
        return list(self._infos)

    def tool_specs(self) -> list[ToolSpec]:
        """The tools as the model sees them (names valid for OpenAI-style APIs)."""
        return list(self._specs)

    def status(self) -> list[ServerStatus]:
        """Every configured server, enabled or not, in config order."""
        return [s.status() for s in self._servers.values()]

    def server_names(self) -> list[str]:
        return list(self._servers)

    # -- calls

    async def call(
        self,
        name: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> ToolResult:
        """Call a tool by plain name, ``server.tool`` or its ``llm_name``, from any task.

        ``timeout`` (seconds) overrides the server's and the registry's call timeout. A
        timeout gives ``ToolResult(is_error=True)``; see the module doc for ``ToolError``.
        """
        route = self._routes.get(name)
        if route is None:
            raise self._unknown(name)
        server, tool = route
        return await server.call(tool, dict(arguments) if arguments else {}, timeout)

    async def refresh(self, server: str) -> list[ToolInfo]:
        """Re-list one server's tools now (our bus says a tool was deployed); its tools."""
        conn = self._servers.get(server)
        if conn is None:
            raise ToolError(
                f"no MCP server named {server!r}",
                hint=f"servers: {', '.join(self._servers) or 'none'}",
            )
        await conn.refresh_now()
        return [info for info in self._infos if info.server == server]

    async def wait_ready(self, server: str, timeout: float) -> bool:
        """Wait (bounded) until ``server`` is connected; False on timeout."""
        conn = self._servers.get(server)
        return conn is not None and await conn.wait_ready(timeout)

    # -- the index

    def _unknown(self, name: str) -> ToolError:
        known = sorted({i.name for i in self._infos} | {i.qualified for i in self._infos})
        close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
        if not close:
            lowered = name.lower()
            close = [k for k in known if lowered in k.lower()][:5]
        message = f"unknown tool {name!r}"
        if close:
            message += f"; close names: {', '.join(close)}"
        if known:
            hint = f"{len(known)} tool names are known; `octopussy mcp list` shows them"
        else:
            hint = "no MCP server is connected"
        return ToolError(message, hint=hint)

    def _rebuild(self) -> None:
        """Recompute names and routes from every server's last listing (cheap: dicts)."""
        servers = list(self._servers.values())
        qualified: dict[str, tuple[_Server, str]] = {}
        for s in servers:
            for tool in s.known:
                qualified[f"{s.name}.{tool.name}"] = (s, tool.name)
        plain: dict[str, tuple[_Server, str]] = {}
        # A down server's tools still route by plain name (to a clear "not connected")
        # unless a live server offers the name.
        for s in servers:
            if not s.up:
                for tool in s.known:
                    if tool.name not in qualified:
                        plain[tool.name] = (s, tool.name)
        owners: dict[str, list[str]] = {}
        for s in servers:  # config order: the later server wins
            if s.up:
                for tool in s.known:
                    if tool.name not in qualified:
                        plain[tool.name] = (s, tool.name)
                        owners.setdefault(tool.name, []).append(s.name)
        shared: dict[tuple[str, ...], list[str]] = {}
        for tool_name, names in owners.items():
            if len(names) > 1:
                shared.setdefault(tuple(names), []).append(tool_name)
        for names_key, tool_names in shared.items():
            key = (",".join(sorted(tool_names)), names_key)
            if key not in self._warned:
                self._warned.add(key)
                log.warning(
                    "MCP servers %s all offer %s; the plain names go to %r, the others stay "
                    "reachable as server.tool",
                    ", ".join(names_key),
                    ", ".join(tool_names),
                    names_key[-1],
                )
        routes = {**plain, **qualified}
        infos: list[ToolInfo] = []
        used: set[str] = set()
        for s in servers:
            if not s.up:
                continue
            for tool in s.known:
                q = f"{s.name}.{tool.name}"
                exposed = tool.name if plain.get(tool.name) == (s, tool.name) else q
                llm = _llm_name(exposed, used, routes, (s, tool.name))
                used.add(llm)
                routes.setdefault(llm, (s, tool.name))
                schema = dict(tool.input_schema or {})
                schema.setdefault("type", "object")
                infos.append(
                    ToolInfo(
                        name=exposed,
                        qualified=q,
                        server=s.name,
                        tool=tool.name,
                        description=tool.description or tool.title or "",
                        input_schema=schema,
                        llm_name=llm,
                    )
                )
        self._routes = routes
        self._infos = infos
        self._specs = [ToolSpec(i.llm_name, i.description, i.input_schema) for i in infos]

    def _changed(self, server: str) -> None:
        self._rebuild()
        if self.on_change is not None:
            try:
                self.on_change(server)
            except Exception:
                log.exception("on_change callback failed for MCP server %r", server)


def _llm_name(
    exposed: str, used: set[str], routes: Mapping[str, tuple[Any, str]], target: tuple[Any, str]
) -> str:
    base = _LLM_NAME.sub("_", exposed.replace(".", "__"))
    if len(base) > 64:
        digest = hashlib.sha1(exposed.encode(), usedforsecurity=False).hexdigest()
        base = base[:55] + "_" + digest[:8]
    candidate, n = base, 2
    while candidate in used or routes.get(candidate, target) != target:
        suffix = f"_{n}"
        candidate, n = base[: 64 - len(suffix)] + suffix, n + 1
    return candidate


# --------------------------------------------------------------------------- one server


class _Server:
    """One server: its owner task, its live ``Client`` and its last tool listing."""

    def __init__(self, spec: ServerSpec, registry: MCPRegistry) -> None:
        self.spec = spec
        self.name = spec.name
        self.registry = registry
        self.state: ServerState = "stopped"
        self.client: Client | None = None
        self.known: list[types.Tool] = []  # kept while down, so calls get "not connected"
        self.up = False
        self.last_error: str | None = None if spec.enabled else "disabled in config"
        self.failures = 0
        self.next_retry_at: float | None = None
        self.pid: int | None = None
        self.protocol_version: str | None = None
        self.task: asyncio.Task[None] | None = None
        self.first_attempt = asyncio.Event()
        self._ready = asyncio.Event()
        self._wake = asyncio.Event()  # stop requested or connection lost
        self._refresh = asyncio.Event()
        self._stopping = False
        self._connect_scope: anyio.CancelScope | None = None
        self._lost_reason: str | None = None
        self._immediate = False
        self._generation = 0
        self._http_status: str | None = None
        self._ready_since = 0.0
        self._list_seq = 0
        self._applied_seq = 0
        self.log = logging.getLogger(f"octopussy.mcp.server.{spec.name}")

    # -- public to the registry

    def launch(self) -> None:
        self.state = "connecting"
        self.task = asyncio.create_task(self._run(), name=f"mcp-server:{self.name}")

    def request_stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._connect_scope is not None:
            # Still connecting: stop now, through anyio, so the SDK's shutdown runs intact.
            self._connect_scope.cancel()

    def status(self) -> ServerStatus:
        next_in = None
        if self.state == "failed" and self.next_retry_at is not None:
            next_in = max(0.0, self.next_retry_at - time.monotonic())
        return ServerStatus(
            name=self.name,
            transport=self.spec.transport,
            state=self.state,
            tools=len(self.known) if self.up else 0,
            last_error=self.last_error,
            retries=self.failures,
            origin=self.spec.origin,
            target=self.spec.describe(),
            pid=self.pid,
            next_retry_in=next_in,
            protocol_version=self.protocol_version if self.up else None,
        )

    def not_connected(self, reason: str | None = None) -> ToolError:
        why = reason or self.last_error or self.state
        if self._stopping or self.state == "stopped":
            return ToolError(f"server {self.name!r} is not connected: {why}; it is stopped")
        if self.state == "failed" and self.next_retry_at is not None:
            wait = max(0.0, self.next_retry_at - time.monotonic())
            return ToolError(
                f"server {self.name!r} is not connected: {why}; retrying in {wait:.0f}s"
            )
        return ToolError(f"server {self.name!r} is not connected: {why}; reconnecting now")

    async def wait_ready(self, timeout: float) -> bool:
        if self._ready.is_set():
            return True
        try:
            async with asyncio.timeout(timeout):
                await self._ready.wait()
        except TimeoutError:
            return False
        return True

    def mark_lost(self, client: Client, reason: str, *, immediate: bool = False) -> None:
        """The connection of ``client`` is broken: have the owner reconnect (idempotent)."""
        if self.client is client and self._lost_reason is None and not self._stopping:
            self._lost_reason = reason
            self._immediate = immediate
            # Down at once, not when the owner task next runs: a call made meanwhile must
            # not reach the dead session, and wait_ready() must wait for the new one.
            self.state = "connecting"
            self._go_down(reason)
            self._wake.set()

    async def call(self, tool: str, arguments: dict[str, Any], timeout: float | None) -> ToolResult:
        return await self._call(tool, arguments, timeout, retry=True)

    async def refresh_now(self) -> None:
        client = self.client
        if client is None:
            raise self.not_connected()
        try:
            async with asyncio.timeout(self.registry.call_timeout):
                await self._relist(client)
        except TimeoutError as exc:
            raise ToolError(f"server {self.name!r} did not list its tools in time") from exc
        except (MCPError, OSError, httpx2.TransportError, anyio.BrokenResourceError) as exc:
            raise ToolError(f"server {self.name!r} could not list its tools: {exc}") from exc

    def kill_leftover(self) -> int | None:
        pid = self.pid
        if pid is None or not _is_our_child(pid):
            return None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            # The SDK starts every child in a new session, so its pgid is its pid.
            os.killpg(pid, signal.SIGKILL)
            self.log.warning("killed leftover MCP server process group %d", pid)
            return pid
        return None

    # -- calls

    async def _call(
        self, tool: str, arguments: dict[str, Any], timeout: float | None, *, retry: bool
    ) -> ToolResult:
        client = self.client
        if client is None:
            raise self.not_connected()
        seconds = timeout or self.spec.timeout or self.registry.call_timeout
        try:
            async with asyncio.timeout(seconds + _CALL_GRACE):
                result = await client.call_tool(tool, arguments, read_timeout_seconds=seconds)
        except MCPError as exc:
            code = exc.error.code
            if code == types.REQUEST_TIMEOUT:
                return self._timed_out(tool, seconds)
            if code == types.CONNECTION_CLOSED:
                self.mark_lost(client, "the connection closed during a call")
                raise self.not_connected("the connection closed during the call") from exc
            if self.spec.transport != "stdio" and retry and await self._session_gone(client):
                # The server no longer knows our session (it restarted): it never ran the
                # call, so rebuilding the client and sending it once more is safe.
                self.log.info("session lost (%s); reconnecting", exc.error.message)
                self.mark_lost(client, f"session lost: {exc.error.message}", immediate=True)
                if await self.wait_ready(self.registry.connect_timeout):
                    return await self._call(tool, arguments, timeout, retry=False)
                raise self.not_connected() from exc
            return self._error(tool, f"the server refused the call: {exc.error.message}")
        except TimeoutError:
            return self._timed_out(tool, seconds)
        except (OSError, httpx2.TransportError, anyio.BrokenResourceError) as exc:
            self.mark_lost(client, f"transport error: {exc}")
            raise self.not_connected(f"transport error: {exc}") from exc
        except anyio.ClosedResourceError as exc:
            raise self.not_connected("the connection is closing") from exc
        except ValidationError as exc:
            return self._error(tool, f"the server sent an invalid result: {exc.errors()[0]['msg']}")
        except RuntimeError as exc:
            if self.client is not client:  # torn down under us
                raise self.not_connected() from exc
            return self._error(tool, str(exc))
        return _to_result(result, self.name, tool)

    async def _session_gone(self, client: Client) -> bool:
        try:
            async with asyncio.timeout(_PROBE_TIMEOUT):
                await client.list_tools()
        except (MCPError, TimeoutError, OSError, httpx2.TransportError, anyio.BrokenResourceError):
            return True
        return False

    def _timed_out(self, tool: str, seconds: float) -> ToolResult:
        return self._error(tool, f"timed out after {seconds:g}s (the call was cancelled)")

    def _error(self, tool: str, message: str) -> ToolResult:
        return ToolResult(f"{self.name}.{tool}: {message}", None, True, self.name, tool)

    # -- the owner task

    async def _run(self) -> None:
        try:
            while not self._stopping:
                self.state = "connecting"
                self.next_retry_at = None
                reason = await self._connect_once()
                self._go_down(reason)
                # The SDK stops the child on the way out; one it had to abandon dies here.
                self.kill_leftover()
                self.pid = None
                if self._stopping:
                    break
                delay = self._next_delay()
                self.state = "failed"
                self.next_retry_at = time.monotonic() + delay
                self.first_attempt.set()
                level = logging.WARNING if self.failures <= 1 else logging.INFO
                self.log.log(
                    level,
                    "MCP server %r is down: %s; retry %d in %.1fs",
                    self.name,
                    reason,
                    self.failures,
                    delay,
                )
                # A lost connection left _wake set; from here on only stop() may cut the wait.
                self._wake.clear()
                if self._stopping:
                    break
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
        finally:
            self._go_down(None)
            self.kill_leftover()
            self.pid = None
            self.state = "stopped"
            self.first_attempt.set()

    def _next_delay(self) -> float:
        stable = (
            self._ready_since and time.monotonic() - self._ready_since >= self.registry.backoff_max
        )
        if stable:
            self.failures = 0
        self._ready_since = 0.0
        self.failures += 1
        if self._immediate and self.failures == 1:
            return 0.0
        delay: float = self.registry.backoff_initial * 2.0 ** (self.failures - 1)
        return min(delay, self.registry.backoff_max)

    async def _connect_once(self) -> str | None:
        """One connection, from spawn to teardown; the reason it ended (None: stopped)."""
        self._generation += 1
        generation = self._generation
        self._lost_reason = None
        self._immediate = False
        self._http_status = None
        self._wake.clear()
        if self._stopping:
            return None
        timeout = self.registry.connect_timeout
        loop = asyncio.get_running_loop()
        deadline_timer = loop.call_later(timeout, self._connect_deadline, generation, timeout)
        pump = _StderrPump(self.name, self.log) if self.spec.transport == "stdio" else None
        connected = False
        started = time.perf_counter()
        scope = anyio.CancelScope(deadline=anyio.current_time() + timeout)
        self._connect_scope = scope
        try:
            # The deadline lives on a scope around the whole session (not around the
            # connect alone) so the SDK's task groups nest inside it; it is lifted once
            # connected. Cancellation by an anyio scope keeps the SDK's shielded stdio
            # shutdown intact, which a native task.cancel() would not.
            with scope:
                async with AsyncExitStack() as stack:
                    if pump is not None:
                        stack.push_async_callback(pump.aclose)
                    transport = self._transport(generation, pump)
                    client = Client(
                        transport,
                        message_handler=self._on_message,
                        logging_callback=self._on_log,
                        client_info=types.Implementation(name="octopussy", version=__version__),
                        # We keep our own index and re-list on change; a response cache
                        # would only add a way to serve a stale listing.
                        cache=None,
                    )
                    await stack.enter_async_context(client)
                    tools = await self._list(client)
                    scope.deadline = math.inf
                    self._connect_scope = None
                    connected = True
                    deadline_timer.cancel()
                    self._come_up(client, tools, time.perf_counter() - started)
                    async with anyio.create_task_group() as group:
                        group.start_soon(self._refresher, client)
                        if self._can_listen(client):
                            group.start_soon(self._listener, client)
                        await self._wake.wait()
                        group.cancel_scope.cancel()
                    # Down before the (possibly slow) teardown: no new calls start on it.
                    self._go_down(self._lost_reason)
            if scope.cancelled_caught and not connected and not self._stopping:
                return self._with_stderr(f"no answer within {timeout:g}s", pump)
        except Exception as exc:
            if self._stopping:
                return None
            if scope.cancel_called and not connected:
                # The deadline's cancellation can surface wrapped in an SDK exception group.
                return self._with_stderr(f"no answer within {timeout:g}s", pump)
            return self._with_stderr(self._describe(exc), pump)
        finally:
            self._connect_scope = None
            deadline_timer.cancel()
        return None if self._stopping else (self._lost_reason or "the connection ended")

    def _connect_deadline(self, generation: int, timeout: float) -> None:
        # Runs at the connect deadline, before the attempt's teardown (which may take
        # seconds for a hung child), so start() can return on time.
        if generation == self._generation and self.state == "connecting":
            self.state = "failed"
            self.last_error = f"no answer within {timeout:g}s"
            self.first_attempt.set()

    def _transport(
        self, generation: int, pump: _StderrPump | None
    ) -> contextlib.AbstractAsyncContextManager[TransportStreams]:
        def on_eof() -> None:
            client = self.client
            if generation == self._generation and client is not None:
                self.mark_lost(client, self._with_stderr("the server closed the connection", pump))

        spec = self.spec
        if spec.transport == "stdio":
            assert pump is not None
            return _stdio_transport(spec, pump, on_eof, self._set_pid)
        headers = dict(spec.headers)
        if spec.transport == "sse":
            return _sse_transport(spec, headers, self.registry.connect_timeout, on_eof)
        return _http_transport(
            spec, headers, self.registry.connect_timeout, on_eof, self._set_http_status
        )

    def _set_pid(self, pid: int | None) -> None:
        self.pid = pid

    def _set_http_status(self, status: str) -> None:
        self._http_status = status

    def _can_listen(self, client: Client) -> bool:
        # 2026-07-28 sessions deliver list_changed only to a subscribed client; earlier
        # ones send it on the session, where _on_message sees it.
        caps = client.server_capabilities.tools
        return client.protocol_version in MODERN_PROTOCOL_VERSIONS and bool(
            caps is not None and caps.list_changed
        )

    def _come_up(self, client: Client, tools: list[types.Tool], seconds: float) -> None:
        self.client = client
        self.known = tools
        self.up = True
        self.state = "ready"
        self.last_error = None
        self.next_retry_at = None
        self.protocol_version = client.protocol_version
        self._ready_since = time.monotonic()
        self._ready.set()
        self.first_attempt.set()
        self.log.info(
            "MCP server %r ready: %d tools, %s, protocol %s, %.2fs",
            self.name,
            len(tools),
            self.spec.transport,
            client.protocol_version,
            seconds,
        )
        self.registry._changed(self.name)

    def _go_down(self, reason: str | None) -> None:
        self.client = None
        self._ready.clear()
        if reason:
            self.last_error = reason
        if self.up:
            self.up = False
            self.registry._changed(self.name)

    async def _list(self, client: Client) -> list[types.Tool]:
        tools: list[types.Tool] = []
        cursor: str | None = None
        for _ in range(_LIST_PAGES):
            page = await client.list_tools(cursor=cursor)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        return tools

    async def _relist(self, client: Client) -> None:
        # Listings may overlap (a notification and a refresh() call): apply only the newest.
        self._list_seq += 1
        seq = self._list_seq
        tools = await self._list(client)
        if seq < self._applied_seq or self.client is not client:
            return
        self._applied_seq = seq
        if tools != self.known:
            self.known = tools
            self.log.info("MCP server %r tools changed: %d tools", self.name, len(tools))
            self.registry._changed(self.name)

    async def _refresher(self, client: Client) -> None:
        while True:
            await self._refresh.wait()
            self._refresh.clear()
            try:
                with anyio.fail_after(self.registry.call_timeout):
                    await self._relist(client)
            except Exception as exc:
                self.log.warning("MCP server %r: re-listing tools failed: %s", self.name, exc)

    async def _listener(self, client: Client) -> None:
        try:
            async with client.listen(tools_list_changed=True) as subscription:
                async for _event in subscription:
                    self.log.debug("MCP server %r: tools changed (subscription)", self.name)
                    self._refresh.set()
        except Exception as exc:
            self.log.debug("MCP server %r: change subscription ended: %s", self.name, exc)

    async def _on_message(self, message: types.ServerNotification | Exception) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            self.log.debug("MCP server %r: tools/list_changed, re-listing", self.name)
            self._refresh.set()
        elif isinstance(message, Exception):
            self.log.debug("MCP server %r transport: %r", self.name, message)

    async def _on_log(self, params: types.LoggingMessageNotificationParams) -> None:
        self.log.debug("MCP server %r log (%s): %s", self.name, params.level, params.data)

    def _describe(self, exc: BaseException) -> str:
        leaf = _leaf(exc)
        if isinstance(leaf, FileNotFoundError | PermissionError) and self.spec.transport == "stdio":
            return f"cannot run {self.spec.command!r}: {leaf.strerror or leaf}"
        if isinstance(leaf, MCPError):
            if self._http_status:
                auth = self._http_status[5:8] in ("401", "403")
                hint = " (check api_key / headers)" if auth else ""
                return f"{self._http_status} from {self.spec.url}{hint}"
            if leaf.error.code == types.CONNECTION_CLOSED:
                return "the server exited or closed the connection during startup"
            return f"the server answered with an error: {leaf.error.message}"
        if isinstance(leaf, httpx2.HTTPStatusError):
            return f"HTTP {leaf.response.status_code} from {self.spec.url}"
        if isinstance(leaf, httpx2.TransportError | OSError):
            return f"cannot reach {self.spec.url or self.spec.command}: {leaf}"
        text = str(leaf)
        return f"{type(leaf).__name__}: {text}" if text else type(leaf).__name__

    @staticmethod
    def _with_stderr(reason: str, pump: _StderrPump | None) -> str:
        last = pump.last_line() if pump is not None else None
        return f"{reason} (stderr: {last})" if last else reason


def _leaf(exc: BaseException) -> BaseException:
    """The first real error inside (nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup):
        inner = [e for e in exc.exceptions if not isinstance(e, asyncio.CancelledError)]
        exc = (inner or list(exc.exceptions))[0]
    return exc


def _to_result(result: types.CallToolResult, server: str, tool: str) -> ToolResult:
    parts: list[str] = []
    for block in result.content:
        if isinstance(block, types.TextContent):
            parts.append(block.text)
        elif isinstance(block, types.EmbeddedResource):
            resource = block.resource
            if isinstance(resource, types.TextResourceContents):
                parts.append(resource.text)
            else:
                parts.append(f"[resource {resource.uri} ({resource.mime_type or 'binary'})]")
        elif isinstance(block, types.ImageContent):
            parts.append(f"[image {block.mime_type}]")
        elif isinstance(block, types.AudioContent):
            parts.append(f"[audio {block.mime_type}]")
        elif isinstance(block, types.ResourceLink):
            parts.append(f"[resource link {block.uri}]")
    return ToolResult(
        "\n".join(parts),
        result.structured_content,
        bool(result.is_error),
        server,
        tool,
        tuple(result.content),
    )


# --------------------------------------------------------------------------- transports


class _WatchedReadStream:
    """The transport's read stream, reporting end-of-stream (the server went away)."""

    def __init__(self, inner: Any, on_eof: Callable[[], None]) -> None:
        self._inner = inner
        self._on_eof = on_eof

    @property
    def last_context(self) -> Any:  # read by the SDK's dispatcher when present
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> SessionMessage | Exception:
        try:
            item: SessionMessage | Exception = await self._inner.receive()
        except anyio.EndOfStream:
            self._on_eof()
            raise
        return item

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __aiter__(self) -> _WatchedReadStream:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            item: SessionMessage | Exception = await self._inner.__anext__()
        except StopAsyncIteration:
            self._on_eof()
            raise
        return item

    async def __aenter__(self) -> _WatchedReadStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._inner.aclose()


@asynccontextmanager
async def _stdio_transport(
    spec: ServerSpec,
    pump: _StderrPump,
    on_eof: Callable[[], None],
    on_pid: Callable[[int | None], None],
) -> AsyncIterator[TransportStreams]:
    params = StdioServerParameters(
        command=spec.command or "",
        args=list(spec.args),
        env=dict(spec.env) or None,
        cwd=spec.cwd,
    )
    errlog = pump.open()
    try:
        async with stdio_client(params, errlog=errlog) as (read, write):
            # The child holds its own copy now; ours would keep the pipe open past its exit.
            pump.close_writer()
            on_pid(_find_child(pump.inode))
            yield _WatchedReadStream(read, on_eof), write
    finally:
        pump.close_writer()


@asynccontextmanager
async def _http_transport(
    spec: ServerSpec,
    headers: dict[str, str],
    connect_timeout: float,
    on_eof: Callable[[], None],
    on_status: Callable[[str], None],
) -> AsyncIterator[TransportStreams]:
    async def status_hook(response: httpx2.Response) -> None:
        # The SDK turns a 401 into "Server returned an error response"; keep the status
        # so the user reads "HTTP 401 Unauthorized" and checks the token.
        if response.status_code >= 400:
            on_status(f"HTTP {response.status_code} {response.reason_phrase}".strip())

    # A long read timeout: the server may hold a response stream open (SDK default).
    timeout = httpx2.Timeout(connect_timeout, read=300.0)
    hooks = {"response": [status_hook]}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=timeout, event_hooks=hooks) as http,
        streamable_http_client(spec.url or "", http_client=http) as (read, write),
    ):
        yield _WatchedReadStream(read, on_eof), write


@asynccontextmanager
async def _sse_transport(
    spec: ServerSpec, headers: dict[str, str], connect_timeout: float, on_eof: Callable[[], None]
) -> AsyncIterator[TransportStreams]:
    if _sse_client is None:  # pragma: no cover - depends on the SDK version
        raise ToolError("this version of the MCP SDK has no legacy SSE client; use type http")
    async with _sse_client(spec.url or "", headers=headers, timeout=connect_timeout) as streams:
        read, write = cast(TransportStreams, streams)
        yield _WatchedReadStream(read, on_eof), write


class _StderrPump:
    """Drains a stdio server's stderr into our log, so the child never blocks on a full pipe.

    The pipe's inode also identifies the child in /proc (its fd 2), which is how we learn
    its pid without reaching into the SDK.
    """

    def __init__(self, server: str, logger: logging.Logger) -> None:
        self.server = server
        self.logger = logger
        self.inode = 0
        self._tail: deque[str] = deque(maxlen=_STDERR_TAIL)
        self._writer: TextIO | None = None
        self._task: asyncio.Task[None] | None = None

    def open(self) -> TextIO:
        read_fd, write_fd = os.pipe()
        self.inode = os.fstat(write_fd).st_ino
        self._writer = cast(TextIO, os.fdopen(write_fd, "w"))
        reader = os.fdopen(read_fd, "rb", buffering=0)
        self._task = asyncio.get_running_loop().create_task(
            self._pump(reader), name=f"mcp-stderr:{self.server}"
        )
        return self._writer

    def close_writer(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(OSError):
                self._writer.close()
            self._writer = None

    def last_line(self) -> str | None:
        return self._tail[-1][:300] if self._tail else None

    async def aclose(self) -> None:
        self.close_writer()
        task = self._task
        if task is None or task.done():
            return
        try:
            # EOF comes once the child (and any grandchild holding its stderr) has exited;
            # asyncio.wait neither raises on timeout nor swallows our own cancellation.
            await asyncio.wait({task}, timeout=1.0)
        finally:
            if not task.done():
                task.cancel()

    async def _pump(self, reader: IO[bytes]) -> None:
        loop = asyncio.get_running_loop()
        stream = asyncio.StreamReader()
        transport: asyncio.BaseTransport | None = None
        try:
            transport, _ = await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(stream), reader
            )
            pending = b""
            while chunk := await stream.read(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    self._emit(line)
                if len(pending) > _STDERR_LINE:
                    self._emit(pending)
                    pending = b""
            if pending:
                self._emit(pending)
        except Exception:
            self.logger.debug("stderr pump of %r stopped", self.server, exc_info=True)
        finally:
            if transport is not None:
                transport.close()
            else:
                reader.close()

    def _emit(self, raw: bytes) -> None:
        line = raw.decode("utf-8", "replace").rstrip()
        if line:
            self._tail.append(line)
            self.logger.info("[%s] %s", self.server, line[:_STDERR_LINE])


# --------------------------------------------------------------------------- /proc helpers


def _parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: fields restart after the last ')'.
    fields = stat[stat.rfind(b")") + 2 :].split()
    if len(fields) < 2 or fields[0] == b"Z":
        return None  # gone, or a zombie (nothing left to kill; the loop reaps it)
    return int(fields[1])


def _is_our_child(pid: int | None) -> bool:
    return pid is not None and _parent_of(pid) == os.getpid()


def _find_child(inode: int) -> int | None:
    """The child of ours whose stderr is the pipe with this inode (Linux; else None)."""
    if not inode or not os.path.isdir("/proc"):
        return None
    target = f"pipe:[{inode}]"
    me = os.getpid()
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            if _parent_of(pid) != me:
                continue
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/2") == target:
                    return pid
    return None
