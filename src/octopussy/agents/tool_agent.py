"""The tool agent: new tools written, checked, tested in the sandbox and live within seconds.

::

    coordinator (create_tool) ─┐                       ┌──► AGENT_NOTIFICATION to the coordinator
    worker (request_tool) ─────┴► CREATE_TOOL ──► ToolAgent          "[TOOL AGENT] New tool …"
                                   │   and to reply_to (the waiting worker)
                                   ▼
      attempt 1..max_attempts:  LLM (output_schema: name, description, code, examples)
          │  extract_code: fences and prose stripped
          │  check_tool: parses, one public function, docstring, JSON types, MCP name not
          │              taken (unless an explicit new version), imports on the allow-list
          │  sandbox test: the code + its example calls in the same bubblewrap sandbox as
          │                execute_python (no network unless allowed, time and memory limits)
          └─ a problem ──► logged and recorded ("tool_attempt"), sent back to the LLM: next try
      accepted ──► generated_tools/NAME.json (+ versions/NAME/vN.json) ──► the built-in server
                   loads it and tells its clients ──► registry.refresh("builtin") ──► reply

The deploy step ends only when our own registry lists the new version, so "available now"
is true when it is said: the next step of any worker can call the tool. The tool agent
handles one request at a time (its inbox loop), which also keeps one model busy at most.

``ToolRequester`` is how a worker asks: it wraps the worker's tool source with one more
tool, ``request_tool``, which sends CREATE_TOOL and waits (bounded) on a private inbox for
the answer. The worker's loop needs no change: its next step lists the tools again. By
default ``request_tool`` is offered only for a few steps after the worker called a tool
that does not exist (the moment it lacks a capability): offered on every step, a small
model reaches for it when the tools it has would do (measured on the embedded model: it
asked for a "create_and_read_file" tool instead of calling write_file).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from octopussy.agents.base import Agent
from octopussy.agents.coordinator import COORDINATOR, TOOL_AGENT
from octopussy.agents.react import ToolResultLike, ToolSource
from octopussy.bus.base import MessageBus
from octopussy.bus.messages import Message, MessageType
from octopussy.config import SandboxSettings, ToolAgentSettings
from octopussy.errors import ModelBehaviorError, OctopussyError, ToolError
from octopussy.llm.base import ChatMessage, Model, ToolSpec
from octopussy.mcp.builtin import BUILTIN_TOOLS
from octopussy.mcp.generated import GeneratedToolStore, ToolRecord, run_tool, same_value
from octopussy.mcp.registry import MCPRegistry
from octopussy.mcp.sandbox import Sandbox
from octopussy.mcp.servers import BUILTIN_NAME
from octopussy.mcp.toolcheck import (
    DEFAULT_NETWORK_MODULES,
    CheckedTool,
    ImportPolicy,
    ToolCheckError,
    check_tool,
    extract_code,
)
from octopussy.store.base import Store

__all__ = [
    "REQUEST_TOOL",
    "TOOL_SCHEMA",
    "RegistryCatalog",
    "ToolAgent",
    "ToolCatalog",
    "ToolOutcome",
    "ToolRequest",
    "ToolRequester",
]

LABEL = "TOOL AGENT"
#: How long deploying waits for the built-in server to list the new version (seconds).
_PUBLISH_TIMEOUT = 15.0

#: What the model fills in. The order matters for a small model: it names the tool, says
#: what it does, writes it, then gives example calls (it has just written the code).
TOOL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 48},
        "description": {"type": "string", "maxLength": 300},
        "code": {"type": "string", "maxLength": 4000},
        "examples": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "call": {"type": "string", "maxLength": 200},
                    "expected": {"type": "string", "maxLength": 200},
                },
                "required": ["call", "expected"],
            },
        },
    },
    "required": ["name", "description", "code", "examples"],
}

_EXAMPLE_REPLY = json.dumps(
    {
        "name": "count_words",
        "description": "Count the words in a text.",
        "code": 'def count_words(text: str) -> int:\n    """Return how many words (separated by '
        'whitespace) the text has."""\n    return len(text.split())\n',
        "examples": [
            {"call": "count_words('hello big world')", "expected": "3"},
            {"call": "count_words('')", "expected": "0"},
        ],
    }
)

SYSTEM_PROMPT = (
    "You write one Python tool: a function that other AI agents will call. Reply with JSON "
    "only, with these keys:\n"
    "- name: the function's name, lower_case_with_underscores, saying what it does.\n"
    "- description: one sentence.\n"
    "- code: the complete Python code of ONE function with that name: type hints on every "
    "parameter and on the return value (int, float, str, bool, list[...], dict[str, ...]), "
    "a docstring, and it returns the result (no print, no input). {imports}\n"
    "- examples: 2 or 3 calls of the function with literal arguments, each with the exact "
    "result it returns, written as a Python value.\n"
    "Example reply for 'a tool that counts words':\n{example}"
)


@dataclass(frozen=True, slots=True)
class ToolRequest:
    """One CREATE_TOOL request."""

    description: str
    request_id: str
    requested_by: str
    allow_network: bool = False
    update: str | None = None  # the tool this is an explicit new version of
    reply_to: str | None = None

    @classmethod
    def from_message(cls, message: Message) -> ToolRequest:
        p = message.payload
        update = str(p.get("update") or "").strip() or None
        reply_to = str(p.get("reply_to") or "").strip() or None
        return cls(
            description=str(p.get("description") or "").strip(),
            request_id=message.task_id or uuid.uuid4().hex[:8],
            requested_by=str(p.get("requested_by") or message.sender),
            allow_network=bool(p.get("allow_network", False)),
            update=update,
            reply_to=reply_to,
        )


@dataclass(slots=True)
class Attempt:
    number: int
    stage: str  # "model", "check", "sandbox" or "accepted"
    problems: list[str] = field(default_factory=list)
    name: str | None = None
    seconds: float = 0.0


@dataclass(slots=True)
class ToolOutcome:
    """What a request led to."""

    request: ToolRequest
    ok: bool
    record: ToolRecord | None = None
    attempts: list[Attempt] = field(default_factory=list)
    available: bool = False  # our registry lists it (callable by the next worker step)
    accepted_at: float | None = None  # perf_counter when the tests passed (benchmarks)
    published_at: float | None = None

    @property
    def text(self) -> str:
        if self.ok and self.record is not None:
            r = self.record
            where = (
                "available now"
                if self.available
                else "saved, but no running built-in tools server lists it yet"
            )
            return f"New tool created: {r.name} v{r.version} — {r.description} ({where})"
        last = self.attempts[-1].problems if self.attempts else ["no attempt was made"]
        tries = len(self.attempts)
        return (
            f"Tool creation failed: {self.request.description!r} after {tries} attempt(s); "
            f"last problem: {'; '.join(last)[:600]}"
        )


class ToolCatalog(Protocol):
    """What the tool agent needs from the tools layer."""

    async def tool_names(self) -> set[str]:
        """Every tool name in use now (built-in, generated, remote)."""
        ...

    async def publish(self, name: str, version: int) -> bool:
        """Make the live registry list ``name`` at ``version``; False if it cannot."""
        ...


class RegistryCatalog:
    """The runtime's registry as a ``ToolCatalog`` (started on first use)."""

    def __init__(self, start_tools: Callable[[], Awaitable[MCPRegistry]]) -> None:
        self._start_tools = start_tools
        self._registry: MCPRegistry | None = None

    async def tool_names(self) -> set[str]:
        registry = await self._start_tools()
        self._registry = registry
        return {info.name for info in registry.tools()} | {info.tool for info in registry.tools()}

    async def publish(self, name: str, version: int) -> bool:
        registry = await self._start_tools()
        self._registry = registry
        if BUILTIN_NAME not in registry.server_names():
            return False
        deadline = time.monotonic() + _PUBLISH_TIMEOUT
        if not await registry.wait_ready(BUILTIN_NAME, _PUBLISH_TIMEOUT):
            return False
        marker = f"v{version})"
        while True:
            # The server rescans its directory before answering tools/list, so one refresh
            # normally suffices; the loop covers a server that was (re)connecting.
            with contextlib.suppress(OctopussyError, TimeoutError):
                infos = await registry.refresh(BUILTIN_NAME)
                if any(i.tool == name and marker in i.description for i in infos):
                    return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)


class ToolAgent(Agent):
    """Handles CREATE_TOOL requests; see the module doc."""

    kind = "tool_agent"

    def __init__(
        self,
        *,
        bus: MessageBus,
        model: Model,
        tools: GeneratedToolStore,
        scratch: Path,
        catalog: ToolCatalog,
        settings: ToolAgentSettings | None = None,
        sandbox: SandboxSettings | None = None,
        store: Store | None = None,
        report_to: str = COORDINATOR,
        name: str = TOOL_AGENT,
    ) -> None:
        super().__init__(name, bus=bus, store=store)
        self.model = model
        self.tools = tools
        self.scratch = scratch
        self.catalog = catalog
        self.settings = settings or ToolAgentSettings()
        self.sandbox_settings = sandbox or SandboxSettings()
        self.report_to = report_to
        self._sandbox: Sandbox | None = None
        #: The latest finished requests, newest last (tests, benchmarks).
        self.outcomes: deque[ToolOutcome] = deque(maxlen=100)

    # -- the bus entry point

    async def handle(self, message: Message) -> None:
        if message.type is not MessageType.CREATE_TOOL:
            self.log.debug("ignoring %s from %s", message.type.value, message.sender)
            return
        request = ToolRequest.from_message(message)
        if not request.description:
            problem = "the request does not say what the tool should do"
            outcome = ToolOutcome(request, ok=False, attempts=[Attempt(0, "model", [problem])])
        else:
            try:
                outcome = await self.create(request)
            except OctopussyError as exc:  # the model's backend is down, ...: say so
                self.log.warning("tool request %s failed: %s", request.request_id, exc)
                outcome = ToolOutcome(request, ok=False, attempts=[Attempt(0, "model", [str(exc)])])
            except Exception as exc:
                # Our own bug: logged with its traceback, and whoever waits still hears.
                self.log.exception("tool request %s crashed", request.request_id)
                problem = f"internal error: {type(exc).__name__}: {exc}"
                outcome = ToolOutcome(request, ok=False, attempts=[Attempt(0, "model", [problem])])
        await self._report(outcome)

    # -- one request

    def policy(self, request: ToolRequest) -> ImportPolicy:
        network = request.allow_network and self.settings.allow_network_requests
        modules = self.settings.network_modules
        return ImportPolicy(
            allowed=tuple(self.settings.allowed_imports),
            network_modules=tuple(modules) if modules is not None else DEFAULT_NETWORK_MODULES,
            allow_network=network,
        )

    async def create(self, request: ToolRequest) -> ToolOutcome:
        """Generate, check, test and deploy one tool (up to ``max_attempts`` tries)."""
        policy = self.policy(request)
        taken = await self._taken()
        outcome = ToolOutcome(request, ok=False)
        messages = [
            ChatMessage.system(self._system_prompt(policy)),
            ChatMessage.user(self._request_text(request)),
        ]
        self.log.info("tool request %s: %s", request.request_id, request.description)
        for number in range(1, self.settings.max_attempts + 1):
            started = time.perf_counter()
            attempt = Attempt(number, "model")
            outcome.attempts.append(attempt)
            draft: dict[str, Any] | None = None
            checked: CheckedTool | None = None
            try:
                response = await self.model.complete(messages, output_schema=TOOL_SCHEMA)
                draft = _draft(response.data, response.text)
                attempt.name = draft["name"]
                attempt.stage = "check"
                checked = check_tool(
                    extract_code(draft["code"]),
                    examples=draft["examples"],
                    policy=policy,
                    taken=taken,
                    replaces=request.update,
                    require_examples=True,
                )
                attempt.name = checked.name
                attempt.stage = "sandbox"
                attempt.problems = await self._test(checked, policy.allow_network)
            except ModelBehaviorError as exc:
                attempt.problems = [f"the reply could not be used: {exc}"]
            except ToolCheckError as exc:
                attempt.problems = exc.problems
            attempt.seconds = round(time.perf_counter() - started, 3)
            if checked is not None and not attempt.problems:
                attempt.stage = "accepted"
                await self._log_attempt(request, attempt)
                outcome.accepted_at = time.perf_counter()
                await self._deploy(request, checked, draft or {}, outcome)
                return outcome
            await self._log_attempt(request, attempt)
            if draft is not None:
                messages.append(ChatMessage.assistant(json.dumps(draft, ensure_ascii=False)))
            messages.append(ChatMessage.user(_feedback(attempt, number, self.settings)))
        return outcome

    async def _taken(self) -> set[str]:
        try:
            remote = await self.catalog.tool_names()
        except OctopussyError as exc:  # the registry failing must not stop a request
            self.log.warning("could not list the tools in use: %s", exc)
            remote = set()
        return {*BUILTIN_TOOLS, *self.tools.names(), *remote}

    def _system_prompt(self, policy: ImportPolicy) -> str:
        if policy.allow_network:
            imports = "Import what you need inside the code; the network may be used."
        else:
            imports = (
                "Import only from the Python standard library, inside the code; there is no "
                "network (no sockets, http, urllib or asyncio)."
            )
        return SYSTEM_PROMPT.format(imports=imports, example=_EXAMPLE_REPLY)

    @staticmethod
    def _request_text(request: ToolRequest) -> str:
        text = f"Write a tool for this request: {request.description}"
        if request.update:
            text += (
                f"\nThis is a new version of the existing tool {request.update}: keep the "
                f"name {request.update}."
            )
        return text

    def _sandbox_for_tests(self) -> Sandbox:
        if self._sandbox is None:
            self.scratch.mkdir(parents=True, exist_ok=True)
            self._sandbox = Sandbox(
                self.sandbox_settings, self.scratch, bwrap_path=self.sandbox_settings.bwrap_path
            )
        return self._sandbox

    async def _test(self, checked: CheckedTool, network: bool) -> list[str]:
        """Run the examples in the sandbox; the problems found (empty: all passed)."""
        sandbox = self._sandbox_for_tests()
        # A fresh, empty directory for every test run: examples never touch user files.
        await asyncio.to_thread(_empty_dir, self.scratch)
        timeout = self.settings.test_timeout_seconds or self.sandbox_settings.timeout_seconds
        report = await run_tool(
            sandbox,
            name=checked.name,
            code=checked.code,
            calls=[example.arguments for example in checked.examples],
            network=network,
            timeout_seconds=timeout,
        )
        if report.error is not None:
            return [report.error]
        problems: list[str] = []
        for example, result in zip(checked.examples, report.outcomes, strict=False):
            call = example.call or f"{checked.name}(**{json.dumps(example.arguments)})"
            if result.error is not None:
                problems.append(f"{call} raised {result.error}")
            elif not same_value(result.result, example.expected):
                problems.append(
                    f"{call} returned {json.dumps(result.result)}, but the example expects "
                    f"{json.dumps(example.expected)}"
                )
        return problems

    async def _deploy(
        self,
        request: ToolRequest,
        checked: CheckedTool,
        draft: Mapping[str, Any],
        outcome: ToolOutcome,
    ) -> None:
        version = await asyncio.to_thread(self.tools.next_version, checked.name)
        description = checked.description.split("\n\n")[0].strip() or str(
            draft.get("description") or checked.name
        )
        record = ToolRecord(
            name=checked.name,
            version=version,
            description=" ".join(description.split()),
            code=checked.code,
            tests=[example.as_dict() for example in checked.examples],
            requested_by=request.requested_by,
            request=request.description,
            created_at=time.time(),
            allow_network=self.policy(request).allow_network,
            attempts=len(outcome.attempts),
        )
        await asyncio.to_thread(self.tools.deploy, record)
        outcome.ok = True
        outcome.record = record
        try:
            outcome.available = await self.catalog.publish(record.name, record.version)
        except OctopussyError as exc:
            self.log.warning("tool %s deployed but not published: %s", record.name, exc)
        outcome.published_at = time.perf_counter()
        self.log.info(
            "tool %s v%d deployed after %d attempt(s)%s",
            record.name,
            record.version,
            len(outcome.attempts),
            "" if outcome.available else " (not listed by the registry)",
        )

    async def _log_attempt(self, request: ToolRequest, attempt: Attempt) -> None:
        if attempt.problems:
            self.log.info(
                "tool request %s attempt %d failed at %s: %s",
                request.request_id,
                attempt.number,
                attempt.stage,
                "; ".join(attempt.problems),
            )
        await self._record(
            "tool_attempt",
            {
                "attempt": attempt.number,
                "stage": attempt.stage,
                "name": attempt.name,
                "problems": attempt.problems,
                "seconds": attempt.seconds,
            },
            task_id=request.request_id,
        )

    async def _report(self, outcome: ToolOutcome) -> None:
        self.outcomes.append(outcome)
        request = outcome.request
        record = outcome.record
        payload: dict[str, Any] = {
            "label": LABEL,
            "text": outcome.text,
            "ok": outcome.ok,
            "request_id": request.request_id,
            "tool": record.name if record else None,
            "version": record.version if record else None,
            "available": outcome.available,
        }
        if record is not None:
            payload["description"] = record.description
            payload["parameters"] = _parameters(record)
        kind = "tool_created" if outcome.ok else "tool_failed"
        await self._record(kind, payload, task_id=request.request_id)
        recipients = [self.report_to]
        if request.reply_to and request.reply_to != self.report_to:
            recipients.append(request.reply_to)
        for recipient in recipients:
            try:
                await self.send(
                    recipient, MessageType.AGENT_NOTIFICATION, payload, task_id=request.request_id
                )
            except (OctopussyError, TimeoutError) as exc:
                self.log.warning("could not tell %s about tool request: %s", recipient, exc)


def _parameters(record: ToolRecord) -> dict[str, Any]:
    try:
        return check_tool(record.code, policy=ImportPolicy(allowed=("*",))).input_schema
    except ToolCheckError:
        return {}


def _draft(data: Any, text: str) -> dict[str, Any]:
    """The model's JSON as a tool draft; ``ModelBehaviorError`` if it is not one."""
    if data is None:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelBehaviorError("the reply is not JSON", raw=text) from exc
    if not isinstance(data, dict):
        raise ModelBehaviorError("the reply is not a JSON object", raw=text)
    code = data.get("code")
    if not isinstance(code, str) or not code.strip():
        raise ModelBehaviorError("the reply has no code", raw=text)
    examples = data.get("examples")
    if not isinstance(examples, list):
        examples = []
    return {
        "name": str(data.get("name") or ""),
        "description": str(data.get("description") or ""),
        "code": code,
        "examples": [e for e in examples if isinstance(e, dict | str)],
    }


def _feedback(attempt: Attempt, number: int, settings: ToolAgentSettings) -> str:
    problems = "\n".join(f"- {p}" for p in attempt.problems)
    where = {
        "model": "The reply could not be used",
        "check": "The tool was rejected before running",
        "sandbox": "The tool was run with its examples in the sandbox and failed",
    }.get(attempt.stage, "The tool failed")
    left = settings.max_attempts - number
    hint = ""
    if attempt.stage == "sandbox":
        hint = (
            " If an example's expected value is wrong, fix the example; if the code is "
            "wrong, fix the code."
        )
    return (
        f"{where}:\n{problems}\nFix it and reply with the complete corrected JSON (name, "
        f"description, code, examples).{hint} ({left} attempt(s) left.)"
    )


def _empty_dir(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for entry in directory.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                entry.unlink()


# --------------------------------------------------------------------------- workers asking

REQUEST_TOOL = ToolSpec(
    name="request_tool",
    description=(
        "Only when none of the other tools can do a step of the task: ask the tool agent to "
        "write a new tool (a Python function) for it. Say what it takes and what it returns. "
        "This waits until the tool exists; then call the new tool by its name."
    ),
    parameters={
        "type": "object",
        "properties": {
            "description": {
                "type": "string",
                "description": "What the tool must do: its inputs and its output.",
            }
        },
        "required": ["description"],
    },
)


@dataclass(frozen=True, slots=True)
class _Answer:
    text: str
    is_error: bool


class ToolRequester:
    """A worker's tool source plus ``request_tool`` (see the module doc).

    ``always=False``: ``request_tool`` is offered for ``offer_steps`` model steps after a
    call of a tool that does not exist, whose error then says how to ask for one.
    """

    def __init__(
        self,
        tools: ToolSource,
        *,
        bus: MessageBus,
        requester: str,
        tool_agent: str = TOOL_AGENT,
        timeout: float = 600.0,
        always: bool = False,
        offer_steps: int = 3,
    ) -> None:
        self.tools = tools
        self.bus = bus
        self.requester = requester
        self.tool_agent = tool_agent
        self.timeout = timeout
        self.always = always
        self.offer_steps = offer_steps
        self._offers_left = 0

    def tool_specs(self) -> list[ToolSpec]:
        specs = self.tools.tool_specs()
        if self.always:
            return [*specs, REQUEST_TOOL]
        if self._offers_left > 0:
            self._offers_left -= 1  # one model step sees this list
            return [*specs, REQUEST_TOOL]
        return specs

    async def call(self, name: str, arguments: Mapping[str, Any]) -> ToolResultLike:
        if name != REQUEST_TOOL.name:
            known = {spec.name for spec in self.tools.tool_specs()}
            if name in known:
                return await self.tools.call(name, arguments)
            try:
                return await self.tools.call(name, arguments)
            except ToolError as exc:
                # The worker reached for a tool that does not exist: now it may ask for one.
                self._offers_left = self.offer_steps
                raise ToolError(
                    f"{exc.message}. If no available tool can do this step, call request_tool "
                    "with a description of the tool you need",
                    hint=exc.hint,
                ) from exc
        description = str(arguments.get("description") or "").strip()
        if not description:
            return _Answer("request_tool needs a description of the tool", True)
        return await self.request(description)

    async def request(self, description: str) -> _Answer:
        request_id = uuid.uuid4().hex[:8]
        inbox_name = f"{self.requester}.tool_request.{request_id}"
        inbox = await self.bus.register(inbox_name, maxsize=4)
        try:
            await self.bus.send(
                Message(
                    type=MessageType.CREATE_TOOL,
                    sender=self.requester,
                    recipient=self.tool_agent,
                    payload={
                        "description": description,
                        "requested_by": self.requester,
                        "reply_to": inbox_name,
                        "requested_at": time.time(),
                    },
                    task_id=request_id,
                )
            )
            async with asyncio.timeout(self.timeout):
                while True:
                    reply = await inbox.get()
                    await inbox.ack(reply)
                    if reply.task_id == request_id:
                        break
        except TimeoutError:
            return _Answer(
                f"the tool agent did not answer within {self.timeout:g} s; do the step "
                "another way (for example with execute_python)",
                True,
            )
        except OctopussyError as exc:
            return _Answer(f"no tool agent is running ({exc}); do the step another way", True)
        finally:
            await self.bus.unregister(inbox_name)
        p = reply.payload
        if not p.get("ok"):
            return _Answer(f"{p.get('text')}. Do the step another way.", True)
        parameters = json.dumps(p.get("parameters") or {}, ensure_ascii=False)
        return _Answer(
            f"The tool {p.get('tool')} exists now: {p.get('description')}. Its arguments: "
            f"{parameters}. Call {p.get('tool')} next.",
            False,
        )
