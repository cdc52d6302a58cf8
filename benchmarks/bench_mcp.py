"""Benchmark: the MCP registry against the bare SDK ``Client``, in the same run.

    call round trip   registry.call("echo") ─► Client.call_tool ─► server ─► back   × N, sequential
                      Client.call_tool("echo")                 ─► server ─► back   × N, sequential
    startup           registry.start() with 4 stdio servers, connected concurrently
                      registry.start() with the slowest of them alone

Round trip: our own test server (``tests/mcp/registry_server.py``, a plain ``MCPServer``)
over stdio (one child per client: stdio is one-to-one) and over Streamable HTTP (one server
process, both clients on it). The two sides alternate in blocks of 100 calls after a
warm-up, and the figure is the median over repetitions. Target: registry time ≤ 1.10 ×
bare SDK time.

Startup: (a) four copies of that Python server — their imports are CPU-bound, so on a
2-core machine four starts cannot all overlap; the table shows the CPU lower bound next to
it; (b) four servers whose start is I/O-bound (a minimal JSON-RPC server that waits
0.2/0.4/0.6/0.8 s before answering, like ``npx``/``uvx`` fetching a package or a remote
host), against the 0.8 s one alone. Target: ≤ 1.2 × the slowest single server. Run:

    .venv/bin/python benchmarks/bench_mcp.py [--calls 2000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import platform
import socket
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from mcp import Client, StdioServerParameters
from octopussy.mcp.registry import MCPRegistry
from octopussy.mcp.servers import ServerSpec, inherited_env

REPO = Path(__file__).resolve().parents[1]
SERVER = REPO / "tests" / "mcp" / "registry_server.py"
ENV = inherited_env(os.environ)
CALL_TARGET = 1.10
BLOCK = 100  # calls per interleaved block
START_TARGET = 1.2

#: A minimal MCP server (2025-11-25 handshake, one tool) that waits argv[1] seconds first.
TINY_SERVER = r"""
import json, sys, time
time.sleep(float(sys.argv[1]))
def send(obj):
    sys.stdout.write(json.dumps(obj) + "\n"); sys.stdout.flush()
for line in sys.stdin:
    msg = json.loads(line)
    if "id" not in msg:
        continue
    method, params = msg.get("method"), msg.get("params") or {}
    if method == "initialize":
        result = {"protocolVersion": params.get("protocolVersion", "2025-11-25"),
                  "capabilities": {"tools": {}}, "serverInfo": {"name": "tiny", "version": "1"}}
    elif method == "tools/list":
        result = {"tools": [{"name": "echo", "inputSchema": {"type": "object"}}]}
    elif method == "tools/call":
        result = {"content": [{"type": "text", "text": str(params.get("arguments"))}]}
    elif method == "ping":
        result = {}
    else:
        send({"jsonrpc": "2.0", "id": msg["id"],
              "error": {"code": -32601, "message": "method not found"}})
        continue
    send({"jsonrpc": "2.0", "id": msg["id"], "result": result})
"""


def own_spec(name: str) -> ServerSpec:
    return ServerSpec(
        name, "stdio", command=sys.executable, args=(str(SERVER), "--name", name), env=ENV
    )


def tiny_spec(name: str, delay: float) -> ServerSpec:
    return ServerSpec(
        name, "stdio", command=sys.executable, args=("-c", TINY_SERVER, str(delay)), env=ENV
    )


# --------------------------------------------------------------------------- round trip


Caller = Callable[[str], Awaitable[object]]


async def timed_calls(call: Caller, n: int) -> float:
    started = time.perf_counter()
    for i in range(n):
        await call(str(i))
    return time.perf_counter() - started


@dataclass
class CallRow:
    transport: str
    bare_per_s: float
    ours_per_s: float

    @property
    def ratio(self) -> float:
        return self.bare_per_s / self.ours_per_s  # = our time / bare time


async def bench_calls(
    transport: str, calls: int, repeat: int, warmup: int, url: str | None
) -> CallRow:
    if transport == "stdio":
        params = StdioServerParameters(
            command=sys.executable, args=[str(SERVER), "--name", "bare"], env=dict(ENV)
        )
        bare_client = Client(params)
        spec = own_spec("ours")
    else:
        assert url is not None
        bare_client = Client(url)
        spec = ServerSpec("ours", "http", url=url)
    gc.collect()
    bare_times: list[float] = []
    our_times: list[float] = []
    async with bare_client as bare, MCPRegistry([spec], connect_timeout=30) as registry:

        async def bare_call(message: str) -> object:
            return await bare.call_tool("echo", {"message": message})

        async def our_call(message: str) -> object:
            return await registry.call("echo", {"message": message})

        probe = await registry.call("echo", {"message": "x"})
        assert probe.text == "ours:x", probe
        await timed_calls(bare_call, warmup)
        await timed_calls(our_call, warmup)
        # Interleave in blocks so a burst of load from elsewhere hits both sides alike.
        blocks = max(1, calls // BLOCK)
        for rep in range(repeat):
            bare_total = our_total = 0.0
            for block in range(blocks):
                if (rep + block) % 2:
                    bare_total += await timed_calls(bare_call, calls // blocks)
                    our_total += await timed_calls(our_call, calls // blocks)
                else:
                    our_total += await timed_calls(our_call, calls // blocks)
                    bare_total += await timed_calls(bare_call, calls // blocks)
            bare_times.append(bare_total)
            our_times.append(our_total)
    return CallRow(
        transport,
        calls / statistics.median(bare_times),
        calls / statistics.median(our_times),
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def http_server(port: int):  # type: ignore[no-untyped-def]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SERVER),
        "--name",
        "ours",
        "--http",
        str(port),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        async with asyncio.timeout(10):
            await proc.wait()


# --------------------------------------------------------------------------- startup


def cpu_seconds(pid: int) -> float:
    """CPU time a process has used so far (Linux /proc; 0 elsewhere)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return 0.0
    fields = raw[raw.rfind(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def time_start(specs: Sequence[ServerSpec]) -> tuple[float, float]:
    """Seconds until every server is ready, and the CPU seconds they used to get there."""
    registry = MCPRegistry(specs, connect_timeout=60)
    started = time.perf_counter()
    try:
        await registry.start()
        elapsed = time.perf_counter() - started
        status = registry.status()
        assert [s.state for s in status] == ["ready"] * len(specs), status
        used = sum(cpu_seconds(s.pid) for s in status if s.pid)
    finally:
        await registry.stop()
    return elapsed, used


@dataclass
class StartRow:
    scenario: str
    together: float
    slowest_alone: float
    sequential: float
    cpu_bound: float  # CPU the servers used until ready / cores: no faster start is possible

    @property
    def ratio(self) -> float:
        return self.together / self.slowest_alone


async def bench_start(scenario: str, specs: Sequence[ServerSpec], repeat: int) -> StartRow:
    together: list[float] = []
    cpu: list[float] = []
    alone: dict[str, list[float]] = {s.name: [] for s in specs}
    for _ in range(repeat):
        seconds, used = await time_start(specs)
        together.append(seconds)
        cpu.append(used)
        for spec in specs:
            alone[spec.name].append((await time_start([spec]))[0])
    singles = {name: statistics.median(v) for name, v in alone.items()}
    return StartRow(
        scenario,
        statistics.median(together),
        max(singles.values()),
        sum(singles.values()),
        statistics.median(cpu) / (os.cpu_count() or 1),
    )


# --------------------------------------------------------------------------- report


def machine() -> str:
    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (
        f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} cores; "
        f"Python {platform.python_version()}; mcp {version('mcp')}"
    )


async def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--start-repeat", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)

    rows = [await bench_calls("stdio", args.calls, args.repeat, args.warmup, None)]
    async with http_server(free_port()) as url:
        rows.append(await bench_calls("http", args.calls, args.repeat, args.warmup, url))

    starts = [
        await bench_start(
            "4 × Python MCPServer (CPU-bound imports)",
            [own_spec(f"py{i}") for i in range(4)],
            args.start_repeat,
        ),
        await bench_start(
            "4 × I/O-bound start (0.2/0.4/0.6/0.8 s)",
            [tiny_spec(f"io{i}", 0.2 * (i + 1)) for i in range(4)],
            args.start_repeat,
        ),
    ]

    print(f"\nMachine: {machine()}\n")
    print(
        f"call_tool round trip, {args.calls} sequential calls × {args.repeat}, median "
        f"(echo on tests/mcp/registry_server.py)\n"
    )
    print("| transport | bare SDK Client (calls/s) | MCPRegistry (calls/s) | ratio | target |")
    print("|---|---:|---:|---:|---|")
    for row in rows:
        verdict = "ok" if row.ratio <= CALL_TARGET else "MISSED"
        print(
            f"| {row.transport} | {row.bare_per_s:.0f} | {row.ours_per_s:.0f} | "
            f"{row.ratio:.3f} | ≤ {CALL_TARGET} {verdict} |"
        )
    print(
        f"\nStartup: time until every server is ready, median of {args.start_repeat}\n\n"
        "| servers | all 4 concurrently (s) | slowest alone (s) | ratio | target "
        "| one after another (s) | CPU lower bound (s) |"
    )
    print("|---|---:|---:|---:|---|---:|---:|")
    for start in starts:
        verdict = "ok" if start.ratio <= START_TARGET else "MISSED"
        print(
            f"| {start.scenario} | {start.together:.2f} | {start.slowest_alone:.2f} | "
            f"{start.ratio:.2f} | ≤ {START_TARGET} {verdict} | {start.sequential:.2f} | "
            f"{start.cpu_bound:.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
