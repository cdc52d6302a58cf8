"""The coordinator: the agent the user talks to.

    user ── chat(text) ──► Coordinator ──► model (system prompt + conversation + routing tools)
                              ├─ final answer ──────────────► streamed to the user
                              ├─ create_task(description) ──► desk.create_task
                              │                                 "Task assigned (ID: …)"; a
                              │          message that only asks makes a question task (no
                              │          file-changing tools: orchestration/questions.py)
                              ├─ schedule_task(…, schedule) ► desk.schedule_task
                              │                                 "Scheduled (ID: …)"
                              ├─ create_tool(description) ──► bus ──► tool agent (if running)
                              └─ unusable decision ─────────► same prompt without tools
    agents ── bus ──► Coordinator.handle ──► store (event) ──► Presenter.show (REPL / serve)

One model call decides and answers: the routing actions are offered as tools (native tool
calls where the provider has them, schema-constrained JSON on the embedded model, whose
answer still streams). A malformed decision — garbage JSON, an unknown action, a missing
argument — never reaches the user as an error: the coordinator answers in plain text
instead. Task results that come back are added to the conversation, so the user can ask
about them.

The conversation is a ``ShortTermMemory`` without a task: beyond ``history_tokens`` (or
``history_turns``) older turns are replaced by a model-written summary; the system prompt
always stays. A failed or cancelled model call leaves the conversation as it was, so the
user can simply send the same text again.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from octopussy.agents.base import Agent
from octopussy.bus.base import MessageBus
from octopussy.bus.messages import Message, MessageType
from octopussy.errors import ConfigError, ModelBehaviorError, OctopussyError
from octopussy.llm.base import (
    ChatMessage,
    Model,
    ModelResponse,
    ModelSettings,
    ToolCall,
    ToolSpec,
)
from octopussy.memory.shortterm import ShortTermMemory
from octopussy.orchestration.questions import is_question
from octopussy.store.base import Store, TaskRecord

COORDINATOR = "coordinator"
TOOL_AGENT = "tool_agent"

#: Message types the coordinator shows to the user.
SHOWN_TYPES = frozenset(
    {
        MessageType.AGENT_NOTIFICATION,
        MessageType.MAIL_NOTIFICATION,
        MessageType.CALENDAR_NOTIFICATION,
        MessageType.TASK_RESULT,
        MessageType.TASK_ERROR,
        MessageType.TASK_PROGRESS,
    }
)

#: How much of a task result enters the conversation (characters).
_RESULT_NOTE_CHARS = 1500
_FILE_NAME = re.compile(r"[\w./-]+\.[A-Za-z0-9]{1,6}\b")
#: Quoted text ("a", 'colour', `x`): exact values a description must keep as they are.
#: A quote inside a word (don't, it's) is an apostrophe, not a quote.
_QUOTED = re.compile(r"(?<!\w)([\"'`])[^\"'`\n]{1,80}?\1(?!\w)")


def _invented(description: str, *said: str) -> list[str]:
    """The file names and quoted values in ``description`` that none of ``said`` has.

    A file name counts as said in any case; a quoted value only exactly: measured on the
    embedded model, "the columns 'Month' and 'Revenue'" for a CSV whose header is
    ``month,revenue`` (the user wrote "month" and "revenue") sent the worker to a KeyError.
    """
    files = [name for name in _FILE_NAME.findall(description) if not _mentioned(name, *said)]
    quoted = [m.group(0)[1:-1].strip() for m in _QUOTED.finditer(description)]
    return [
        *files,
        *(value for value in quoted if not _mentioned(value, *said, exact_case=True)),
    ]


def _mentioned(value: str, *texts: str, exact_case: bool = False) -> bool:
    """Whether ``value`` appears as a whole word (any case, unless ``exact_case``) in one of
    ``texts``."""
    if not value:
        return True
    flags = 0 if exact_case else re.IGNORECASE
    found = re.compile(rf"(?<!\w){re.escape(value)}(?!\w)", flags)
    return any(found.search(text) for text in texts)


#: A message that mentions a file or code is most likely work for a worker: the decision
#: is then asked with tools preferred (``ModelSettings.prefer_tools``). The model still
#: decides; this only undoes a small model's habit of answering file questions itself.
_WORK_HINT = re.compile(
    r"[\w/-]*\.[A-Za-z][A-Za-z0-9]{0,5}\b"
    r"|\b(?:files?|folders?|director(?:y|ies)|workspace|python|script|csv|json)\b"
    # "I need a tool that ...", "build a new tool": a request for the tool agent (measured:
    # without the hint the embedded model sometimes explains the conversion instead).
    r"|\b(?:a|an|new)\s+(?:\w+\s+)?tools?\b",
    re.IGNORECASE,
)

_DESCRIPTION = {
    "type": "string",
    "description": "The complete task in one or two sentences, with every file name, "
    "value and detail the user gave, so a worker can do it without seeing this chat.",
}

CREATE_TASK = ToolSpec(
    name="create_task",
    description=(
        "Hand work to a worker agent that can read, write and edit files in the user's "
        "workspace and run Python code. Use it whenever the user asks you to do something "
        "with files, data, code or a computation, or anything that takes several steps."
    ),
    parameters={
        "type": "object",
        "properties": {"description": _DESCRIPTION},
        "required": ["description"],
    },
)
SCHEDULE_TASK = ToolSpec(
    name="schedule_task",
    description=(
        "Run a task again and again on a schedule, when the user says 'every ...' or gives a "
        "recurring time. Not for one-off work."
    ),
    parameters={
        "type": "object",
        "properties": {
            "description": _DESCRIPTION,
            "schedule": {
                "type": "string",
                "description": "When to run: 'every 30 minutes', 'every 2 hours', 'every day' "
                "or a cron expression such as '0 9 * * mon-fri'.",
            },
        },
        "required": ["description", "schedule"],
    },
)
CREATE_TOOL = ToolSpec(
    name="create_tool",
    description=(
        "Ask the tool agent to write a new tool, only when the user explicitly asks for a "
        "new tool or capability the workers lack."
    ),
    parameters={
        "type": "object",
        "properties": {
            "description": {
                "type": "string",
                "description": "What the new tool must do: its inputs and its output.",
            },
            "allow_network": {
                "type": "boolean",
                "description": "True only when the user explicitly allows this tool to use "
                "the network or the internet.",
            },
            "update": {
                "type": "string",
                "description": "Only to replace an existing tool with a new version: its name.",
            },
        },
        "required": ["description"],
    },
)
#: The user's own words must mention the network before a tool request may allow it: a
#: model's ``allow_network: true`` alone is not the user's permission.
_NETWORK_WORDS = re.compile(
    r"\b(?:network|internet|online|web|http\w*|url|download\w*|api|fetch\w*)\b", re.IGNORECASE
)


#: Added to the system prompt when the coordinator can hand work to workers. Measured on
#: the embedded model: without it, questions about files get confidently made-up answers.
ROUTING_GUIDE = (
    "You cannot see the user's files and cannot run code yourself; workers can. Use "
    "create_task for anything about files or folders in the workspace (reading, counting, "
    "searching, listing, creating, editing), data in files, running code, and calculations "
    "beyond simple arithmetic. Never guess what a file contains. Answer directly only "
    "greetings, general knowledge and questions about this conversation or earlier task "
    "results.\n"
    "Examples: 'How many lines has notes.txt?' -> create_task. 'What port is in "
    "config.json?' -> create_task. 'Sum the numbers in data.csv' -> create_task. "
    "'What is the capital of Italy?' -> answer directly. 'Check the logs every hour' -> "
    "schedule_task."
)


class Presenter(Protocol):
    """Where the coordinator shows messages: the REPL, `serve`'s stdout, a test list."""

    async def show(self, message: Message) -> None: ...


class Scheduled(Protocol):
    """What ``TaskDesk.schedule_task`` returns (a stored schedule)."""

    @property
    def id(self) -> str: ...

    @property
    def next_run(self) -> float: ...


class TaskDesk(Protocol):
    """Where the coordinator hands work; the runtime is one."""

    async def create_task(self, description: str, *, question: bool = False) -> TaskRecord:
        """``question``: the user only asked; the task must not change files."""
        ...

    async def schedule_task(self, description: str, spec: str) -> Scheduled: ...


@dataclass(slots=True)
class Turn:
    """What one user message led to: the reply shown and the work it started."""

    text: str
    task_ids: list[str] = field(default_factory=list)
    schedule_ids: list[str] = field(default_factory=list)
    tool_requests: list[str] = field(default_factory=list)


class _Undecided(Exception):
    """The routing decision cannot be acted on; answer in plain text instead."""


class Coordinator(Agent):
    kind = "coordinator"

    def __init__(
        self,
        *,
        bus: MessageBus,
        model: Model,
        system_prompt: str,
        store: Store | None = None,
        presenter: Presenter | None = None,
        desk: TaskDesk | None = None,
        history_turns: int = 40,
        history_tokens: int = 2500,
        tool_agent: str = TOOL_AGENT,
        name: str = COORDINATOR,
    ) -> None:
        super().__init__(name, bus=bus, store=store)
        self.model = model
        self.system_prompt = system_prompt
        self.presenter = presenter
        self.desk = desk
        self.history_turns = history_turns
        self.history_tokens = history_tokens
        self.tool_agent = tool_agent
        self.memory = self._new_memory()
        #: What the last completed ``chat``/``chat_stream`` did.
        self.last_turn: Turn | None = None

    def _new_memory(self) -> ShortTermMemory:
        identity = self.system_prompt
        if self.desk is not None:
            identity = f"{identity}\n\n{ROUTING_GUIDE}"
        return ShortTermMemory(
            identity=identity,
            task=None,
            budget_tokens=self.history_tokens,
            summarizer=self.model,
            keep_recent=4,
            max_messages=max(5, 2 * self.history_turns),
        )

    @property
    def history(self) -> list[ChatMessage]:
        """The conversation after the system prompt (summary first, when there is one)."""
        return self.memory.messages()[1:]

    # -- messages from other agents ------------------------------------------------------
    async def handle(self, message: Message) -> None:
        if message.type not in SHOWN_TYPES:
            self.log.warning("ignoring %s from %s", message.type.value, message.sender)
            return
        await self._record(message.type.value, message.to_dict(), task_id=message.task_id)
        self._remember_outcome(message)
        if self.presenter is not None:
            await self.presenter.show(message)

    def _remember_outcome(self, message: Message) -> None:
        """Put a task's result or error into the conversation for follow-up questions."""
        if message.type is MessageType.TASK_RESULT:
            outcome = str(message.payload.get("result", ""))
            label = "result"
        elif message.type is MessageType.TASK_ERROR:
            outcome = str(message.payload.get("error", ""))
            label = "failed"
        else:
            return
        if len(outcome) > _RESULT_NOTE_CHARS:
            outcome = outcome[:_RESULT_NOTE_CHARS] + " […]"
        self.memory.append(ChatMessage.assistant(f"[task {message.task_id} {label}] {outcome}"))

    # -- the conversation ----------------------------------------------------------------
    async def _prompt(self, text: str) -> list[ChatMessage]:
        await self.memory.compact_if_needed()
        return [*self.memory.messages(), ChatMessage.user(text)]

    def _commit(self, text: str, answer: str) -> None:
        self.memory.append(ChatMessage.user(text))
        self.memory.append(ChatMessage.assistant(answer))

    @staticmethod
    def _checked(response: ModelResponse) -> str:
        answer = response.text.strip()
        if not answer:
            raise ModelBehaviorError(
                "the model returned an empty answer",
                raw=response.text,
                hint="send it again or rephrase; `octopussy doctor` checks the model",
            )
        return answer

    async def _routing_tools(self) -> list[ToolSpec]:
        if self.desk is None:
            return []
        tools = [CREATE_TASK, SCHEDULE_TASK]
        try:
            if await self.bus.is_registered(self.tool_agent):
                tools.append(CREATE_TOOL)
        except Exception:  # the bus being down must not stop the chat
            self.log.debug("could not ask the bus for %s", self.tool_agent, exc_info=True)
        return tools

    async def chat(self, text: str) -> str:
        """Answer one user message (the whole reply at once)."""
        return "".join([part async for part in self.chat_stream(text)])

    async def chat_stream(self, text: str) -> AsyncIterator[str]:
        """Answer one user message, yielding the reply as it is generated.

        The turn enters the conversation only when it completes; an error or a
        cancellation (Ctrl-C) leaves the conversation untouched. ``last_turn`` then says
        which tasks the message created.
        """
        self.log.debug("user said: %s", text)
        self.last_turn = None
        prompt = await self._prompt(text)
        tools = await self._routing_tools()
        settings = ModelSettings(prefer_tools=True) if _WORK_HINT.search(text) else None
        final: ModelResponse | None = None
        shown = False
        try:
            async for event in self.model.stream(prompt, tools=tools, settings=settings):
                if event.kind != "delta":
                    final = event.response
                elif shown:
                    yield event.text
                elif event.text.strip():  # leading blanks are held: it may still fall back
                    shown = True
                    yield event.text.lstrip()
            if final is None:
                raise ModelBehaviorError("the model stream ended without an answer")
            if final.tool_calls:
                turn = await self._act(text, final.tool_calls)
                yield turn.text
            else:
                turn = Turn(self._checked(final))
        except (_Undecided, ModelBehaviorError) as exc:
            if shown or not tools:
                raise
            if settings is not None and self.desk is not None:
                # It names a file, the workspace or Python: work, not a chat question.
                # Measured on the embedded model: its routing JSON for "Add milk as a new
                # last line of shopping.txt" ran to max_tokens, and the plain answer that
                # followed was the text "create_task." — so the request becomes a task in
                # the user's own words instead.
                self.log.info("routing decision unusable (%s); the request becomes a task", exc)
                task = await self.desk.create_task(text, question=is_question(text))
                turn = Turn(f"Task assigned (ID: {task.id}).", task_ids=[task.id])
                yield turn.text
                self._commit(text, turn.text)
                self.last_turn = turn
                return
            self.log.info("routing decision unusable (%s); answering directly", exc)
            answer: list[str] = []
            async for piece in self._plain(prompt):
                answer.append(piece)
                yield piece
            turn = Turn("".join(answer).strip())
        self._commit(text, turn.text)
        self.last_turn = turn

    async def _plain(self, prompt: list[ChatMessage]) -> AsyncIterator[str]:
        """The answer without routing tools (the fallback for an unusable decision)."""
        final: ModelResponse | None = None
        async for event in self.model.stream(prompt):
            if event.kind == "delta":
                yield event.text
            else:
                final = event.response
        if final is None:
            raise ModelBehaviorError("the model stream ended without an answer")
        self._checked(final)

    # -- acting on a decision ------------------------------------------------------------
    async def _act(self, text: str, calls: Sequence[ToolCall]) -> Turn:
        """Carry out the routing calls; ``_Undecided`` if none of them can be."""
        if self.desk is None:
            raise _Undecided("no task desk")
        turn = Turn("")
        lines: list[str] = []
        # With one action the user's whole message is about it, so its file names must be
        # in the description; with several, each description covers only a part.
        # The model's description is kept even for a first request: tried with the user's
        # own words instead, the embedded model's optimizer turned 7 of 18 questions into
        # "Tell the user to open config.json ..." (refused), while the coordinator's
        # imperative descriptions ("Find the port in config.json") optimize well.
        alone = len(calls) == 1
        question = is_question(text)
        for call in calls:
            if call.name == CREATE_TASK.name:
                description = self._description(text, call.arguments, alone)
                task = await self.desk.create_task(description, question=question)
                turn.task_ids.append(task.id)
                lines.append(f"Task assigned (ID: {task.id}).")
            elif call.name == SCHEDULE_TASK.name:
                lines.append(await self._schedule(text, call.arguments, turn, alone))
            elif call.name == CREATE_TOOL.name:
                lines.append(await self._request_tool(text, call.arguments, turn))
            else:
                self.log.info("the model asked for unknown action %r", call.name)
        if not lines:
            raise _Undecided(f"no usable action in {[call.name for call in calls]}")
        turn.text = "\n".join(lines)
        return turn

    def _said(self) -> str:
        """Everything in the conversation so far (what a description may draw on)."""
        return "\n".join(message.content for message in self.history)

    def _description(self, text: str, arguments: dict[str, Any], alone: bool) -> str:
        """The model's task description, or the user's own words when the model's is empty,
        loses a file name or quoted text the user gave (small models do both, and turn "a"
        into 'a'), or names a file, folder or quoted value that neither the message nor the
        conversation has (measured on the embedded model: "in the 'data' directory", the
        columns 'product' and 'amount' of a CSV it had not read; the worker then looked for
        what was never there)."""
        description = str(arguments.get("description") or "").strip()
        if not description:
            return text
        if alone:
            exact = [*_FILE_NAME.findall(text), *(m.group(0) for m in _QUOTED.finditer(text))]
            if any(value not in description for value in exact):
                return text
            said = self._said()
            invented = _invented(description, text, said)
            if invented:
                self.log.info(
                    "the task description names %s, which the user did not: the user's own "
                    "words are the task",
                    ", ".join(repr(value) for value in invented),
                )
                return text
        return description

    async def _schedule(self, text: str, arguments: dict[str, Any], turn: Turn, alone: bool) -> str:
        assert self.desk is not None
        spec = str(arguments.get("schedule") or "").strip()
        if not spec:
            raise _Undecided("schedule_task without a schedule")
        try:
            description = self._description(text, arguments, alone)
            scheduled = await self.desk.schedule_task(description, spec)
        except ConfigError as exc:
            return f"I could not schedule that: {exc}"
        turn.schedule_ids.append(scheduled.id)
        when = datetime.fromtimestamp(scheduled.next_run).strftime("%Y-%m-%d %H:%M")
        return f"Scheduled (ID: {scheduled.id}), {spec}; first run at {when}."

    async def _request_tool(self, text: str, arguments: dict[str, Any], turn: Turn) -> str:
        description = str(arguments.get("description") or "").strip() or text
        request_id = uuid.uuid4().hex[:8]
        payload: dict[str, Any] = {"description": description, "requested_at": time.time()}
        if arguments.get("allow_network") is True and _NETWORK_WORDS.search(text):
            payload["allow_network"] = True
        update = str(arguments.get("update") or "").strip()
        if update:
            payload["update"] = update
        try:
            await self.send(
                self.tool_agent,
                MessageType.CREATE_TOOL,
                payload,
                task_id=request_id,
            )
        except (OctopussyError, TimeoutError) as exc:
            self.log.warning("tool request not delivered: %s", exc)
            return f"I cannot build new tools right now: the tool agent is not running ({exc})."
        turn.tool_requests.append(request_id)
        return f"Tool requested (ID: {request_id}); the tool agent will report back."

    def reset(self) -> None:
        """Forget the conversation (REPL ``/reset``)."""
        self.memory = self._new_memory()
