"""Generated tools: one file per tool on disk, run in the sandbox, served live over MCP.

::

    <data dir>/generated_tools/
        NAME.json                   the live version: name, version, description, code,
                                    tests, requested_by, request, created_at, enabled, ...
        versions/NAME/v0001.json    every version ever accepted (rollback reads these)
        stats/NAME.json             calls, failures, consecutive failures (the servers write it)

    tool agent ──deploy()──► versions/NAME/vN.json, then NAME.json (write tmp + rename)
    `octopussy tools disable|enable|rollback|remove` ──► NAME.json (the same way)

    built-in MCP server ── GeneratedToolset ──┬─ at start: load every NAME.json
                                              ├─ every 0.25 s, and before each tools/list and
                                              │  tools/call: the directory's mtime changed? rescan
                                              ├─ add_tool / remove_tool on the MCPServer
                                              └─ notifications/tools/list_changed: to 2025-era
                                                 sessions directly, to 2026-era subscribers
                                                 through the subscription bus
    tools/call NAME ──► run_tool(): the harness + the tool's code in the Sandbox (the same
                        bubblewrap sandbox as execute_python: no network unless the tool was
                        allowed it, the configured time and memory limits), arguments on stdin

The tool's code never runs in the server process: the server takes the input schema from
the syntax tree (``toolcheck``), and every call is a fresh sandboxed process. The syncing
before tools/list makes our own registry's ``refresh()`` deterministic (the tool agent
refreshes right after deploying); the poll and the notification serve other clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import math
import os
import re
import secrets
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from weakref import WeakSet

import anyio
from mcp.server import MCPServer
from mcp.server.connection import Connection
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.session import ServerSession
from mcp.server.subscriptions import InMemorySubscriptionBus, ToolsListChanged
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from octopussy.errors import ToolError
from octopussy.mcp.sandbox import Sandbox, SandboxResult
from octopussy.mcp.toolcheck import CheckedTool, ImportPolicy, ToolCheckError, check_tool

log = logging.getLogger("octopussy.mcp.generated")

#: Consecutive failed calls after which a tool is flagged in listings.
FLAG_AFTER = 3
#: How often the server looks at the directory (seconds).
POLL_INTERVAL = 0.25
_NAME_FILE = re.compile(r"^([A-Za-z][A-Za-z0-9_]{0,63})\.json$")
_VERSION_FILE = re.compile(r"^v(\d+)\.json$")
#: Characters of a tool's own print() output returned with its result.
_PRINTED_CHARS = 4000


# --------------------------------------------------------------------------- the files


class ToolRecord(BaseModel):
    """One version of one generated tool (the file format)."""

    model_config = ConfigDict(extra="ignore")

    name: str
    version: int = Field(ge=1)
    description: str
    code: str
    tests: list[dict[str, Any]] = []
    requested_by: str = "unknown"
    request: str = ""
    created_at: float = 0.0
    enabled: bool = True
    allow_network: bool = False
    attempts: int = 1
    rolled_back_from: int | None = None


class ToolStats(BaseModel):
    """How a generated tool has fared at call time."""

    model_config = ConfigDict(extra="ignore")

    calls: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    last_error: str | None = None
    last_call_at: float | None = None
    version: int | None = None

    @property
    def flagged(self) -> bool:
        return self.consecutive_failures >= FLAG_AFTER


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.{secrets.token_hex(4)}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


class GeneratedToolStore:
    """The ``generated_tools`` directory: live files, their versions, call statistics.

    Every write is a temporary file renamed into place, so a server reading the
    directory sees a whole file or none. Nothing here runs tool code.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def live_path(self, name: str) -> Path:
        _check_name(name)
        return self.directory / f"{name}.json"

    def _versions_dir(self, name: str) -> Path:
        _check_name(name)
        return self.directory / "versions" / name

    def _stats_path(self, name: str) -> Path:
        return self.directory / "stats" / f"{name}.json"

    # -- reading

    def names(self) -> list[str]:
        """Names of the live tools (enabled or not), sorted."""
        try:
            entries = os.listdir(self.directory)
        except OSError:  # missing or unreadable: no generated tools (never a failed request)
            return []
        return sorted(m.group(1) for e in entries if (m := _NAME_FILE.match(e)))

    def get(self, name: str) -> ToolRecord | None:
        """The live version of ``name``; ``None`` if there is none; ``ToolError`` if unreadable."""
        path = self.live_path(name)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ToolError(f"cannot read {path}: {exc.strerror or exc}") from exc
        return _parse_record(text, path)

    def require(self, name: str) -> ToolRecord:
        record = self.get(name)
        if record is None:
            known = ", ".join(self.names()) or "none"
            raise ToolError(
                f"no generated tool named {name!r}",
                hint=f"generated tools: {known} (`octopussy tools list`)",
            )
        return record

    def versions(self, name: str) -> list[ToolRecord]:
        """Every stored version of ``name``, oldest first (unreadable files skipped)."""
        directory = self._versions_dir(name)
        try:
            entries = sorted(
                (int(m.group(1)), e) for e in os.listdir(directory) if (m := _VERSION_FILE.match(e))
            )
        except OSError:
            return []
        found: list[ToolRecord] = []
        for _, entry in entries:
            with contextlib.suppress(OSError, ToolError):
                found.append(
                    _parse_record((directory / entry).read_text("utf-8"), directory / entry)
                )
        return found

    def next_version(self, name: str) -> int:
        numbers = [r.version for r in self.versions(name)]
        live = self.get(name)
        if live is not None:
            numbers.append(live.version)
        return max(numbers, default=0) + 1

    def stats(self, name: str) -> ToolStats:
        try:
            return ToolStats.model_validate_json(self._stats_path(name).read_text("utf-8"))
        except (OSError, ValidationError, ValueError):
            return ToolStats()

    # -- writing

    def deploy(self, record: ToolRecord) -> ToolRecord:
        """Store ``record`` as a new version and make it the live one."""
        text = record.model_dump_json(indent=2)
        _write_atomic(self._versions_dir(record.name) / f"v{record.version:04d}.json", text)
        _write_atomic(self.live_path(record.name), text)
        self._reset_stats(record.name, record.version)
        return record

    def set_enabled(self, name: str, enabled: bool) -> ToolRecord:
        record = self.require(name).model_copy(update={"enabled": enabled})
        _write_atomic(self.live_path(name), record.model_dump_json(indent=2))
        return record

    def rollback(self, name: str, to: int | None = None) -> ToolRecord:
        """Make an earlier version live again: ``to``, else the newest one before the live one."""
        current = self.require(name)
        versions = {r.version: r for r in self.versions(name)}
        if to is None:
            earlier = [v for v in versions if v < current.version]
            if not earlier:
                raise ToolError(
                    f"{name} v{current.version} has no earlier version to roll back to",
                    hint=f"`octopussy tools show {name}` lists its versions",
                )
            to = max(earlier)
        if to not in versions:
            raise ToolError(
                f"{name} has no version {to}",
                hint=f"versions: {', '.join(f'v{v}' for v in sorted(versions)) or 'none'}",
            )
        if to == current.version:
            raise ToolError(f"{name} v{to} is already the live version")
        record = versions[to].model_copy(
            update={"enabled": True, "rolled_back_from": current.version}
        )
        _write_atomic(self.live_path(name), record.model_dump_json(indent=2))
        self._reset_stats(name, record.version)
        return record

    def remove(self, name: str) -> ToolRecord:
        """Take the tool away (its versions stay under ``versions/NAME`` for the record)."""
        record = self.require(name)
        self.live_path(name).unlink(missing_ok=True)
        self._stats_path(name).unlink(missing_ok=True)
        return record

    def record_call(self, name: str, version: int, *, ok: bool, error: str | None = None) -> None:
        """Count one call (servers call this; last writer wins across processes)."""
        stats = self.stats(name)
        if stats.version != version:
            stats = ToolStats(version=version)
        stats.calls += 1
        stats.last_call_at = time.time()
        if ok:
            stats.consecutive_failures = 0
        else:
            stats.failures += 1
            stats.consecutive_failures += 1
            stats.last_error = (error or "failed")[:500]
        try:
            _write_atomic(self._stats_path(name), stats.model_dump_json())
        except OSError as exc:
            log.warning("cannot record a call of %s: %s", name, exc)

    def _reset_stats(self, name: str, version: int) -> None:
        with contextlib.suppress(OSError):
            _write_atomic(self._stats_path(name), ToolStats(version=version).model_dump_json())


def _check_name(name: str) -> None:
    if not _NAME_FILE.match(f"{name}.json"):
        raise ToolError(
            f"{name!r} is not a tool name",
            hint="tool names are letters, digits and underscores (`octopussy tools list`)",
        )


def _parse_record(text: str, path: Path) -> ToolRecord:
    try:
        record = ToolRecord.model_validate_json(text)
    except (ValidationError, ValueError) as exc:
        first = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
        raise ToolError(f"{path} is not a valid tool file: {first}") from exc
    return record


# --------------------------------------------------------------------------- running

#: The program that runs inside the sandbox: the tool's code, then one call or every example.
#: Its result is the last stdout line starting with the marker (a fresh random one per run,
#: sent on stdin), so nothing the tool prints can be mistaken for it.
HARNESS = r"""
import contextlib, io, json, sys, time, traceback

def _jsonable(value):
    json.dumps(value, allow_nan=False)
    return value

def _error(exc):
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if f.filename == "tool.py"]
    where = " (line %d: %s)" % (mine[-1].lineno, (mine[-1].line or "").strip()) if mine else ""
    return "%s: %s%s" % (type(exc).__name__, exc, where)

def main():
    request = json.loads(sys.stdin.read())
    marker = request["marker"]
    out = sys.stdout
    def say(kind, data):
        out.write(marker + kind + " " + json.dumps(data) + "\n")
        out.flush()
    namespace = {"__name__": "generated_tool"}
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            exec(compile(request["code"], "tool.py", "exec"), namespace)
        function = namespace[request["name"]]
    except BaseException as exc:
        say("result", {"loaded": False, "error": _error(exc), "printed": printed.getvalue()})
        return
    results = []
    for index, arguments in enumerate(request["calls"]):
        say("start", index)
        started = time.perf_counter()
        item = {}
        try:
            with contextlib.redirect_stdout(printed):
                value = function(**arguments)
            try:
                item["result"] = _jsonable(value)
            except (TypeError, ValueError) as exc:
                item["error"] = "the function returned %s, which is not a JSON value (%s)" % (
                    type(value).__name__, exc)
        except BaseException as exc:
            item["error"] = _error(exc)
        item["seconds"] = round(time.perf_counter() - started, 4)
        results.append(item)
    say("result", {"loaded": True, "results": results, "printed": printed.getvalue()})

main()
"""


@dataclass(slots=True)
class CallOutcome:
    """One call's result: ``result`` when ``error`` is None."""

    result: Any = None
    error: str | None = None
    seconds: float = 0.0


@dataclass(slots=True)
class RunReport:
    """What one sandbox run of a tool produced (one call or all its examples)."""

    loaded: bool
    outcomes: list[CallOutcome] = field(default_factory=list)
    error: str | None = None  # the code failed to load, or the run itself failed
    printed: str = ""
    sandbox: SandboxResult | None = None

    @property
    def isolated(self) -> bool:
        return self.sandbox is not None and self.sandbox.isolated


async def run_tool(
    sandbox: Sandbox,
    *,
    name: str,
    code: str,
    calls: list[dict[str, Any]],
    network: bool = False,
    timeout_seconds: float | None = None,
) -> RunReport:
    """Run ``code`` in ``sandbox`` and call ``name`` once per argument mapping in ``calls``."""
    marker = f"@@octopussy-{secrets.token_hex(8)}:"
    request = json.dumps({"marker": marker, "code": code, "name": name, "calls": calls})
    result = await sandbox.run_python(
        HARNESS, stdin=request, timeout_seconds=timeout_seconds, network=network
    )
    started = -1
    final: dict[str, Any] | None = None
    for line in result.stdout.split("\n"):
        if not line.startswith(marker):
            continue
        kind, _, data = line[len(marker) :].partition(" ")
        with contextlib.suppress(ValueError):
            if kind == "start":
                started = int(json.loads(data))
            elif kind == "result":
                final = json.loads(data)
    if final is None:
        return RunReport(
            loaded=started >= 0,
            error=_run_failure(result, started, calls, timeout_seconds),
            sandbox=result,
        )
    printed = str(final.get("printed") or "")[:_PRINTED_CHARS]
    if not final.get("loaded"):
        return RunReport(
            loaded=False,
            error=f"the code fails when loaded: {final.get('error')}",
            printed=printed,
            sandbox=result,
        )
    outcomes = [
        CallOutcome(item.get("result"), item.get("error"), float(item.get("seconds") or 0))
        for item in final.get("results", [])
    ]
    return RunReport(loaded=True, outcomes=outcomes, printed=printed, sandbox=result)


def _run_failure(
    result: SandboxResult, started: int, calls: list[dict[str, Any]], timeout: float | None
) -> str:
    where = ""
    if 0 <= started < len(calls):
        where = f" while running the call with {json.dumps(calls[started])}"
    if result.truncated and not result.timed_out and result.exit_code == 0:
        return (
            f"the output{where} is larger than the sandbox's limit "
            f"({len(result.stdout)} characters kept); return a smaller result"
        )
    if result.timed_out:
        limit = f" {timeout:g} s" if timeout else ""
        return (
            f"the code did not finish within the{limit} time limit{where} and was killed; "
            "it probably loops forever or does far too much work"
        )
    reasons = [n for n in result.notes if "limit" in n or "killed" in n]
    tail = result.stderr.strip().splitlines()[-3:] if result.stderr.strip() else []
    detail = "; ".join([*reasons, *tail]) or f"exit code {result.exit_code}"
    return f"the sandboxed run failed{where}: {detail}"


def same_value(actual: Any, expected: Any) -> bool:
    """Whether a result matches an example's expected value (floats within 1e-6)."""
    if isinstance(actual, bool) or isinstance(expected, bool):
        return type(actual) is type(expected) and actual == expected
    if isinstance(actual, int | float) and isinstance(expected, int | float):
        return math.isclose(actual, expected, rel_tol=1e-6, abs_tol=1e-9)
    if isinstance(actual, list) and isinstance(expected, list):
        return len(actual) == len(expected) and all(
            same_value(a, e) for a, e in zip(actual, expected, strict=True)
        )
    if isinstance(actual, dict) and isinstance(expected, dict):
        return actual.keys() == expected.keys() and all(
            same_value(actual[k], expected[k]) for k in actual
        )
    return bool(actual == expected)


# --------------------------------------------------------------------------- the live toolset


@dataclass(slots=True)
class _Live:
    record: ToolRecord
    checked: CheckedTool
    stamp: tuple[int, int, int]


class GeneratedToolset:
    """Keeps an ``MCPServer``'s generated tools in step with the directory. See module doc."""

    def __init__(
        self,
        store: GeneratedToolStore,
        sandbox: Sandbox,
        *,
        subscriptions: InMemorySubscriptionBus,
        reserved: Iterable[str] = (),
        poll_interval: float = POLL_INTERVAL,
    ) -> None:
        self._server: MCPServer | None = None
        self.store = store
        self.sandbox = sandbox
        self.subscriptions = subscriptions
        self.reserved = frozenset(reserved)
        self.poll_interval = poll_interval
        self._live: dict[str, _Live] = {}
        self._refused: dict[str, tuple[int, int, int]] = {}  # bad files, warned once per change
        self._dir_stamp: int | None = None
        self._connections: WeakSet[Connection] = WeakSet()
        self._notify_tasks: set[asyncio.Task[None]] = set()

    def attach(self, server: MCPServer) -> None:
        """The server whose tools this set manages (built after the set: it needs the
        set's middleware and lifespan)."""
        self._server = server

    @property
    def server(self) -> MCPServer:
        if self._server is None:
            raise RuntimeError("GeneratedToolset.attach(server) was not called")
        return self._server

    @property
    def tools(self) -> dict[str, ToolRecord]:
        return {name: live.record for name, live in self._live.items()}

    # -- syncing with the directory

    def _stamp_dir(self) -> int | None:
        try:
            return os.stat(self.store.directory).st_mtime_ns
        except OSError:
            return None

    def sync(self, *, force: bool = False) -> bool:
        """Register new and changed tools, drop removed and disabled ones; True if any changed.

        Unless ``force``, returns at once when the directory's mtime is unchanged (every
        write we make renames a file into it).
        """
        stamp = self._stamp_dir()
        if not force and stamp == self._dir_stamp:
            return False
        self._dir_stamp = stamp
        seen: set[str] = set()
        changed = False
        for name in self.store.names():
            path = self.store.live_path(name)
            try:
                st = os.stat(path)
            except OSError:
                continue
            file_stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            live = self._live.get(name)
            if live is not None and live.stamp == file_stamp:
                seen.add(name)
                continue
            if self._refused.get(name) == file_stamp:
                continue
            loaded = self._load(name, file_stamp)
            if loaded is None:
                self._refused[name] = file_stamp
                continue
            self._refused.pop(name, None)
            if not loaded.record.enabled:
                continue  # disabled: unregistered below
            seen.add(name)
            self._register(loaded)
            changed = True
        for name in [n for n in self._live if n not in seen]:
            self._unregister(name)
            changed = True
        return changed

    def _load(self, name: str, stamp: tuple[int, int, int]) -> _Live | None:
        try:
            record = self.store.get(name)
            if record is None:
                return None
            if record.name != name:
                raise ToolError(f"the file names tool {record.name!r}, not {name!r}")
            if name in self.reserved:
                raise ToolError(f"{name} is a built-in tool's name")
            policy = ImportPolicy(allowed=("stdlib",), allow_network=record.allow_network)
            # The file is ours, but may have been edited by hand: check it again, leniently
            # on imports (the tool agent already applied the configured allow-list).
            checked = check_tool(record.code, policy=_lenient(policy))
            if checked.name != name:
                raise ToolError(f"its code defines {checked.name}, not {name}")
        except (ToolError, ToolCheckError) as exc:
            log.warning("generated tool %s not loaded: %s", name, exc)
            return None
        return _Live(record, checked, stamp)

    def _register(self, live: _Live) -> None:
        name = live.record.name
        if name in self._live:
            with contextlib.suppress(Exception):
                self.server.remove_tool(name)
        self._live[name] = live
        self.server.add_tool(
            self._handler(live),
            name=name,
            title=name.replace("_", " "),
            description=_description(live),
            annotations=ToolAnnotations(
                read_only_hint=False,
                destructive_hint=False,
                open_world_hint=live.record.allow_network,
            ),
            meta={"octopussy": {"origin": "generated", "version": live.record.version}},
            structured_output=False,
        )
        log.info("generated tool %s v%d registered", name, live.record.version)

    def _unregister(self, name: str) -> None:
        self._live.pop(name, None)
        with contextlib.suppress(Exception):
            self.server.remove_tool(name)
        log.info("generated tool %s unregistered", name)

    def _handler(self, live: _Live) -> Any:
        name = live.record.name

        async def call_generated_tool(**arguments: Any) -> CallToolResult:
            return await self.call(name, arguments)

        call_generated_tool.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [
                inspect.Parameter(
                    p.name,
                    inspect.Parameter.KEYWORD_ONLY,
                    default=p.default,
                    annotation=p.annotation,
                )
                for p in live.checked.params
            ],
            return_annotation=CallToolResult,
        )
        call_generated_tool.__name__ = name
        return call_generated_tool

    # -- calls

    async def call(self, name: str, arguments: dict[str, Any]) -> CallToolResult:
        """Run one call of a generated tool in the sandbox (the MCP handler)."""
        live = self._live.get(name)
        if live is None:
            return _error_result(f"the generated tool {name} was just removed or disabled")
        record = live.record
        try:
            report = await run_tool(
                self.sandbox,
                name=name,
                code=record.code,
                calls=[arguments],
                network=record.allow_network,
            )
        except ToolError as exc:
            self.store.record_call(name, record.version, ok=False, error=str(exc))
            return _error_result(str(exc))
        error = report.error
        outcome = report.outcomes[0] if report.outcomes else None
        if error is None and outcome is not None:
            error = outcome.error
        if error is None and outcome is None:
            error = "the tool produced no result"
        self.store.record_call(name, record.version, ok=error is None, error=error)
        if error is not None:
            return _error_result(f"{name} failed: {error}", printed=report.printed)
        assert outcome is not None
        value = outcome.result
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        if report.printed.strip():
            text += f"\n--- printed ---\n{report.printed.rstrip()}"
        return CallToolResult(
            content=[TextContent(type="text", text=text)],
            structured_content={"result": value},
        )

    # -- telling clients

    def track(self, session: ServerSession, protocol_version: str) -> None:
        """Remember the connection of a 2025-era session: list_changed goes on its standalone
        channel. The SDK builds a ``ServerSession`` per request; the connection behind it
        lives as long as the client stays (held weakly: a closed one simply disappears)."""
        if protocol_version in MODERN_PROTOCOL_VERSIONS:
            return
        connection = getattr(session, "_connection", None)  # the SDK has no public accessor
        if isinstance(connection, Connection):
            self._connections.add(connection)

    async def notify(self) -> None:
        """Send ``notifications/tools/list_changed`` to every client that can hear it."""
        await self.subscriptions.publish(ToolsListChanged())
        for connection in list(self._connections):
            try:
                with anyio.fail_after(2.0):
                    await connection.send_tool_list_changed()  # best effort, never raises
            except Exception as exc:
                log.debug("list_changed not delivered: %s", exc)
                self._connections.discard(connection)

    async def middleware(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        """Server middleware: track sessions; sync before tools/list and tools/call."""
        self.track(ctx.session, ctx.protocol_version)
        changed = False
        if ctx.method in ("tools/list", "tools/call"):
            changed = self.sync()
        result = await call_next(ctx)
        if changed:
            task = asyncio.get_running_loop().create_task(self.notify())
            self._notify_tasks.add(task)
            task.add_done_callback(self._notify_tasks.discard)
        return result

    async def watch(self) -> None:
        """Poll the directory until cancelled; notify clients after each change."""
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                changed = self.sync()
            except Exception:
                log.exception("scanning %s failed", self.store.directory)
                continue
            if changed:
                await self.notify()

    def lifespan(self, _server: MCPServer) -> contextlib.AbstractAsyncContextManager[None]:
        """``MCPServer(lifespan=...)``: the watcher runs while the server serves."""
        return self.running()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The watcher, for the server's lifespan (stdio: per run; HTTP: once)."""
        task = asyncio.get_running_loop().create_task(self.watch(), name="generated-tools-watch")
        try:
            yield
        finally:
            task.cancel()
            for pending in (task, *self._notify_tasks):
                pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _lenient(policy: ImportPolicy) -> ImportPolicy:
    """What the server enforces on load: no dynamic imports, network modules only with
    network; any other module is fine (the tool agent applied the configured allow-list)."""
    return ImportPolicy(
        allowed=("*",), network_modules=policy.network_modules, allow_network=policy.allow_network
    )


def _description(live: _Live) -> str:
    text = live.checked.description or live.record.description
    return f"{text}\n\n(generated tool, v{live.record.version})"


def _error_result(text: str, *, printed: str = "") -> CallToolResult:
    if printed.strip():
        text += f"\n--- printed ---\n{printed.rstrip()}"
    return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)
