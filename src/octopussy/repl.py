"""The chat REPL: the user talks to the coordinator; other agents' messages appear above.

    prompt_toolkit prompt ("You: ") ◄── patch_stdout: prints from any task go above it
        │ text
        ▼
    Coordinator.chat_stream ──► "Coordinator: ..." streamed; notifications wait until done

Leaving: ``quit``, ``exit``, ``/quit``, Ctrl-D, or Ctrl-C at the prompt: exit code 0, every
task cancelled, the models closed. Ctrl-C while an answer is being generated stops that
answer only; the text the user sent is put back into the prompt, as after any error, so
nothing typed is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import termios
from collections.abc import Awaitable, Callable, Iterator
from typing import ClassVar, TextIO

from prompt_toolkit import PromptSession
from prompt_toolkit.history import FileHistory, InMemoryHistory
from prompt_toolkit.patch_stdout import patch_stdout

from octopussy.bus.messages import Message
from octopussy.config import LoadedConfig
from octopussy.display import assembly_progress, format_message, format_task, format_task_list
from octopussy.errors import OctopussyError
from octopussy.runtime import Runtime

log = logging.getLogger("octopussy.repl")

BANNER = "Octopussy Light is ready. Type 'quit' or 'exit' to stop, /help for commands."
QUIT_WORDS = frozenset({"quit", "exit", "/quit", "/exit"})


def _terminal() -> TextIO:
    """The real stdout, bypassing prompt_toolkit's proxy.

    The REPL's own output (answers, errors, command output) is written while no prompt is
    active, so it can go straight to the terminal, in order. The proxy flushes from a
    thread: text sent through it just before the next prompt could land after the prompt
    was drawn. Only output from other tasks while a prompt is active needs the proxy.
    """
    return sys.__stdout__ or sys.stdout


def _print(text: str = "") -> None:
    out = _terminal()
    out.write(text + "\n")
    out.flush()


def _print_above_prompt(text: str) -> None:
    print(text, flush=True)  # sys.stdout is prompt_toolkit's proxy inside the chat


class ReplPresenter:
    """Prints messages above the prompt; holds them back while an answer streams."""

    def __init__(self, write: Callable[[str], None] = _print_above_prompt) -> None:
        self._write = write
        self._held = 0
        self._pending: list[Message] = []

    async def show(self, message: Message) -> None:
        if self._held:
            self._pending.append(message)
        else:
            self._write("\n" + format_message(message) + "\n")

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1
            if not self._held:
                pending, self._pending = self._pending, []
                for message in pending:
                    self._write("\n" + format_message(message) + "\n")


Command = Callable[["ChatSession", str], Awaitable[None]]


class ChatSession:
    """One REPL session over a started runtime."""

    commands: ClassVar[dict[str, tuple[str, Command]]] = {}

    def __init__(self, runtime: Runtime, presenter: ReplPresenter) -> None:
        self.runtime = runtime
        self.presenter = presenter
        self._answering: asyncio.Task[None] | None = None

    # -- Ctrl-C ------------------------------------------------------------------------
    def interrupt(self) -> bool:
        """Stop the answer being generated; False if there is none."""
        if self._answering is not None and not self._answering.done():
            self._answering.cancel()
            return True
        return False

    # -- one user message --------------------------------------------------------------
    async def answer(self, text: str) -> bool:
        """Stream the coordinator's answer; False if it failed or was interrupted."""
        self._answering = asyncio.create_task(self._stream(text), name="repl:answer")
        try:
            with sigint_calls(self.interrupt), no_echo():
                await self._answering
            return True
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # the REPL itself is being shut down
            _print("(interrupted; your message is back in the prompt)")
        except OctopussyError as exc:
            _print(f"error: {exc}")
        except Exception as exc:
            log.exception("answer failed")
            _print(
                f"internal error: {type(exc).__name__}: {exc} "
                f"(details in {self.runtime.paths.log_file})"
            )
        finally:
            self._answering = None
        return False

    async def _stream(self, text: str) -> None:
        with self.presenter.hold():
            # The label goes out at once: a local model may think for seconds before the
            # first token, and the user should see that the message was taken.
            out = _terminal()
            out.write("\nCoordinator: ")
            out.flush()
            try:
                async for delta in self.runtime.coordinator.chat_stream(text):
                    out.write(delta)
                    out.flush()
            finally:
                out.write("\n\n")
                out.flush()

    async def run_command(self, line: str) -> None:
        name, _, rest = line.partition(" ")
        entry = self.commands.get(name.lower())
        if entry is None:
            _print(f"unknown command {name}; /help lists the commands")
            return
        await entry[1](self, rest.strip())


@contextlib.contextmanager
def sigint_calls(callback: Callable[[], object]) -> Iterator[None]:
    """Route SIGINT (Ctrl-C while no prompt is reading keys) to ``callback``.

    Installed around each busy period rather than once: prompt_toolkit installs and then
    removes its own SIGINT handler on every prompt, which would drop a long-lived one.
    """
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGINT, callback)
    except (NotImplementedError, RuntimeError):  # not the main thread, or no signals here
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGINT)


@contextlib.contextmanager
def no_echo() -> Iterator[None]:
    """Keep keys typed during an answer out of the answer's text.

    While no prompt reads keys, the terminal echoes them in the middle of the streamed
    answer. With echo off they still wait in the terminal's buffer and appear in the next
    prompt (type-ahead is kept); Ctrl-C still raises SIGINT.
    """
    try:
        fd = sys.stdin.fileno()
        if not os.isatty(fd):
            raise OSError
        saved = termios.tcgetattr(fd)
    except (OSError, ValueError, termios.error):
        yield
        return
    quiet = list(saved)
    quiet[3] &= ~termios.ECHO
    try:
        termios.tcsetattr(fd, termios.TCSANOW, quiet)
        yield
    finally:
        with contextlib.suppress(termios.error, OSError):
            termios.tcsetattr(fd, termios.TCSANOW, saved)


def command(name: str, help_text: str) -> Callable[[Command], Command]:
    """Register a REPL slash command (later issues add /tasks, /mail, /agenda ...)."""

    def register(function: Command) -> Command:
        ChatSession.commands[name] = (help_text, function)
        return function

    return register


@command("/help", "list the commands")
async def _help(session: ChatSession, _: str) -> None:
    rows = [f"  {name:<12} {text}" for name, (text, _fn) in sorted(ChatSession.commands.items())]
    _print("\n".join([*rows, f"  {'quit':<12} leave (also exit, Ctrl-D, Ctrl-C)"]))


@command("/usage", "tokens and time spent per agent")
async def _usage(session: ChatSession, _: str) -> None:
    snapshot = session.runtime.meter.snapshot()
    if not snapshot:
        _print("no model calls yet")
        return
    for agent, usage in sorted(snapshot.items()):
        _print(
            f"  {agent:<14} {usage.requests} call(s), {usage.input_tokens} in / "
            f"{usage.output_tokens} out tokens, {usage.seconds:.1f}s"
        )


@command("/reset", "forget the conversation")
async def _reset(session: ChatSession, _: str) -> None:
    session.runtime.coordinator.reset()
    _print("conversation cleared")


@command("/agents", "the running agents")
async def _agents(session: ChatSession, _: str) -> None:
    for name, agent in session.runtime.agents.items():
        restarts = f", restarted {agent.restarts}x" if agent.restarts else ""
        _print(f"  {name} ({agent.kind}{restarts})")


@command("/mcp", "MCP servers, their state and tools")
async def _mcp_status(session: ChatSession, _: str) -> None:
    from octopussy.mcp.report import format_status

    _print(format_status(session.runtime.mcp))


@command("/do", "give a task to a worker: /do TEXT")
async def _do(session: ChatSession, rest: str) -> None:
    if not rest:
        _print("usage: /do TEXT, e.g. /do create notes.txt listing the files here")
        return
    try:
        task = await session.runtime.create_task(rest)
    except OctopussyError as exc:
        _print(f"error: {exc}")
        return
    _print(f"Task assigned (ID: {task.id}). A worker is now executing it; results appear here.")


@command("/tasks", "recent tasks and their state")
async def _tasks(session: ChatSession, _: str) -> None:
    tasks = await session.runtime.store.list_tasks(limit=20)
    if not tasks:
        _print("no tasks yet; ask for some work, or /do TEXT gives it to a worker directly")
    for line in format_task_list(tasks):
        _print(f"  {line}")


@command("/task", "one task: status, prompt, responses, tool calls")
async def _task(session: ChatSession, rest: str) -> None:
    store = session.runtime.store
    task = await store.get_task(rest.strip()) if rest.strip() else None
    if task is None:
        _print("usage: /task ID (see /tasks)")
        return
    for line in format_task(task, await store.results(task.id)):
        _print(line)


@command("/cancel", "stop a running or queued task: /cancel ID")
async def _cancel(session: ChatSession, rest: str) -> None:
    task_id = rest.strip()
    if not task_id:
        _print("usage: /cancel ID")
        return
    if await session.runtime.pool.cancel(task_id):
        _print(f"task {task_id} cancelled")
    else:
        _print(f"task {task_id} is not running or queued (see /tasks)")


@command("/schedules", "recurring tasks: id, schedule, next run, runs")
async def _schedules(session: ChatSession, _: str) -> None:
    from octopussy.orchestration.scheduler import format_schedule

    schedules = await session.runtime.schedules()
    if not schedules:
        _print("no schedules; ask e.g. 'every 30 minutes check the build'")
    for schedule in schedules:
        _print(f"  {format_schedule(schedule)}")


@command("/unschedule", "stop a recurring task: /unschedule ID")
async def _unschedule(session: ChatSession, rest: str) -> None:
    schedule_id = rest.strip()
    if not schedule_id:
        _print("usage: /unschedule ID (see /schedules)")
        return
    if await session.runtime.unschedule(schedule_id):
        _print(f"schedule {schedule_id} stopped; it will not run again")
    else:
        _print(f"no active schedule {schedule_id} (see /schedules)")


@command("/workers", "busy and idle workers, queued tasks")
async def _workers(session: ChatSession, _: str) -> None:
    status = session.runtime.pool.status()
    busy = ", ".join(f"{w} on {t}" for t, w in status["busy"].items()) or "none"
    _print(f"  busy: {busy}")
    _print(f"  idle: {', '.join(status['idle']) or 'none'}")
    _print(f"  queued: {', '.join(status['queued']) or 'none'}")


@command("/events", "recent notifications and results (stored)")
async def _events(session: ChatSession, rest: str) -> None:
    limit = int(rest) if rest.isdigit() else 10
    events = await session.runtime.store.events(limit=100_000)
    shown = [event for event in events if "message" in event.kind or "task" in event.kind]
    for event in shown[-limit:]:
        with contextlib.suppress(ValueError):
            _print(format_message(Message.from_dict(event.payload)))
    if not shown:
        _print("nothing yet")


@command("/mail", "recent mail that matched the filters: /mail [N]")
async def _mail(session: ChatSession, rest: str) -> None:
    from octopussy.agents.mail import MAIL_EVENT, format_mail_list

    limit = int(rest) if rest.strip().isdigit() else 10
    events = await session.runtime.store.events(kind=MAIL_EVENT, limit=100_000)
    lines = format_mail_list(events[-limit:])
    if not lines:
        configured = session.runtime.config.mail_agent is not None
        _print("no mail yet" if configured else "no mail yet; configure mail_agent: (README)")
    for line in lines:
        _print(line)


@command("/agenda", "upcoming calendar events: /agenda [DAYS]")
async def _agenda(session: ChatSession, rest: str) -> None:
    calendar = session.runtime.calendar
    if calendar is None:
        _print("no calendar configured (add calendar_agent: to the config; see the README)")
        return
    days = rest.strip()
    if days and (not days.isdigit() or not 1 <= int(days) <= 366):
        _print("usage: /agenda [DAYS], e.g. /agenda 14 (1 to 366)")
        return
    for line in await calendar.agenda(int(days) if days else None):
        _print(f"  {line}")


@command("/tools", "tools with origin and version; /tools show|disable|enable|rollback|remove NAME")
async def _tools(session: ChatSession, rest: str) -> None:
    from octopussy import toolcli

    store = session.runtime.generated_tools
    action, _, name = rest.strip().partition(" ")
    name = name.strip()
    if not action or action == "list":
        rows = toolcli.tool_rows(
            session.runtime.loaded, remote=session.runtime.mcp.tools(), store=store
        )
        _print(toolcli.format_rows(rows))
        return
    if action not in ("show", "disable", "enable", "rollback", "remove") or not name:
        _print("usage: /tools [list] | /tools show|disable|enable|rollback|remove NAME")
        return
    try:
        if action == "show":
            _print(toolcli.format_show(toolcli.show_tool(store, name)))
        else:
            _print(toolcli.manage(store, action, name))
    except OctopussyError as exc:
        _print(f"error: {exc}")


def _make_session(loaded: LoadedConfig) -> PromptSession[str]:
    history_file = loaded.paths.home / "chat_history"
    try:
        history_file.parent.mkdir(parents=True, exist_ok=True)
        history_file.touch(exist_ok=True)
        return PromptSession(history=FileHistory(str(history_file)))
    except OSError:
        return PromptSession(history=InMemoryHistory())


async def run_chat(loaded: LoadedConfig) -> int:
    """The ``octopussy chat`` main loop; returns the exit code."""
    presenter = ReplPresenter()
    prompt = _make_session(loaded)
    with patch_stdout(raw=True):
        runtime = Runtime(loaded, presenter=presenter, progress=assembly_progress(_print))
        async with runtime:
            await _loop(runtime, ChatSession(runtime, presenter), prompt)
        _print("Goodbye!")
    return 0


async def _warm_up(runtime: Runtime) -> bool:
    """Load the models; Ctrl-C here leaves the chat (False)."""
    names = ", ".join(sorted({model.name for model in runtime.models}))
    servers = [s for s in runtime.mcp.status()]
    extra = f" and connecting {len(servers)} MCP server(s)" if servers else ""
    _print(f"Loading {names}{extra} …")
    loading = asyncio.create_task(runtime.warm_up(), name="repl:warm-up")
    with sigint_calls(loading.cancel):
        try:
            await loading
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            return False
        except OctopussyError as exc:
            _print(f"error: {exc}")
            _print("The chat stays open; fix the model settings and restart, or type quit.")
    if runtime.resumed:
        _print(f"Resumed {len(runtime.resumed)} unfinished task(s): {', '.join(runtime.resumed)}")
    for server in runtime.mcp.status():
        if server.state == "failed":
            _print(
                f"warning: MCP server {server.name} is not connected ({server.last_error}); "
                "retrying in the background, `/mcp` shows its state"
            )
    return True


async def _loop(runtime: Runtime, session: ChatSession, prompt: PromptSession[str]) -> None:
    if not await _warm_up(runtime):
        return
    _print(BANNER + "\n")
    prefill = ""
    while True:
        try:
            text = await prompt.prompt_async("You: ", default=prefill)
        except (EOFError, KeyboardInterrupt):
            return
        prefill = ""
        text = text.strip()
        if not text:
            continue
        if text.lower() in QUIT_WORDS:
            return
        if text.startswith("/"):
            await session.run_command(text)
            continue
        if not await session.answer(text):
            prefill = text
