"""Benchmark: the worker orchestration against the one tool call it wraps, in the same run.

    task        create_task ─► optimizer (model) ─► store ─► pool ─► worker ─► model: tool call
                  ─► MCPRegistry ─► built-in server read_file ─► model: answer ─► store ─► bus
                  ─► coordinator ─► presenter                                one task, timed
    baseline    MCPRegistry.call("read_file") on the same server, same file, as many in flight
    concurrency 50 tasks at once on models that sleep 200 ms per call vs one task alone
    memory      VmRSS growth per idle worker (after gc) vs VmRSS before creating them

Every model is a zero-latency ``octopussy.testing.FunctionModel`` (except in the concurrency
part): the worker's first reply is a ``read_file`` call, its second the tool's text; the
prompt optimizer (on, as by default) answers with the description unchanged. The store is
the real SQLite file, the tool call a real call on the real built-in MCP server (stdio),
logging goes to a file at INFO as in ``octopussy chat``. Long-term memory is off except in
the rows that say so (it embeds every task twice; see docs/benchmarks.md).

Throughput: C clients each submit a task and wait for its result at the presenter, again
and again (closed loop); the baseline does the same with bare registry calls and the same
C. The two sides alternate block by block and each figure is the median over repetitions;
CPU per task is read from /proc per thread (event loop, SQLite thread, others) and for
the MCP server child. Target: ≥ 200 tasks/s sustained. ``--only profile`` runs the same
load under cProfile and sorts the event loop's self time into components.

Concurrency: 50 tasks submitted together (max_workers 64) against one task alone, both
through ``create_task``. Target: ≤ 1.3×. Memory: N tasks held at the model so N workers
exist, released, then the N idle workers kept (``max_idle_workers`` = N); measured in a
fresh child process per N. Target: ≤ 1 MB per idle worker. Run:

    .venv/bin/python benchmarks/bench_orchestration.py [--quick] [--only throughput ...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import json
import logging
import os
import platform
import pstats
import sqlite3
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

from octopussy.bus.messages import Message, MessageType
from octopussy.config import Config, LoadedConfig, load_config
from octopussy.llm.base import ChatMessage, ToolCall
from octopussy.logs import setup_logging
from octopussy.runtime import Runtime
from octopussy.testing import CallInfo, FunctionModel

REPO = Path(__file__).resolve().parents[1]
TOOL = "read_file"
FILE = "hello.txt"
MARKER = "orchestration-benchmark-marker"
THROUGHPUT_TARGET = 200.0  # tasks/s
CONCURRENCY_TARGET = 1.3
RSS_TARGET_KB = 1024.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
#: Whether this tree has long-term memory (a ``memory:`` config section).
HAS_MEMORY = "memory" in Config.model_fields


# --------------------------------------------------------------------------- setup


def worker_answer(messages: list[ChatMessage], info: CallInfo) -> str | ToolCall:
    """First call: read the file; after the tool result: answer with what it returned."""
    last = messages[-1]
    if last.role == "tool":
        return last.content
    if "no tool" in info.last_user_text:
        return f"answered without tools: {MARKER}"
    return ToolCall(TOOL, {"path": FILE})


def unchanged(messages: list[ChatMessage], info: CallInfo) -> str:
    """The prompt optimizer's model: the description as it came (one real model call)."""
    return info.last_user_text


class Results:
    """The presenter: hands each task's result time to whoever waits for that task."""

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[float]] = {}
        self._early: dict[str, float] = {}
        self.errors: list[str] = []

    async def show(self, message: Message) -> None:
        if message.type not in (MessageType.TASK_RESULT, MessageType.TASK_ERROR):
            return
        now = time.perf_counter()
        if message.type is MessageType.TASK_ERROR:
            self.errors.append(str(message.payload.get("error")))
        elif MARKER not in str(message.payload.get("result")):
            self.errors.append(f"unexpected result {message.payload.get('result')!r:.200}")
        task_id = message.task_id or ""
        waiter = self._waiting.pop(task_id, None)
        if waiter is None:
            self._early[task_id] = now
        elif not waiter.done():
            waiter.set_result(now)

    async def wait(self, task_id: str) -> float:
        """When the result of ``task_id`` reached the presenter (perf_counter)."""
        if task_id in self._early:
            return self._early.pop(task_id)
        waiter = asyncio.get_running_loop().create_future()
        self._waiting[task_id] = waiter
        return await waiter

    def check(self) -> None:
        if self.errors:
            raise SystemExit(f"{len(self.errors)} task(s) failed, first: {self.errors[0]}")


def write_config(
    root: Path,
    *,
    max_workers: int,
    max_idle: int,
    memory: bool = False,
    optimize: bool = True,
) -> LoadedConfig:
    """A workspace with the small file and a config using it; nothing from the environment."""
    workspace = root / "ws"
    workspace.mkdir(parents=True, exist_ok=True)
    (workspace / FILE).write_text(f"hello from the workspace\n{MARKER}\n", encoding="utf-8")
    text = (
        "llm:\n  provider: scripted\n"
        f"workspace: {workspace}\ndata_dir: {root / 'home'}\n"
        f"workers:\n  max_workers: {max_workers}\n  max_idle_workers: {max_idle}\n"
        f"  optimize_prompts: {str(optimize).lower()}\n"
    )
    if HAS_MEMORY:
        text += f"memory:\n  enabled: {str(memory).lower()}\n"
    (root / "config.yaml").write_text(text, encoding="utf-8")
    return load_config(root / "config.yaml", env={}, cwd=root)


@dataclass
class Bench:
    """One running Runtime with its models and presenter."""

    runtime: Runtime
    results: Results
    worker_model: FunctionModel
    optimizer_model: FunctionModel

    async def task(self, description: str = "read hello.txt") -> float:
        """Seconds from create_task to the result at the presenter."""
        started = time.perf_counter()
        task = await self.runtime.create_task(description)
        return await self.results.wait(task.id) - started

    async def tool_call(self) -> None:
        result = await self.runtime.mcp.call(TOOL, {"path": FILE})
        if result.is_error or MARKER not in result.text:
            raise SystemExit(f"baseline call failed: {result.text[:200]}")

    def forget_calls(self) -> None:
        """The test models record every call; drop the records between blocks."""
        self.worker_model.calls.clear()
        self.optimizer_model.calls.clear()


@contextlib.asynccontextmanager
async def running(
    *,
    max_workers: int,
    max_idle: int | None = None,
    memory: bool = False,
    optimize: bool = True,
    delay: float = 0.0,
    worker_fn: Callable[[list[ChatMessage], CallInfo], Any] = worker_answer,
) -> AsyncIterator[Bench]:
    with tempfile.TemporaryDirectory(prefix="bench-orch-") as tmp:
        root = Path(tmp)
        loaded = write_config(
            root,
            max_workers=max_workers,
            max_idle=max_workers if max_idle is None else max_idle,
            memory=memory,
            optimize=optimize,
        )
        handlers = setup_logging(level="INFO", file=root / "octopussy.log", stderr=False)
        results = Results()
        worker_model = FunctionModel(worker_fn, name="bench-worker", delay=delay)
        optimizer_model = FunctionModel(unchanged, name="bench-optimizer", delay=delay)
        models = {
            "worker": worker_model,
            "prompt_optimizer": optimizer_model,
            "coordinator": FunctionModel(lambda _m, _i: "ok", name="bench-coordinator"),
        }
        try:
            async with Runtime(loaded, presenter=results, models=models) as runtime:
                await runtime.warm_up()
                bench = Bench(runtime, results, worker_model, optimizer_model)
                await bench.tool_call()  # the server is up and the file readable
                yield bench
        finally:
            root_logger = logging.getLogger("octopussy")
            for handler in handlers:
                root_logger.removeHandler(handler)
                handler.close()


# --------------------------------------------------------------------------- CPU accounting


def _cpu_seconds(stat_path: str) -> float:
    try:
        raw = Path(stat_path).read_bytes()
    except OSError:
        return 0.0
    fields = raw[raw.rfind(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


@dataclass
class Cpu:
    """CPU seconds by where they were spent."""

    loop: float = 0.0
    store: float = 0.0
    other_threads: float = 0.0
    mcp_server: float = 0.0

    def __add__(self, other: Cpu) -> Cpu:
        return Cpu(
            self.loop + other.loop,
            self.store + other.store,
            self.other_threads + other.other_threads,
            self.mcp_server + other.mcp_server,
        )

    def __sub__(self, other: Cpu) -> Cpu:
        return Cpu(
            self.loop - other.loop,
            self.store - other.store,
            self.other_threads - other.other_threads,
            self.mcp_server - other.mcp_server,
        )

    @property
    def total(self) -> float:
        return self.loop + self.store + self.other_threads + self.mcp_server


def cpu_now(runtime: Runtime) -> Cpu:
    """This process per thread (the loop's, the store's, the rest) and the MCP server child."""
    loop_tid = threading.get_native_id()
    store_tids = {
        t.native_id for t in threading.enumerate() if t.name.startswith("octopussy-sqlite")
    }
    cpu = Cpu()
    with contextlib.suppress(OSError):
        for tid in os.listdir("/proc/self/task"):
            seconds = _cpu_seconds(f"/proc/self/task/{tid}/stat")
            if int(tid) == loop_tid:
                cpu.loop += seconds
            elif int(tid) in store_tids:
                cpu.store += seconds
            else:
                cpu.other_threads += seconds
    for server in runtime.mcp.status():
        if server.pid:
            cpu.mcp_server += _cpu_seconds(f"/proc/{server.pid}/stat")
    return cpu


# --------------------------------------------------------------------------- throughput


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def closed_loop(
    op: Callable[[], Awaitable[object]], total: int, clients: int
) -> tuple[float, list[float]]:
    """``clients`` loops running ``op`` back to back until ``total`` ran; (ops/s, latencies)."""
    latencies: list[float] = []
    left = total

    async def client() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            started = time.perf_counter()
            await op()
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(clients):
            group.create_task(client())
    return total / (time.perf_counter() - started), latencies


@dataclass
class Side:
    rates: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)
    p95: list[float] = field(default_factory=list)
    cpu: Cpu = field(default_factory=Cpu)
    ops: int = 0

    def add(self, rate: float, latencies: list[float], cpu: Cpu) -> None:
        self.rates.append(rate)
        self.p50.append(percentile(latencies, 0.50))
        self.p95.append(percentile(latencies, 0.95))
        self.cpu = self.cpu + cpu
        self.ops += len(latencies)

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)

    def ms(self, values: list[float]) -> float:
        return statistics.median(values) * 1000

    def cpu_ms(self, seconds: float) -> float:
        return seconds / self.ops * 1000 if self.ops else 0.0


@dataclass
class Row:
    name: str
    clients: int
    #: False: a latency row (fewer clients than workers), not held to the throughput target.
    sustained: bool = True
    tasks: Side = field(default_factory=Side)
    calls: Side = field(default_factory=Side)

    @property
    def ratio(self) -> float:
        """Time per task / time per bare tool call (rate ratio)."""
        return self.calls.rate / self.tasks.rate


async def measure_row(bench: Bench, row: Row, *, count: int, repeat: int, warmup: int) -> Row:
    await closed_loop(bench.task, warmup, row.clients)
    await closed_loop(bench.tool_call, warmup, row.clients)
    bench.results.check()
    for rep in range(repeat):
        sides = [(row.tasks, bench.task), (row.calls, bench.tool_call)]
        for side, op in sides if rep % 2 == 0 else reversed(sides):
            bench.forget_calls()
            gc.collect()
            before = cpu_now(bench.runtime)
            rate, latencies = await closed_loop(op, count, row.clients)
            side.add(rate, latencies, cpu_now(bench.runtime) - before)
        bench.results.check()
    return row


async def run_throughput(args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    count, repeat, warmup = args.tasks, args.repeat, max(20, args.tasks // 10)
    async with running(max_workers=16) as bench:
        rows.append(
            await measure_row(
                bench,
                Row("max_workers 16, 16 clients", 16),
                count=count,
                repeat=repeat,
                warmup=warmup,
            )
        )
    async with running(max_workers=4, max_idle=3) as bench:  # the defaults
        rows.append(
            await measure_row(
                bench,
                Row("max_workers 4 (default), 4 clients", 4),
                count=count,
                repeat=repeat,
                warmup=warmup,
            )
        )
        rows.append(
            await measure_row(
                bench,
                Row("max_workers 4 (default), 1 client", 1, sustained=False),
                count=max(50, count // 3),
                repeat=repeat,
                warmup=warmup,
            )
        )
    if HAS_MEMORY and not args.skip_memory_rows:
        async with running(max_workers=4, max_idle=3, memory=True) as bench:
            rows.append(
                await measure_row(
                    bench,
                    Row("default config (long-term memory on), 4 clients", 4),
                    count=args.memory_tasks,
                    repeat=max(1, repeat // 2),
                    warmup=10,
                )
            )
    return rows


def report_throughput(rows: list[Row], args: argparse.Namespace) -> str:
    lines = [
        f"### Throughput and latency (closed loop; {args.tasks} tasks per block, "
        f"{args.memory_tasks} with long-term memory on; {args.repeat} repetitions, median)",
        "",
        "| configuration | tasks/s | task p50 (ms) | task p95 (ms) | bare calls/s "
        "| call p50 (ms) | call p95 (ms) | ratio (time) | target ≥ 200/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        t, c = row.tasks, row.calls
        verdict = "met" if t.rate >= THROUGHPUT_TARGET else "missed"
        if not row.sustained:
            verdict = "— (latency row)"
        lines.append(
            f"| {row.name} | {t.rate:.0f} | {t.ms(t.p50):.2f} | {t.ms(t.p95):.2f} | "
            f"{c.rate:.0f} | {c.ms(c.p50):.2f} | {c.ms(c.p95):.2f} | {row.ratio:.2f}× | "
            f"{verdict} |"
        )
    lines += [
        "",
        "CPU per task (ms; the bare call's in brackets): event loop thread, SQLite thread, "
        "other threads of ours, MCP server process",
        "",
        "| configuration | loop | store | other | MCP server | total |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        t, c = row.tasks, row.calls
        cells = [
            f"{t.cpu_ms(getattr(t.cpu, part)):.2f} ({c.cpu_ms(getattr(c.cpu, part)):.2f})"
            for part in ("loop", "store", "other_threads", "mcp_server", "total")
        ]
        lines.append(f"| {row.name} | {' | '.join(cells)} |")
    rates = {row.name: row.tasks.rates for row in rows}
    lines += ["", f"Per-repetition tasks/s: {json.dumps(rates, default=lambda v: round(v))}"]
    return "\n".join(lines)


# --------------------------------------------------------------------------- profile

#: Where a function's self time goes: first matching rule wins (path or name substrings).
PROFILE_GROUPS: list[tuple[str, tuple[str, ...]]] = [
    ("waiting in epoll (idle, or for the GIL)", ("method 'poll' of 'select.epoll'",)),
    (
        # RotatingFileHandler stats the file twice per record to decide on a rollover.
        "logging (file handler at INFO)",
        (
            "logging/",
            "octopussy/logs.py",
            "posix.stat",
            "of '_io.TextIOWrapper'",
            "time.localtime",
            "time.strftime",
        ),
    ),
    (
        "SQLite store: our calls + thread hand-off",
        (
            "octopussy/store/",
            "concurrent/futures/",
            "threading.py",  # the Condition inside every executor future
            "run_in_executor",
            "wrap_future",
            "_chain_future",
            "_copy_future_state",
            "_call_set_state",
            "_write_to_self",
            "_read_from_self",
            "call_soon_threadsafe",
            "'put' of '_queue.SimpleQueue'",
            "'recv' of '_socket.socket'",
            "'send' of '_socket.socket'",
        ),
    ),
    (
        "MCP client: SDK, anyio, validation, pipe I/O",
        (
            "site-packages/mcp",
            "site-packages/anyio",
            "jsonschema",
            "site-packages/referencing",
            "site-packages/pydantic",
            "site-packages/sniffio",
            "site-packages/rpds",
            "site-packages/attr",
            "site-packages/opentelemetry",
            "pydantic_core",
            "octopussy/mcp/",
            "asyncio/streams.py",
            "asyncio/unix_events.py",
            "posix.write",
            "posix.read",
        ),
    ),
    (
        "worker, ReAct loop, pool, runtime, short-term memory",
        (
            "octopussy/agents/worker.py",
            "octopussy/agents/react.py",
            "octopussy/orchestration/",
            "octopussy/runtime.py",
            "octopussy/memory/",
        ),
    ),
    (
        "bus, coordinator, presenter",
        (
            "octopussy/bus/",
            "octopussy/agents/base.py",
            "octopussy/agents/coordinator.py",
            "bench_orchestration.py",
        ),
    ),
    ("models (scripted) and metering", ("octopussy/testing.py", "octopussy/llm/", "inspect.py")),
    ("ids: uuid4 / urandom", ("uuid.py", "posix.urandom")),
    ("json", ("json/",)),
    ("asyncio event loop itself", ("asyncio/", "contextvars", "_asyncio", "selectors.py")),
]


def group_profile(stats: pstats.Stats) -> tuple[list[tuple[str, float]], float]:
    totals: dict[str, float] = {}
    grand = 0.0
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for (filename, _line, name), (_cc, _nc, tottime, _ct, _callers) in raw.items():
        key = f"{filename}:{name}"
        group = next(
            (g for g, needles in PROFILE_GROUPS if any(n in key for n in needles)), "other"
        )
        totals[group] = totals.get(group, 0.0) + tottime
        grand += tottime
    return sorted(totals.items(), key=lambda item: -item[1]), grand


async def run_profile(args: argparse.Namespace) -> str:
    count = args.tasks
    async with running(max_workers=16) as bench:
        await closed_loop(bench.task, max(20, count // 10), 16)
        bench.forget_calls()
        gc.collect()
        profiler = cProfile.Profile()
        before = cpu_now(bench.runtime)
        profiler.enable()
        rate, _ = await closed_loop(bench.task, count, 16)
        profiler.disable()
        cpu = cpu_now(bench.runtime) - before
        bench.results.check()
    stats = pstats.Stats(profiler)
    groups, grand = group_profile(stats)
    lines = [
        f"### Profile: {count} tasks, max_workers 16, 16 clients, under cProfile "
        f"({rate:.0f} tasks/s with the profiler on)",
        "",
        "Event loop thread, self time by component (cProfile sees only this thread; the "
        f"SQLite thread used {cpu.store / count * 1000:.2f} ms CPU per task and the MCP "
        f"server {cpu.mcp_server / count * 1000:.2f} ms meanwhile):",
        "",
        "| component | ms per task | share |",
        "|---|---:|---:|",
    ]
    for group, seconds in groups:
        lines.append(f"| {group} | {seconds / count * 1000:.3f} | {seconds / grand:.1%} |")
    lines.append(f"| total | {grand / count * 1000:.3f} | 100% |")
    lines += ["", "Top functions by self time:", "", "```"]
    buffer = _StatsText()
    pstats.Stats(profiler, stream=buffer).sort_stats("tottime").print_stats(14)
    lines += _trim_stats(buffer.text)
    lines.append("```")
    return "\n".join(lines)


class _StatsText:
    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)

    @property
    def text(self) -> str:
        return "".join(self.parts)


def _trim_stats(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls")), 0)
    site = str(Path(sys.prefix) / "lib")
    return [line.replace(site, "…").replace(str(REPO), ".") for line in lines[start:]]


# --------------------------------------------------------------------------- concurrency


@dataclass
class ConcurrencyRow:
    name: str
    single: list[float] = field(default_factory=list)
    together: list[float] = field(default_factory=list)
    cpu: Cpu = field(default_factory=Cpu)
    tasks: int = 0
    bare_burst: list[float] = field(default_factory=list)  # the tool calls alone, all at once

    @property
    def ratio(self) -> float:
        return statistics.median(self.together) / statistics.median(self.single)

    @property
    def excess(self) -> float:
        """Seconds the batch took beyond one task alone (median)."""
        return statistics.median(self.together) - statistics.median(self.single)


async def measure_concurrency(
    bench: Bench, row: ConcurrencyRow, description: str, n: int, repeat: int
) -> ConcurrencyRow:
    pool = bench.runtime.pool
    await bench.task(description)  # warm: first worker, first call paths
    for _ in range(repeat):
        bench.forget_calls()
        # A result reaches the presenter before the worker is free (long-term memory
        # stores the answer afterwards): start each measurement on a quiet pool.
        await pool.wait_idle(600)
        row.single.append(await bench.task(description))
        await pool.wait_idle(600)
        before = cpu_now(bench.runtime)
        started = time.perf_counter()
        await asyncio.gather(*(bench.task(description) for _ in range(n)))
        row.together.append(time.perf_counter() - started)
        row.cpu = row.cpu + (cpu_now(bench.runtime) - before)
        row.tasks += n
        bench.results.check()
        if description != "no tool":
            await pool.wait_idle(600)
            started = time.perf_counter()
            await asyncio.gather(*(bench.tool_call() for _ in range(n)))
            row.bare_burst.append(time.perf_counter() - started)
    return row


async def run_concurrency(args: argparse.Namespace) -> list[ConcurrencyRow]:
    n, repeat, delay = args.concurrent, args.concurrency_repeat, args.delay
    workers = max(64, n)
    rows: list[ConcurrencyRow] = []
    async with running(max_workers=workers, optimize=False, delay=delay) as bench:
        rows.append(
            await measure_concurrency(
                bench, ConcurrencyRow("no tool call (1 model call)"), "no tool", n, repeat
            )
        )
        rows.append(
            await measure_concurrency(
                bench, ConcurrencyRow("one tool call (2 model calls)"), "read", n, repeat
            )
        )
    async with running(max_workers=workers, optimize=True, delay=delay) as bench:
        rows.append(
            await measure_concurrency(
                bench,
                ConcurrencyRow("one tool call + prompt optimizer (3 model calls)"),
                "read",
                n,
                repeat,
            )
        )
    if HAS_MEMORY and not args.skip_memory_rows:
        async with running(max_workers=workers, optimize=True, delay=delay, memory=True) as bench:
            rows.append(
                await measure_concurrency(
                    bench,
                    ConcurrencyRow("same + long-term memory on (the default config)"),
                    "read",
                    n,
                    repeat,
                )
            )
    return rows


def report_concurrency(rows: list[ConcurrencyRow], args: argparse.Namespace) -> str:
    lines = [
        f"### Concurrency: {args.concurrent} tasks at once vs one alone, models sleeping "
        f"{args.delay * 1000:.0f} ms per call, max_workers {max(64, args.concurrent)} "
        f"({args.concurrency_repeat} repetitions, median)",
        "",
        f"| tasks | one task (s) | {args.concurrent} together (s) | ratio | "
        f"target ≤ {CONCURRENCY_TARGET} | extra for the batch (ms) "
        f"| of which {args.concurrent} bare tool calls at once (ms) "
        "| event loop CPU per task (ms) | all CPU per task (ms) |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        verdict = "met" if row.ratio <= CONCURRENCY_TARGET else "missed"
        burst = f"{statistics.median(row.bare_burst) * 1000:.0f}" if row.bare_burst else "—"
        lines.append(
            f"| {row.name} | {statistics.median(row.single):.3f} | "
            f"{statistics.median(row.together):.3f} | {row.ratio:.2f}× | {verdict} | "
            f"{row.excess * 1000:.0f} | {burst} | {row.cpu.loop / row.tasks * 1000:.2f} | "
            f"{row.cpu.total / row.tasks * 1000:.2f} |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- memory


def vm_rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def settle() -> int:
    for _ in range(3):
        gc.collect()
    return vm_rss_kb()


async def rss_child(n: int, traced: bool) -> dict[str, Any]:
    """N idle workers in this (fresh) process: RSS and, if ``traced``, live Python bytes."""
    gate = asyncio.Event()
    held = 0
    all_held = asyncio.Event()

    async def gated(messages: list[ChatMessage], info: CallInfo) -> str | ToolCall:
        nonlocal held
        if messages[-1].role != "tool" and not gate.is_set():
            held += 1
            if held >= n:
                all_held.set()
            await gate.wait()
        return worker_answer(messages, info)

    async with running(max_workers=n, max_idle=n, worker_fn=gated) as bench:
        pool = bench.runtime.pool
        gate.set()
        await closed_loop(bench.task, 20, 1)  # first-use caches and imports, then quiet
        gate.clear()
        bench.forget_calls()
        before_workers = len(pool.status()["idle"])
        if traced:
            tracemalloc.start()
        rss0 = settle()
        heap0 = tracemalloc.take_snapshot() if traced else None
        waits = [asyncio.create_task(bench.task()) for _ in range(n)]
        async with asyncio.timeout(120):
            await all_held.wait()  # every task is inside a worker, all at once
        created = len(pool.status()["busy"])
        gate.set()
        await asyncio.gather(*waits)
        del waits
        bench.forget_calls()
        await pool.wait_idle(30)
        new = len(pool.status()["idle"]) - before_workers
        rss1 = settle()
        result: dict[str, Any] = {"n": n, "created": created, "new": new, "rss0": rss0}
        result["rss1"] = rss1
        if heap0 is not None:
            heap1 = tracemalloc.take_snapshot()
            diff = heap1.compare_to(heap0, "lineno")
            result["heap_bytes"] = sum(d.size_diff for d in diff)
            result["heap_top"] = [
                (f"{_short_path(d.traceback[0].filename)}:{d.traceback[0].lineno}", d.size_diff)
                for d in sorted(diff, key=lambda d: -d.size_diff)[:8]
            ]
            tracemalloc.stop()
        # The same N tasks again on the N idle workers (none created): what tasks leave.
        gate.set()
        await asyncio.gather(*(bench.task() for _ in range(n)))
        bench.forget_calls()
        result["rss2"] = settle()
        bench.results.check()
    return result


def _short_path(filename: str) -> str:
    prefixes = (str(REPO / "src"), str(REPO), sysconfig.get_paths()["purelib"])
    prefixes += (sysconfig.get_paths()["stdlib"],)
    for prefix in prefixes:
        if filename.startswith(prefix + "/"):
            return filename[len(prefix) + 1 :]
    return filename


async def shared_memory_child() -> dict[str, Any]:
    """RSS the shared long-term memory adds when first used (encoder + Chroma)."""
    async with running(max_workers=4, max_idle=3, memory=True) as bench:
        rss0 = settle()
        await bench.task()
        return {"rss0": rss0, "rss1": settle()}


def run_child(*child_args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, *child_args],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"memory child {child_args} failed:\n{out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def run_memory(args: argparse.Namespace) -> str:
    lines = [
        "### Memory: idle workers (fresh child process per N; VmRSS after gc.collect())",
        "",
        "| idle workers N | new workers | VmRSS before (MB) | with N idle (MB) "
        "| growth per worker (KB) | of which live Python objects (KB) "
        "| RSS after N more tasks on them (KB/task) | target ≤ 1 MB |",
        "|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    per_worker: dict[int, float] = {}
    tops: list[str] = []
    for n in args.workers:
        plain = run_child("--rss-child", str(n))
        traced = run_child("--rss-child", str(n), "--traced")
        new = plain["new"]  # one worker existed before (from the warm-up)
        growth = (plain["rss1"] - plain["rss0"]) / new
        per_worker[new] = plain["rss1"] - plain["rss0"]
        heap = traced["heap_bytes"] / traced["new"] / 1024
        residue = (plain["rss2"] - plain["rss1"]) / n
        verdict = "met" if growth <= RSS_TARGET_KB else "missed"
        lines.append(
            f"| {n} | {new} | {plain['rss0'] / 1024:.1f} | "
            f"{plain['rss1'] / 1024:.1f} | {growth:.1f} | {heap:.1f} | {residue:.1f} | "
            f"{verdict} |"
        )
        tops.append(
            f"N={n}: "
            + ", ".join(f"{name} {size / traced['new']:.0f} B" for name, size in traced["heap_top"])
        )
    lines += ["", "Live Python bytes per worker by line (tracemalloc): " + "; ".join(tops)]
    if len(per_worker) >= 2:
        (a, ra), (b, rb) = sorted(per_worker.items())[0], sorted(per_worker.items())[-1]
        lines += ["", f"Slope between N={a} and N={b}: {(rb - ra) / (b - a):.1f} KB per worker."]
    if HAS_MEMORY and not args.skip_memory_rows:
        shared = run_child("--shared-memory-child")
        lines += [
            "",
            "Shared long-term memory (encoder weights + Chroma client), loaded once per "
            f"process on first use: +{(shared['rss1'] - shared['rss0']) / 1024:.1f} MB VmRSS.",
        ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- report


def machine() -> str:
    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        head = "?"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{time.strftime('%Y-%m-%d %H:%M')}; {platform.system()} {platform.release()}, {cpu}, "
        f"{cores} cores; Python {platform.python_version()}; SQLite {sqlite3.sqlite_version}; "
        f"mcp {version('mcp')}; tree {head}; load average {load:.2f}; "
        f"long-term memory in this tree: {'yes' if HAS_MEMORY else 'no'}"
    )


SECTIONS = ("throughput", "profile", "concurrency", "memory")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run (about two minutes)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--tasks", type=int, default=1000, help="tasks per throughput block")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--memory-tasks", type=int, default=60, help="tasks per block, memory on")
    parser.add_argument("--concurrent", type=int, default=50)
    parser.add_argument("--concurrency-repeat", type=int, default=5)
    parser.add_argument("--delay", type=float, default=0.2, help="model latency (s)")
    parser.add_argument("--workers", type=int, nargs="+", default=[200, 1000])
    parser.add_argument(
        "--skip-memory-rows", action="store_true", help="no rows with long-term memory on"
    )
    parser.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--shared-memory-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.tasks, args.repeat, args.memory_tasks = 200, 2, 20
        args.concurrency_repeat, args.workers = 2, [200]
    return args


async def amain(args: argparse.Namespace) -> int:
    print(f"Machine: {machine()}\n", flush=True)
    if "throughput" in args.only:
        print(report_throughput(await run_throughput(args), args) + "\n", flush=True)
    if "profile" in args.only:
        print(await run_profile(args) + "\n", flush=True)
    if "concurrency" in args.only:
        print(report_concurrency(await run_concurrency(args), args) + "\n", flush=True)
    if "memory" in args.only:
        print(run_memory(args) + "\n", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.rss_child:
        print(json.dumps(asyncio.run(rss_child(args.rss_child, args.traced))))
        return 0
    if args.shared_memory_child:
        print(json.dumps(asyncio.run(shared_memory_child())))
        return 0
    return asyncio.run(amain(args))


if __name__ == "__main__":
    raise SystemExit(main())
