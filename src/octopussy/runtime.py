"""The runtime: builds every component from the validated config and owns start/stop.

    LoadedConfig ──► Runtime ──► Store (sqlite)     MessageBus (memory)     UsageMeter
                                 models (one per distinct provider/model, shared)
                                 agents ──► one supervisor task each (restart with backoff)

Entry points (CLI, REPL, serve) build one ``Runtime`` and talk to its agents; nothing else
creates components. ``stop()`` cancels and awaits every task it started, closes the models
(child processes and threads included), the bus and the store, in that order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from octopussy.agents.base import Agent, supervise
from octopussy.agents.coordinator import Coordinator, Presenter
from octopussy.agents.react import ToolSource
from octopussy.agents.spool import SpoolAgent
from octopussy.agents.tool_agent import RegistryCatalog, ToolAgent, ToolRequester
from octopussy.agents.worker import Worker
from octopussy.bus.memory import InMemoryBus
from octopussy.bus.messages import Message
from octopussy.config import LoadedConfig
from octopussy.llm.base import MeteredModel, Model, UsageMeter
from octopussy.llm.factory import create_model
from octopussy.mcp.generated import GeneratedToolStore
from octopussy.mcp.registry import MCPRegistry
from octopussy.mcp.servers import server_specs
from octopussy.memory.notes import MemoryBank, TaskNotes
from octopussy.orchestration.optimizer import PromptOptimizer
from octopussy.orchestration.pool import WorkerPool
from octopussy.orchestration.requests import TASK_REQUEST, RequestWatcher
from octopussy.orchestration.scheduler import Scheduler
from octopussy.store.base import ScheduleRecord, Store, TaskRecord, TaskStatus
from octopussy.store.sqlite import SqliteStore

if TYPE_CHECKING:
    from octopussy.agents.calendar import CalendarAgent

log = logging.getLogger("octopussy.runtime")


class Runtime:
    """Everything one ``octopussy`` process runs, built from one config."""

    def __init__(
        self,
        loaded: LoadedConfig,
        *,
        presenter: Presenter | None = None,
        models: Mapping[str, Model] | None = None,
        background_agents: bool = True,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        """``models`` maps agent names to ready models (tests); others come from config.

        ``background_agents=False`` runs only what a one-shot command needs (``ask``).
        ``progress(done, total)`` hears about the one-time assembly of embedded weights.
        """
        self.loaded = loaded
        self.config = loaded.config
        self.paths = loaded.paths
        self.presenter = presenter
        self.background_agents = background_agents
        self._progress = progress
        self.meter = UsageMeter()
        self._model_overrides = dict(models or {})
        self._models: dict[tuple[str, str, str | None, str | None], Model] = {}
        self.store: Store = SqliteStore(self.paths.store)
        self.bus = InMemoryBus(
            maxsize=self.config.bus.inbox_size, on_undeliverable=self._undeliverable
        )
        self.mcp = MCPRegistry(
            server_specs(loaded, builtin_command=builtin_command(loaded)),
            call_timeout=self.config.mcp.call_timeout,
            connect_timeout=self.config.mcp.connect_timeout,
        )
        self._mcp_started = False
        self.agents: dict[str, Agent] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._started = False
        self.coordinator = Coordinator(
            bus=self.bus,
            store=self.store,
            model=self.model_for("coordinator"),
            system_prompt=self.config.coordinator.system_prompt,
            presenter=presenter,
            desk=self if self.config.coordinator.routing else None,
            history_turns=self.config.coordinator.history_turns,
            history_tokens=self.config.coordinator.history_tokens,
        )
        self.add_agent(self.coordinator)
        self.add_agent(SpoolAgent(bus=self.bus, store=self.store, spool=self.paths.spool))
        workers = self.config.workers
        self.optimizer = PromptOptimizer(
            self.model_for("prompt_optimizer"), enabled=workers.optimize_prompts
        )
        self.pool = WorkerPool(
            make_worker=self._make_worker,
            store=self.store,
            max_workers=workers.max_workers,
            max_idle_workers=workers.max_idle_workers,
        )
        #: Tasks a previous process left unfinished and this one re-queued (set by warm_up).
        self.resumed: list[str] = []
        #: Cancels (and, with background agents, new tasks) from other processes.
        self.requests = RequestWatcher(self.store, self.pool, run_tasks=background_agents)
        #: True: new tasks are left for a running chat/serve (`ask --no-wait`), not run here.
        self.hand_over_tasks = False
        #: Recurring tasks; its loop runs only with ``background_agents`` (see ``start``).
        self.scheduler = Scheduler(self.store, self.fire_schedule)
        #: Long-term memory: one shared encoder, one memory per worker role (opened lazily).
        self.memory = MemoryBank.from_settings(self.config.memory, self.paths.memory)
        #: The tool agent (``tool_agent.enabled``, and only where background agents run).
        self.tool_agent: ToolAgent | None = None
        if self.config.tool_agent.enabled and background_agents:
            self._add_tool_agent()
        #: The calendar agent (None unless ``calendar_agent`` is configured and enabled).
        self.calendar: CalendarAgent | None = self._add_calendar_agent()
        self._add_mail_agent()

    # -- mail agent (issue 5) ---------------------------------------------------------------
    def _add_mail_agent(self) -> None:
        """One mail agent watching every configured account (IMAP), when enabled.

        Not in one-shot runs (``background_agents=False``): it would never start, and its
        model (``mail_agent.llm``) would be loaded for nothing.
        """
        settings = self.config.mail_agent
        if not self.background_agents or settings is None or not settings.enabled:
            return
        if not settings.all_accounts():
            return
        from octopussy.agents.mail import MailAgent

        model = self.model_for("mail_agent") if settings.summarize else None
        self.add_agent(
            MailAgent(
                settings,
                bus=self.bus,
                store=self.store,
                model=model,
                lock_path=self.paths.home / "mail.lock",
            )
        )

    # -- calendar agent -------------------------------------------------------------------
    def _add_calendar_agent(self) -> CalendarAgent | None:
        settings = self.config.calendar_agent
        if settings is None or not settings.enabled:
            return None
        # Imported here: icalendar and the CalDAV/Google clients cost nothing when unused.
        from octopussy.agents.calendar import CalendarAgent
        from octopussy.calendar.factory import build_watcher

        watcher = build_watcher(
            settings, self.store, home=self.paths.home, env_tz=self.loaded.env.get("TZ")
        )
        agent = CalendarAgent(
            bus=self.bus,
            store=self.store,
            watcher=watcher,
            zone=watcher.zone,
            agenda_days=settings.agenda_days,
        )
        self.add_agent(agent)
        return agent

    # -- building -------------------------------------------------------------------------
    def model_for(self, agent: str) -> Model:
        """The model of ``agent``, metered under its name; providers are shared by settings."""
        if agent in self._model_overrides:
            inner = self._model_overrides[agent]
        else:
            resolved = self.config.llm_for(agent)
            shared = self._models.get(resolved.key)
            if shared is None:
                shared = create_model(
                    resolved, settings=self.config.llm, paths=self.paths, progress=self._progress
                )
                self._models[resolved.key] = shared
            inner = shared
        return MeteredModel(inner, agent=agent, meter=self.meter)

    @property
    def models(self) -> list[Model]:
        """Every distinct provider instance (for warm-up, doctor and shutdown)."""
        unique: dict[int, Model] = {}
        for model in [*self._models.values(), *self._model_overrides.values()]:
            unique[id(model)] = model
        return list(unique.values())

    def add_agent(self, agent: Agent) -> None:
        if agent.name in self.agents:
            raise ValueError(f"an agent named {agent.name!r} already exists")
        self.agents[agent.name] = agent

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Open the store, register every agent and start its supervisor task."""
        if self._started:
            return
        self.paths.ensure()
        await self.store.open()
        self._started = True
        for agent in self.agents.values():
            await agent.register(inbox_size=self.config.bus.inbox_size)
            if agent is self.coordinator or self.background_agents:
                self._spawn(supervise(agent), name=f"agent:{agent.name}")
        if self.background_agents:
            self._spawn(self.scheduler.run(), name="scheduler")
        await self.requests.mark_start()
        self._spawn(self.requests.run(), name="requests")
        log.info(
            "runtime started: agents=%s home=%s workspace=%s",
            ",".join(self.agents),
            self.paths.home,
            self.paths.workspace,
        )

    async def warm_up(self, *, tools: bool = True) -> None:
        """Load every model and connect the MCP servers now, concurrently."""
        jobs: list[Awaitable[object]] = [model.start() for model in self.models]
        if tools:
            jobs.append(self.start_tools())
        await asyncio.gather(*jobs)
        if tools and self.background_agents:
            await self.resume_tasks()

    def memory_for(self, role: str) -> TaskNotes | None:
        """The long-term memory every worker of ``role`` shares; None when it is off."""
        return self.memory.for_role(role)

    def _make_worker(self, name: str) -> Worker:
        role = self.config.workers.role
        return Worker(
            name,
            bus=self.bus,
            store=self.store,
            model=self.model_for("worker"),
            tools=self.tools_for_worker(name),
            role=role,
            max_steps=self.config.workers.max_steps,
            long_term=self.memory_for(role),
            question_withholds=frozenset(self.config.workers.question_withholds),
        )

    # -- the tool agent (generated tools) -----------------------------------------------
    @property
    def generated_tools(self) -> GeneratedToolStore:
        """The directory of generated tools (``octopussy tools`` acts on it too)."""
        return GeneratedToolStore(self.paths.generated_tools)

    def _add_tool_agent(self) -> None:
        settings = self.config.tool_agent
        self.tool_agent = ToolAgent(
            bus=self.bus,
            store=self.store,
            model=self.model_for("tool_agent"),
            tools=self.generated_tools,
            scratch=self.paths.home / "tool_agent" / "scratch",
            catalog=RegistryCatalog(self.start_tools),
            settings=settings,
            sandbox=self.config.sandbox,
            report_to=self.coordinator.name,
        )
        self.add_agent(self.tool_agent)

    def tools_for_worker(self, name: str) -> ToolSource:
        """The worker's tools: the registry, plus ``request_tool`` while a tool agent runs."""
        settings = self.config.tool_agent
        if self.tool_agent is None or settings.worker_requests == "off":
            return self.mcp
        return ToolRequester(
            self.mcp,
            bus=self.bus,
            requester=name,
            tool_agent=self.tool_agent.name,
            timeout=settings.request_timeout_seconds,
            always=settings.worker_requests == "always",
        )

    async def create_task(self, description: str, *, question: bool = False) -> TaskRecord:
        """Store a task, optimize its prompt and hand it to the worker pool.

        ``question``: the user only asked, so the worker runs it without the tools in
        ``workers.question_withholds`` (task data ``"question": true``, kept for a resume).
        """
        await self.start_tools()
        prompt = await self.optimizer.optimize(description)
        now = time.time()
        task = TaskRecord(
            id=uuid.uuid4().hex[:8],
            description=description,
            prompt=prompt if prompt != description else None,
            created_at=now,
            updated_at=now,
            data={"question": True} if question else {},
        )
        await self.store.add_task(task)
        if self.hand_over_tasks:
            await self.store.add_event(TASK_REQUEST, {"from": "ask"}, task_id=task.id)
        else:
            await self.pool.submit(task.id)
        log.info("task %s created: %s", task.id, description)
        return task

    async def schedule_task(self, description: str, spec: str) -> ScheduleRecord:
        """Run ``description`` every time ``spec`` comes due ("every 30 minutes", cron).

        One task is stored (``SCHEDULED``, its prompt optimized once, now) and each run
        queues that same task again, so its results are numbered 1, 2, ... A bad ``spec``
        raises ``ConfigError`` before anything is stored.
        """
        self.scheduler.first_run(spec)
        prompt = await self.optimizer.optimize(description)
        now = time.time()
        schedule_id = uuid.uuid4().hex[:8]
        task = TaskRecord(
            id=uuid.uuid4().hex[:8],
            description=description,
            status=TaskStatus.SCHEDULED,
            prompt=prompt if prompt != description else None,
            created_at=now,
            updated_at=now,
            data={"schedule_id": schedule_id, "schedule": spec},
        )
        await self.store.add_task(task)
        schedule = await self.scheduler.add(
            description, spec, task_id=task.id, schedule_id=schedule_id
        )
        log.info("task %s scheduled (%s, schedule %s): %s", task.id, spec, schedule.id, description)
        return schedule

    async def fire_schedule(self, schedule: ScheduleRecord) -> None:
        """The scheduler's callback: queue the schedule's task again (skipped, and logged,
        while its previous run is still queued or running)."""
        status = self.pool.status()
        if schedule.task_id in status["busy"] or schedule.task_id in status["queued"]:
            log.warning(
                "schedule %s: run %d skipped, task %s is still running",
                schedule.id,
                schedule.runs,
                schedule.task_id,
            )
            return
        await self.start_tools()
        await self.store.update_task(
            schedule.task_id, status=TaskStatus.QUEUED, data={"schedule_run": schedule.runs}
        )
        await self.pool.submit(schedule.task_id)
        log.info(
            "schedule %s: run %d of task %s queued", schedule.id, schedule.runs, schedule.task_id
        )

    async def unschedule(self, schedule_id: str) -> bool:
        """Stop a schedule (a run in progress finishes; a task that never ran is cancelled);
        False if it is unknown or already stopped."""
        return await self.scheduler.remove(schedule_id)

    async def schedules(self) -> list[ScheduleRecord]:
        """The active schedules, soonest first."""
        return await self.scheduler.schedules()

    async def resume_tasks(self) -> list[str]:
        """Re-queue what a previous process left queued or running (tools first)."""
        await self.start_tools()
        self.resumed = await self.pool.resume()
        if self.resumed:
            log.info("resumed %d unfinished task(s): %s", len(self.resumed), self.resumed)
        return self.resumed

    async def start_tools(self) -> MCPRegistry:
        """Connect every configured MCP server (once); failures are retried in the background."""
        if not self._mcp_started:
            self._mcp_started = True
            await self.mcp.start()
        return self.mcp

    def _spawn(self, coro: object, *, name: str) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro, name=name)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        """Cancel and await every task, then close models, bus and store. Idempotent."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        if self._started:
            try:
                await self.pool.stop()
            except Exception:
                log.exception("stopping the worker pool failed")
        if self._mcp_started:
            try:
                await self.mcp.stop()
            except Exception:
                log.exception("stopping the MCP servers failed")
            self._mcp_started = False
        for model in self.models:
            try:
                await model.aclose()
            except Exception:
                log.exception("closing model %s failed", model.name)
        await self.memory.close()
        await self.bus.close()
        if self._started:
            self._started = False
            with contextlib.suppress(Exception):
                await self.store.add_event(
                    "usage", {a: u.as_dict() for a, u in self.meter.snapshot().items()}
                )
            await self.store.close()
        log.info("runtime stopped")

    async def __aenter__(self) -> Runtime:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- hooks ----------------------------------------------------------------------------
    async def _undeliverable(self, message: Message, reason: str) -> None:
        """The bus could not deliver ``message``: log it and keep it in the store."""
        log.warning(
            "undeliverable %s from %s to %s: %s",
            message.type.value,
            message.sender,
            message.recipient,
            reason,
        )
        if self._started:
            with contextlib.suppress(Exception):
                await self.store.add_event(
                    "undeliverable",
                    {"reason": reason, "message": message.to_dict()},
                    agent=message.sender,
                    task_id=message.task_id,
                )


def builtin_command(loaded: LoadedConfig) -> list[str]:
    """How the registry starts our own built-in tools server: this interpreter, same config."""
    command = [sys.executable, "-m", "octopussy"]
    if loaded.source != "<defaults>":
        command += ["--config", str(Path(loaded.source).resolve())]
    return [*command, "mcp", "builtin", "--workspace", str(loaded.paths.workspace)]
