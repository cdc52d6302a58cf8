"""Throughput of EmbeddedModel against xllamacpp called directly, in one run.

    .venv/bin/python benchmarks/bench_embedded.py [--reps 5] [--max-tokens 64] [--smollm2]

Both paths load the same GGUF with the same parameters (n_ctx, threads) and get the same
request (same prompt, max_tokens, temperature 0, ``cache_prompt: false`` so every run reads
the whole prompt, ``ignore_eos`` so every run generates exactly max_tokens). Runs alternate
between the two paths (and which goes first) so background load hits both alike. Prompt tokens/s is
prompt tokens over the wall time to the first generated token; generation tokens/s is the
remaining tokens over the wall time after it; "total" is a non-streaming call
(``handle_chat_completions(dict)`` vs ``EmbeddedModel.complete``). Prints a markdown table with
best-of and median, and the ratio EmbeddedModel / direct (target ≥ 0.95), plus the wall time
per call spent outside llama.cpp's own prompt/generation work: the wrapper's real cost,
which machine noise does not blur.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from octopussy.llm import weights
from octopussy.llm.base import ChatMessage, ModelSettings
from octopussy.llm.embedded import EmbeddedModel, default_threads

SYSTEM = (
    "You are a careful senior software engineer. You review Python code for correctness, "
    "clarity and performance. You explain problems briefly and suggest concrete fixes. "
    "You prefer the standard library, type hints everywhere, small functions with one job, "
    "and tests that run fast and never depend on the network. When you are unsure, you say "
    "so instead of guessing."
)
USER = (
    "Review this function and suggest improvements:\n\n"
    "def load(path):\n"
    "    f = open(path)\n"
    "    data = f.read()\n"
    "    items = []\n"
    "    for line in data.split('\\n'):\n"
    "        if line != '':\n"
    "            items.append(line.strip().split(','))\n"
    "    return items\n"
)


@dataclass
class Samples:
    prompt_tps: list[float] = field(default_factory=list)
    gen_tps: list[float] = field(default_factory=list)
    total_s: list[float] = field(default_factory=list)
    llama_prompt_tps: list[float] = field(default_factory=list)
    llama_gen_tps: list[float] = field(default_factory=list)
    overhead_ms: list[float] = field(default_factory=list)
    inside_share: list[float] = field(default_factory=list)
    total_overhead_ms: list[float] = field(default_factory=list)
    prompt_tokens: int = 0


def _request(max_tokens: int) -> dict[str, Any]:
    return {
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}],
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "cache_prompt": False,
        "ignore_eos": True,
    }


def _record_split(
    samples: Samples, start: float, first: float, end: float, usage: dict[str, Any]
) -> None:
    samples.prompt_tokens = int(usage["prompt_tokens"])
    samples.prompt_tps.append(samples.prompt_tokens / (first - start))
    samples.gen_tps.append((int(usage["completion_tokens"]) - 1) / (end - first))


def _outside_ms(wall: float, timings: dict[str, Any]) -> float:
    """Wall time not spent inside llama.cpp's own prompt and generation work."""
    inside_ms = float(timings.get("prompt_ms", 0)) + float(timings.get("predicted_ms", 0))
    return wall * 1000 - inside_ms


def _record_overhead(samples: Samples, wall: float, timings: dict[str, Any]) -> None:
    outside = _outside_ms(wall, timings)
    samples.overhead_ms.append(outside)
    samples.inside_share.append(1 - outside / (wall * 1000))


def direct_stream(server: Any, max_tokens: int, samples: Samples) -> None:
    request = {**_request(max_tokens), "stream": True, "stream_options": {"include_usage": True}}
    marks: dict[str, Any] = {}

    def on_chunk(chunk: dict[str, Any]) -> bool:
        choices = chunk.get("choices") or []
        if "first" not in marks and choices and (choices[0].get("delta") or {}).get("content"):
            marks["first"] = time.perf_counter()
        if chunk.get("usage"):
            marks["usage"] = chunk["usage"]
            marks["timings"] = chunk.get("timings") or {}
        return False

    start = time.perf_counter()
    server.handle_chat_completions(request, on_chunk)
    end = time.perf_counter()
    _record_split(samples, start, marks["first"], end, marks["usage"])
    _record_overhead(samples, end - start, marks["timings"])
    samples.llama_prompt_tps.append(float(marks["timings"].get("prompt_per_second", 0)))
    samples.llama_gen_tps.append(float(marks["timings"].get("predicted_per_second", 0)))


def direct_total(server: Any, max_tokens: int, samples: Samples) -> None:
    start = time.perf_counter()
    result = server.handle_chat_completions(_request(max_tokens))
    wall = time.perf_counter() - start
    samples.total_s.append(wall)
    samples.total_overhead_ms.append(_outside_ms(wall, result["timings"]))
    assert result["usage"]["completion_tokens"] == max_tokens, result.get("usage")


async def embedded_stream(model: EmbeddedModel, samples: Samples) -> None:
    messages = [ChatMessage.system(SYSTEM), ChatMessage.user(USER)]
    first = 0.0
    usage: dict[str, Any] = {}
    start = time.perf_counter()
    async for event in model.stream(messages):
        if event.kind == "delta" and not first:
            first = time.perf_counter()
        elif event.kind == "done" and event.response is not None:
            usage = {
                "prompt_tokens": event.response.usage.input_tokens,
                "completion_tokens": event.response.usage.output_tokens,
            }
    end = time.perf_counter()
    _record_split(samples, start, first, end, usage)
    _record_overhead(samples, end - start, model.last_timings)
    samples.llama_prompt_tps.append(float(model.last_timings.get("prompt_per_second", 0)))
    samples.llama_gen_tps.append(float(model.last_timings.get("predicted_per_second", 0)))


async def embedded_total(model: EmbeddedModel, max_tokens: int, samples: Samples) -> None:
    messages = [ChatMessage.system(SYSTEM), ChatMessage.user(USER)]
    start = time.perf_counter()
    response = await model.complete(messages)
    wall = time.perf_counter() - start
    samples.total_s.append(wall)
    samples.total_overhead_ms.append(_outside_ms(wall, model.last_timings))
    assert response.usage.output_tokens == max_tokens, response.usage


def _best_median(values: list[float], *, lower_is_better: bool = False) -> tuple[float, float]:
    best = min(values) if lower_is_better else max(values)
    return best, statistics.median(values)


def _row(
    label: str,
    direct: list[float],
    embedded: list[float],
    fmt: Callable[[float], str],
    *,
    lower_is_better: bool = False,
) -> str:
    d_best, d_med = _best_median(direct, lower_is_better=lower_is_better)
    e_best, e_med = _best_median(embedded, lower_is_better=lower_is_better)
    # Ratio as "EmbeddedModel throughput / direct throughput" (>1 means faster).
    ratio_best = d_best / e_best if lower_is_better else e_best / d_best
    ratio_med = d_med / e_med if lower_is_better else e_med / d_med
    return (
        f"| {label} | {fmt(d_best)} / {fmt(d_med)} | {fmt(e_best)} / {fmt(e_med)} "
        f"| {ratio_best:.3f} / {ratio_med:.3f} |"
    )


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path.home() / ".cache" / "octopussy" / "models",
        help="where the embedded model is assembled (default: ~/.cache/octopussy/models)",
    )
    parser.add_argument("--smollm2", action="store_true", help="use the tiny SmolLM2 model")
    args = parser.parse_args(argv)

    import xllamacpp

    if args.smollm2:
        path = weights.find_smollm2_gguf()
    else:
        print("preparing the embedded model (one time)…", file=sys.stderr, flush=True)
        path = weights.ensure_embedded_gguf(args.cache_dir)
    # Read the file once so neither timed load pays for the disk (page cache warm for both).
    with path.open("rb") as handle:
        while handle.read(16 * 1024 * 1024):
            pass

    params = xllamacpp.CommonParams()
    params.model.path = str(path)
    params.n_ctx = args.n_ctx
    params.n_parallel = 1
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.verbosity = 0
    started = time.perf_counter()
    server = xllamacpp.Server(params)
    direct_load = time.perf_counter() - started

    model = EmbeddedModel(
        model_path=path,
        n_ctx=args.n_ctx,
        threads=args.threads,
        temperature=0.0,
        max_tokens=args.max_tokens,
        request_options={"cache_prompt": False, "ignore_eos": True},
    )
    started = time.perf_counter()
    await model.start()
    embedded_load = time.perf_counter() - started

    direct, embedded = Samples(), Samples()
    # One untimed warm-up each: first-touch page faults of the weights are not throughput.
    direct_stream(server, 4, Samples())
    await model.complete([ChatMessage.user("hi")], settings=ModelSettings(max_tokens=4))
    for rep in range(args.reps):
        print(f"rep {rep + 1}/{args.reps}", file=sys.stderr, flush=True)
        # Alternate who goes first: this machine's background load drifts between runs.
        if rep % 2 == 0:
            direct_stream(server, args.max_tokens, direct)
            await embedded_stream(model, embedded)
            direct_total(server, args.max_tokens, direct)
            await embedded_total(model, args.max_tokens, embedded)
        else:
            await embedded_stream(model, embedded)
            direct_stream(server, args.max_tokens, direct)
            await embedded_total(model, args.max_tokens, embedded)
            direct_total(server, args.max_tokens, direct)

    await model.aclose()
    del server
    gc.collect()

    assert direct.prompt_tokens == embedded.prompt_tokens, "the two paths saw different prompts"
    print(
        f"\nModel `{path.name}`, n_ctx {args.n_ctx}, {args.threads} thread(s), "
        f"prompt {direct.prompt_tokens} tokens, {args.max_tokens} generated tokens, "
        f"{args.reps} repetitions.\n"
    )
    print("| metric (best / median) | xllamacpp direct | EmbeddedModel | ratio |")
    print("|---|---|---|---|")
    print(_row("prompt tokens/s (wall)", direct.prompt_tps, embedded.prompt_tps, "{:.1f}".format))
    print(_row("generation tokens/s (wall)", direct.gen_tps, embedded.gen_tps, "{:.1f}".format))
    print(
        _row(
            "non-streaming call, s",
            direct.total_s,
            embedded.total_s,
            "{:.2f}".format,
            lower_is_better=True,
        )
    )
    print(
        _row(
            "llama.cpp prompt tokens/s",
            direct.llama_prompt_tps,
            embedded.llama_prompt_tps,
            "{:.1f}".format,
        )
    )
    print(
        _row(
            "llama.cpp generation tokens/s",
            direct.llama_gen_tps,
            embedded.llama_gen_tps,
            "{:.1f}".format,
        )
    )
    print(
        _row(
            "streaming: time outside llama.cpp per call, ms",
            direct.overhead_ms,
            embedded.overhead_ms,
            "{:.1f}".format,
            lower_is_better=True,
        ).rsplit("|", 2)[0]
        + "| (lower is better) |"
    )
    print(
        _row(
            "non-streaming: time outside llama.cpp per call, ms",
            direct.total_overhead_ms,
            embedded.total_overhead_ms,
            "{:.1f}".format,
            lower_is_better=True,
        ).rsplit("|", 2)[0]
        + "| (lower is better) |"
    )
    print(
        _row(
            "streaming: share of wall time inside llama.cpp",
            direct.inside_share,
            embedded.inside_share,
            "{:.5f}".format,
        )
    )
    print(
        f"| model load, s | {direct_load:.2f} | {embedded_load:.2f} "
        f"| {direct_load / embedded_load:.3f} |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(sys.argv[1:])))
