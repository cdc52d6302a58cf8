"""Benchmark: one ``InMemoryBus`` hop against a bare ``asyncio.Queue`` hop, in the same run.

    throughput   producer ──send × N──► inbox ──get × N──► consumer      messages/s
    latency      t0 ─ send(m) ──► inbox ──► get() returns ─ t1          t1 - t0, one in flight

Both sides use the same pre-built ``Message`` objects, the same count and the same bound
(1000, the bus default), and run alternately in one process so machine noise hits both;
each figure is the median over the repetitions. In the latency run the receiver hands the
turn back through an ``asyncio.Event`` (identical for both), outside the timed window. The
target is ``InMemoryBus`` at no less than 0.5× the bare queue. Run:

    .venv/bin/python benchmarks/bench_bus.py [--messages 100000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from octopussy.bus.memory import DEFAULT_MAXSIZE, InMemoryBus
from octopussy.bus.messages import Message, MessageType

TARGET_RATIO = 0.5


@dataclass(frozen=True)
class Hop:
    """One way to move a message from a sender task to a receiver task."""

    send: Callable[[Message], Awaitable[None]]
    get: Callable[[], Awaitable[Message]]
    close: Callable[[], Awaitable[None]]


async def queue_hop(maxsize: int) -> Hop:
    queue: asyncio.Queue[Message] = asyncio.Queue(maxsize)

    async def nothing() -> None:
        return None

    return Hop(send=queue.put, get=queue.get, close=nothing)


async def bus_hop(maxsize: int) -> Hop:
    bus = InMemoryBus(maxsize=maxsize)
    inbox = await bus.register("receiver")
    return Hop(send=bus.send, get=inbox.get, close=bus.close)


HOPS: dict[str, Callable[[int], Awaitable[Hop]]] = {
    "asyncio.Queue (bare)": queue_hop,
    "InMemoryBus": bus_hop,
}


async def throughput(hop: Hop, messages: Sequence[Message]) -> float:
    """Messages per second, producer and consumer running concurrently."""
    count = len(messages)

    async def produce() -> None:
        send = hop.send
        for message in messages:
            await send(message)

    async def consume() -> None:
        get = hop.get
        for _ in range(count):
            await get()

    start = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        group.create_task(consume())
        group.create_task(produce())
    return count / (time.perf_counter() - start)


async def latency(hop: Hop, messages: Sequence[Message]) -> list[int]:
    """Per-message send→get time in nanoseconds, one message in flight at a time."""
    count = len(messages)
    sent = [0] * count
    received = [0] * count
    turn = asyncio.Event()
    clock = time.perf_counter_ns

    async def produce() -> None:
        send = hop.send
        for i, message in enumerate(messages):
            turn.clear()
            sent[i] = clock()
            await send(message)
            await turn.wait()

    async def consume() -> None:
        get = hop.get
        for i in range(count):
            await get()
            received[i] = clock()
            turn.set()

    async with asyncio.TaskGroup() as group:
        group.create_task(consume())
        group.create_task(produce())
    return [r - s for s, r in zip(sent, received, strict=True)]


def percentile(sorted_values: Sequence[int], fraction: float) -> int:
    return sorted_values[min(len(sorted_values) - 1, round(fraction * (len(sorted_values) - 1)))]


@dataclass
class Result:
    rates: list[float]
    p50: list[int]
    p99: list[int]

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)

    @property
    def p50_us(self) -> float:
        return statistics.median(self.p50) / 1000

    @property
    def p99_us(self) -> float:
        return statistics.median(self.p99) / 1000


async def run(count: int, repeat: int, maxsize: int) -> tuple[dict[str, Result], str]:
    """Every measurement; also returns the event loop's class name."""
    # The same objects for every run, built before any timing starts.
    messages = [
        Message(
            type=MessageType.AGENT_NOTIFICATION,
            sender="sender",
            recipient="receiver",
            payload={"text": "ping", "seq": i},
        )
        for i in range(count)
    ]
    results = {name: Result([], [], []) for name in HOPS}
    names = list(HOPS)
    for rep in range(repeat):
        # Alternate which side goes first so warm-up and drift do not favour one.
        for name in names if rep % 2 == 0 else reversed(names):
            for measure in ("throughput", "latency"):
                hop = await HOPS[name](maxsize)
                gc.collect()
                if measure == "throughput":
                    results[name].rates.append(await throughput(hop, messages))
                else:
                    hops = sorted(await latency(hop, messages))
                    results[name].p50.append(percentile(hops, 0.50))
                    results[name].p99.append(percentile(hops, 0.99))
                await hop.close()
    return results, type(asyncio.get_running_loop()).__name__


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def usable_cores() -> int | None:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count()


def report(results: dict[str, Result], *, loop: str, count: int, repeat: int, maxsize: int) -> str:
    queue, bus = results["asyncio.Queue (bare)"], results["InMemoryBus"]
    ratio = bus.rate / queue.rate
    lines = [
        "## Message bus hop: InMemoryBus vs bare asyncio.Queue",
        "",
        f"- python: {platform.python_implementation()} {platform.python_version()} "
        f"({sys.platform}, {loop})",
        f"- cpu: {cpu_model()}; cores: {os.cpu_count()} (usable: {usable_cores()})",
        f"- platform: {platform.platform()}",
        f"- {count:,} messages per run, {repeat} repetitions (median shown), "
        f"inbox/queue maxsize {maxsize}",
        "",
        "| hop | messages/s | (min – max) | hop p50 (µs) | hop p99 (µs) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, result in results.items():
        lines.append(
            f"| {name} | {result.rate:,.0f} | {min(result.rates):,.0f} – {max(result.rates):,.0f} "
            f"| {result.p50_us:.2f} | {result.p99_us:.2f} |"
        )
    lines.append(
        f"| ratio bus / queue | {ratio:.2f}× | | {bus.p50_us / queue.p50_us:.2f}× "
        f"| {bus.p99_us / queue.p99_us:.2f}× |"
    )
    verdict = "met" if ratio >= TARGET_RATIO else "MISSED"
    lines += [
        "",
        f"Target: InMemoryBus throughput ≥ {TARGET_RATIO}× the bare queue: **{verdict}** "
        f"({ratio:.2f}×). Latency ratios are bus ÷ queue (lower is better).",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=100_000, help="messages per run")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions (median reported)")
    parser.add_argument("--maxsize", type=int, default=DEFAULT_MAXSIZE, help="inbox bound")
    args = parser.parse_args(argv)
    results, loop = asyncio.run(run(args.messages, args.repeat, args.maxsize))
    print(report(results, loop=loop, count=args.messages, repeat=args.repeat, maxsize=args.maxsize))
    ratio = results["InMemoryBus"].rate / results["asyncio.Queue (bare)"].rate
    return 0 if ratio >= TARGET_RATIO else 1


if __name__ == "__main__":
    raise SystemExit(main())
