"""Startup: from `octopussy ask` start to the first answer byte, with and without model load.

    baseline 1  python -c pass                         interpreter start
    ours        octopussy ask (scripted model)         our start-up: imports, config, store
    baseline 2  xllamacpp directly: load + first token the embedded model with nothing around it
    ours        octopussy ask (embedded model)         first byte; model load read from the log

Every row is measured in the same run (best and median of N, subprocesses, a warm page cache:
one untimed run first). Run: .venv/bin/python benchmarks/bench_startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPT = "Say hello in five words."
DIRECT = r"""
import sys, time
t0 = time.perf_counter()
import xllamacpp
p = xllamacpp.CommonParams()
p.model.path = sys.argv[1]; p.n_ctx = 4096; p.verbosity = 0; p.n_parallel = 1
p.cpuparams.n_threads = 1; p.cpuparams_batch.n_threads = 1
s = xllamacpp.Server(p)
t1 = time.perf_counter()
first = []
def cb(chunk):
    delta = chunk["choices"][0]["delta"].get("content") if chunk.get("choices") else None
    if delta and not first:
        first.append(time.perf_counter())
    return False
messages = [{"role": "system", "content": sys.argv[3]},
            {"role": "user", "content": sys.argv[2]}]
request = {"messages": messages, "stream": True, "temperature": 0, "max_tokens": 24}
s.handle_chat_completions(request, cb)
print(f"{t1 - t0:.4f} {first[0] - t1:.4f}")
"""


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def first_byte(cmd: list[str], env: dict[str, str], cwd: str) -> float:
    """Seconds from spawn to the first byte on stdout; the process is then awaited."""
    started = time.perf_counter()
    process = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd
    )
    assert process.stdout is not None
    byte = process.stdout.read(1)
    elapsed = time.perf_counter() - started
    _, err = process.communicate(timeout=600)
    if not byte or process.returncode != 0:
        raise SystemExit(f"{cmd} failed: {err.decode(errors='replace')[-500:]}")
    return elapsed


def summary(values: list[float]) -> str:
    return f"{min(values):.3f} | {statistics.median(values):.3f}"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[1]
    octopussy = str(Path(sys.executable).with_name("octopussy"))
    work = tempfile.mkdtemp(prefix="bench-startup-")
    cache = os.environ.get("OCTOPUSSY_MODEL_CACHE") or str(Path(work) / "models")
    Path(work, "scripted.yaml").write_text("llm:\n  provider: scripted\n")
    Path(work, "embedded.yaml").write_text("llm:\n  provider: embedded\n  max_tokens: 24\n")

    sys.path.insert(0, str(root / "src"))
    from octopussy.config import DEFAULT_SYSTEM_PROMPT
    from octopussy.llm.weights import ensure_embedded_gguf

    gguf = ensure_embedded_gguf(cache)
    rows: dict[str, list[float]] = {
        k: []
        for k in ("python", "scripted", "direct_load", "direct_first", "ask_first", "ask_load")
    }
    for run in range(args.runs + 1):  # run 0 warms the page cache and is not recorded
        home = Path(work) / f"home{run}"
        env = dict(os.environ, OCTOPUSSY_HOME=str(home), OCTOPUSSY_MODEL_CACHE=cache)
        python = first_byte([sys.executable, "-c", "print(1)"], env, work)
        scripted = first_byte([octopussy, "--config", "scripted.yaml", "ask", PROMPT], env, work)
        direct = subprocess.run(
            [sys.executable, "-c", DIRECT, str(gguf), PROMPT, DEFAULT_SYSTEM_PROMPT],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        )
        direct_load, direct_first = (float(x) for x in direct.stdout.split())
        ask_first = first_byte([octopussy, "--config", "embedded.yaml", "ask", PROMPT], env, work)
        log = (home / "logs" / "octopussy.log").read_text()
        ready = re.findall(r"models ready in ([0-9.]+)s", log)
        assert ready, "the ask log has no 'models ready' line"
        if run == 0:
            continue
        for key, value in (
            ("python", python),
            ("scripted", scripted),
            ("direct_load", direct_load),
            ("direct_first", direct_first),
            ("ask_first", ask_first),
            ("ask_load", float(ready[-1])),
        ):
            rows[key].append(value)

    excl = [f - load for f, load in zip(rows["ask_first"], rows["ask_load"], strict=True)]
    print("## Startup: `octopussy ask` to first answer byte\n")
    print(f"- machine: {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"- {args.runs} runs after one warm-up run; seconds, best | median\n")
    print("| what | best | median |")
    print("|---|---:|---:|")
    print(f"| baseline: `python -c print(1)` | {summary(rows['python'])} |")
    print(f"| `octopussy ask`, scripted model (our start-up) | {summary(rows['scripted'])} |")
    print(f"| baseline: xllamacpp direct, model load | {summary(rows['direct_load'])} |")
    print(
        f"| baseline: xllamacpp direct, first token after load | {summary(rows['direct_first'])} |"
    )
    print(f"| `octopussy ask`, embedded: model load (from the log) | {summary(rows['ask_load'])} |")
    print(f"| `octopussy ask`, embedded: first byte, total | {summary(rows['ask_first'])} |")
    print(f"| `octopussy ask`, embedded: first byte excluding model load | {summary(excl)} |")
    overhead = statistics.median(excl) - statistics.median(rows["direct_first"])
    print(
        f"\nStart-up cost of ours beyond the bare model (median first byte excl. load minus "
        f"direct first token): {overhead:.3f} s; load ratio ours/direct: "
        f"{statistics.median(rows['ask_load']) / statistics.median(rows['direct_load']):.2f}×"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
