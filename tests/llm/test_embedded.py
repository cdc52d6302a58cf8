"""EmbeddedModel plumbing against a fake llama.cpp server object (no weights needed).

The fake stands in for ``xllamacpp.Server``: ``handle_chat_completions(request, callback)``
runs in the model's worker thread and calls ``callback(chunk)`` per chunk, stopping when
the callback returns True, exactly like the real one.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from octopussy.errors import (
    BackendUnavailable,
    ConfigError,
    LimitExceeded,
    ModelBehaviorError,
    OctopussyError,
)
from octopussy.llm.base import ChatMessage, ModelSettings, StreamEvent, ToolSpec
from octopussy.llm.embedded import EmbeddedModel, default_threads

HELLO = [ChatMessage.user("hello")]
WRITE = ToolSpec(
    "write_file",
    "Write text into a file.",
    {
        "type": "object",
        "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
        "required": ["path", "content"],
    },
)


def _chunk(content: str | None = None, finish: str | None = None) -> dict[str, Any]:
    delta = {} if content is None else {"content": content}
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def _usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "choices": [],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion},
        "timings": {"predicted_per_second": 10.0},
    }


class FakeServer:
    """Streams ``pieces`` one chunk at a time; records requests and overlap."""

    def __init__(
        self,
        pieces: Sequence[str] | Callable[[dict[str, Any]], list[str]] = ("Hi", " there"),
        *,
        endless: bool = False,
        gate: threading.Event | None = None,
        error: BaseException | dict[str, Any] | None = None,
    ) -> None:
        self.pieces = pieces
        self.endless = endless
        self.gate = gate  # when set: block (like a long prompt) until the gate opens
        self.error = error
        self.requests: list[dict[str, Any]] = []
        self.started = threading.Event()
        self.stopped_by_callback = threading.Event()
        self.finished = threading.Event()
        self.running = 0
        self.max_running = 0
        self._lock = threading.Lock()

    def handle_chat_completions(
        self, request: dict[str, Any], callback: Callable[[dict[str, Any]], bool]
    ) -> None:
        with self._lock:
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        self.finished.clear()
        try:
            self._generate(request, callback)
        finally:
            with self._lock:
                self.running -= 1
            self.finished.set()

    def _generate(
        self, request: dict[str, Any], callback: Callable[[dict[str, Any]], bool]
    ) -> None:
        self.requests.append(request)
        self.started.set()
        assert request["stream"] is True
        if self.gate is not None:
            assert self.gate.wait(10), "test gate never opened"
        if isinstance(self.error, BaseException):
            raise self.error
        if self.error is not None:
            callback({"error": self.error})
            return
        pieces = self.pieces(request) if callable(self.pieces) else list(self.pieces)
        count = 0
        while True:
            for piece in pieces:
                count += 1
                if callback(_chunk(piece)):
                    self.stopped_by_callback.set()
                    return
            if not self.endless:
                break
            # An endless generator only ends when the consumer says stop: bound it anyway.
            assert count < 100_000, "generation was never stopped"
        callback(_chunk(None, "stop"))
        callback(_usage(12, count))


def make(server: FakeServer, **kwargs: Any) -> EmbeddedModel:
    model = EmbeddedModel(model_path="/nonexistent/fake.gguf", **kwargs)
    model._server = server  # skip loading: the fake stands in for xllamacpp.Server
    return model


async def collect(model: EmbeddedModel, **kwargs: Any) -> list[StreamEvent]:
    return [event async for event in model.stream(HELLO, **kwargs)]


def test_constructor_validation_and_defaults() -> None:
    with pytest.raises(ConfigError, match="model_path or a cache_dir"):
        EmbeddedModel()
    with pytest.raises(ConfigError, match="threads"):
        EmbeddedModel(cache_dir="/tmp/x", threads=0)
    model = EmbeddedModel(cache_dir="/tmp/x", temperature=None, max_tokens=None)
    assert model.name == "embedded:qwen2.5-coder-1.5b"
    assert model.defaults.temperature == 0.0
    assert model.defaults.max_tokens == 1024
    assert model.n_ctx == 4096
    assert model.threads == default_threads() >= 1
    assert EmbeddedModel(model_path="/m/tiny.gguf").name == "embedded:tiny"


async def test_complete_assembles_stream_and_usage() -> None:
    server = FakeServer(["Hel", "lo", "!"])
    model = make(server, temperature=0.5, max_tokens=64, request_options={"top_k": 5})
    response = await model.complete(HELLO, settings=ModelSettings(max_tokens=32))
    assert response.text == "Hello!"
    assert response.finish_reason == "stop"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (12, 3)
    assert response.usage.requests == 1
    assert response.usage.seconds > 0
    assert model.last_timings == {"predicted_per_second": 10.0}
    request = server.requests[0]
    assert request["messages"] == [{"role": "user", "content": "hello"}]
    assert (request["temperature"], request["max_tokens"], request["top_k"]) == (0.5, 32, 5)
    assert request["stream_options"] == {"include_usage": True}
    assert "response_format" not in request


async def test_stream_yields_deltas_then_done() -> None:
    model = make(FakeServer(["a", "b", "c"]))
    events = await collect(model)
    assert [(e.kind, e.text) for e in events[:-1]] == [
        ("delta", "a"),
        ("delta", "b"),
        ("delta", "c"),
    ]
    assert events[-1].kind == "done"
    assert events[-1].response is not None
    assert events[-1].response.text == "abc"


async def test_tools_use_constrained_json() -> None:
    reply = json.dumps({"tool": "write_file", "arguments": {"path": "hello.txt", "content": "hi"}})
    server = FakeServer([reply[:10], reply[10:]])
    model = make(server)
    response = await model.complete(
        [ChatMessage.system("You help."), ChatMessage.user("Write 'hi' into hello.txt")],
        tools=[WRITE],
    )
    assert [(c.name, c.arguments) for c in response.tool_calls] == [
        ("write_file", {"path": "hello.txt", "content": "hi"})
    ]
    request = server.requests[0]
    assert "tools" not in request  # the tools parameter yields no tool calls on this model
    schema = request["response_format"]["json_schema"]["schema"]
    assert request["response_format"]["type"] == "json_schema"
    assert [o["properties"]["tool"]["const"] for o in schema["anyOf"]] == [
        "final_answer",
        "write_file",
    ]
    system = request["messages"][0]
    assert system["role"] == "system"
    assert system["content"].startswith("You help.")
    assert "write_file(path: string, content: string)" in system["content"]


async def test_tools_final_answer_streams_while_generated() -> None:
    reply = json.dumps({"tool": "final_answer", "arguments": {"answer": 'Rome\nis "old"'}})
    model = make(FakeServer([reply[i : i + 7] for i in range(0, len(reply), 7)]))
    events = await collect(model, tools=[WRITE])
    deltas = [e.text for e in events[:-1]]
    assert len(deltas) > 1  # shown piece by piece, not at the end
    assert "".join(deltas) == 'Rome\nis "old"'
    assert events[-1].response is not None
    assert events[-1].response.text == 'Rome\nis "old"'


async def test_tools_call_streams_no_text() -> None:
    reply = json.dumps({"tool": "write_file", "arguments": {"path": "a.txt", "content": "x"}})
    model = make(FakeServer([reply[:5], reply[5:]]))
    events = await collect(model, tools=[WRITE])
    assert [e.kind for e in events] == ["done"]
    assert events[-1].response is not None
    assert [c.name for c in events[-1].response.tool_calls] == ["write_file"]


async def test_output_schema_gives_data() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    server = FakeServer(['{"n": ', "4}"])
    model = make(server)
    response = await model.complete(HELLO, output_schema=schema)
    assert response.data == {"n": 4}
    assert server.requests[0]["response_format"]["json_schema"]["schema"] == schema


async def test_truncated_json_names_max_tokens() -> None:
    server = FakeServer()

    def cut(request: dict[str, Any], callback: Callable[[dict[str, Any]], bool]) -> None:
        callback(_chunk('{"tool": "write_file", "argu'))
        callback(_chunk(None, "length"))

    server._generate = cut  # type: ignore[method-assign]
    model = make(server, max_tokens=8)
    with pytest.raises(ModelBehaviorError, match="cut off at max_tokens=8"):
        await model.complete(HELLO, tools=[WRITE])


async def test_empty_reply_is_model_behavior_error() -> None:
    with pytest.raises(ModelBehaviorError, match="empty"):
        await make(FakeServer([])).complete(HELLO)


async def test_error_dict_and_exceptions_are_translated() -> None:
    overflow = {
        "code": 400,
        "message": "request (5000 tokens) exceeds the available context size (4096 tokens)",
        "type": "exceed_context_size_error",
    }
    with pytest.raises(LimitExceeded, match="too long") as caught:
        await make(FakeServer(error=overflow)).complete(HELLO)
    assert "n_ctx" in (caught.value.hint or "")
    with pytest.raises(OctopussyError, match=r"llama\.cpp failed: kaput"):
        await make(FakeServer(error={"message": "kaput", "type": "server_error"})).complete(HELLO)
    bad = ValueError("Unable to generate parser\nJSON schema error at #: unrecognized type")
    with pytest.raises(OctopussyError, match="rejected the request") as caught_value:
        await make(FakeServer(error=bad)).complete(HELLO)
    assert "\n" not in str(caught_value.value)


async def test_generations_are_serialised() -> None:
    server = FakeServer(["x"] * 50)
    model = make(server)
    results = await asyncio.gather(*(model.complete(HELLO) for _ in range(4)))
    assert all(r.text == "x" * 50 for r in results)
    assert server.max_running == 1


async def test_cancel_stops_generation_and_holds_lock_until_thread_ends() -> None:
    server = FakeServer(["tok "], endless=True)
    model = make(server)
    first_delta = asyncio.Event()

    async def consume() -> None:
        async for event in model.stream(HELLO):
            if event.kind == "delta":
                first_delta.set()

    task = asyncio.create_task(consume())
    async with asyncio.timeout(10):
        await first_delta.wait()
    task.cancel()
    async with asyncio.timeout(10):
        with pytest.raises(asyncio.CancelledError):
            await task
    # llama.cpp was told to stop through the callback...
    assert await asyncio.to_thread(server.stopped_by_callback.wait, 10)
    # ...and the next call runs cleanly, never overlapping the stopped one.
    server.endless = False
    server.pieces = ["ok"]
    async with asyncio.timeout(10):
        response = await model.complete(HELLO)
    assert response.text == "ok"
    assert server.max_running == 1


async def test_cancel_during_prompt_returns_at_once_and_next_call_waits() -> None:
    gate = threading.Event()  # closed: the fake is "reading a long prompt"
    server = FakeServer(["late"], gate=gate)
    model = make(server)
    first = asyncio.create_task(model.complete(HELLO))
    assert await asyncio.to_thread(server.started.wait, 10)  # the worker thread is running
    first.cancel()
    async with asyncio.timeout(2):  # the caller is not held up by the running prompt
        with pytest.raises(asyncio.CancelledError):
            await first
    assert model._generation_lock.locked()  # held until the first thread has returned
    second = asyncio.create_task(model.complete(HELLO))
    for _ in range(5):
        await asyncio.sleep(0)  # let the second call run up to the lock
    assert len(server.requests) == 1  # the second call waits for the first thread
    assert not second.done()
    gate.set()
    async with asyncio.timeout(10):
        response = await second
    assert response.text == "late"
    assert server.stopped_by_callback.is_set()  # the first generation stopped at its first token
    assert server.max_running == 1
    await model.aclose()


async def test_timeout_setting() -> None:
    server = FakeServer(["tok"], endless=True)
    model = make(server)
    with pytest.raises(BackendUnavailable, match=r"did not finish within 0\.1s"):
        await model.complete(HELLO, settings=ModelSettings(timeout=0.1))
    assert await asyncio.to_thread(server.stopped_by_callback.wait, 10)
    await model.aclose()


async def test_concurrent_first_calls_load_once(monkeypatch: pytest.MonkeyPatch) -> None:
    server = FakeServer(["hi"])
    loads: list[int] = []
    loading = threading.Event()
    release = threading.Event()

    def fake_load(self: EmbeddedModel) -> FakeServer:
        loads.append(1)
        loading.set()
        assert release.wait(10)
        return server

    monkeypatch.setattr(EmbeddedModel, "_load", fake_load)
    model = EmbeddedModel(model_path="/nonexistent/fake.gguf")
    calls = [asyncio.create_task(model.complete(HELLO)) for _ in range(3)]
    starter = asyncio.create_task(model.start())
    assert await asyncio.to_thread(loading.wait, 10)
    release.set()
    async with asyncio.timeout(10):
        results = await asyncio.gather(*calls, starter)
    assert loads == [1]
    assert [r.text for r in results[:3]] == ["hi", "hi", "hi"]


async def test_cancelled_first_call_does_not_abandon_the_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = FakeServer(["hi"])
    loads: list[int] = []
    loading = threading.Event()
    release = threading.Event()

    def fake_load(self: EmbeddedModel) -> FakeServer:
        loads.append(1)
        loading.set()
        assert release.wait(10)
        return server

    monkeypatch.setattr(EmbeddedModel, "_load", fake_load)
    model = EmbeddedModel(model_path="/nonexistent/fake.gguf")
    first = asyncio.create_task(model.complete(HELLO))
    assert await asyncio.to_thread(loading.wait, 10)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    second = asyncio.create_task(model.complete(HELLO))
    release.set()
    async with asyncio.timeout(10):
        assert (await second).text == "hi"
    assert loads == [1]


async def test_missing_model_file_is_config_error() -> None:
    pytest.importorskip("xllamacpp")
    model = EmbeddedModel(model_path="/nonexistent/model.gguf")
    with pytest.raises(ConfigError, match="model file not found"):
        await model.start()
    await model.aclose()


async def test_aclose_releases_the_server_and_refuses_new_calls() -> None:
    model = make(FakeServer(["x"]))
    assert (await model.complete(HELLO)).text == "x"
    await model.aclose()
    assert model._server is None
    with pytest.raises(OctopussyError, match="closed"):
        await model.complete(HELLO)


async def test_prefer_tools_lists_the_answer_option_last() -> None:
    reply = json.dumps({"tool": "final_answer", "arguments": {"answer": "ok"}})
    server = FakeServer([reply])
    model = make(server)
    await model.complete(HELLO, tools=[WRITE], settings=ModelSettings(prefer_tools=True))
    request = server.requests[0]
    schema = request["response_format"]["json_schema"]["schema"]
    assert [o["properties"]["tool"]["const"] for o in schema["anyOf"]] == [
        "write_file",
        "final_answer",
    ]
    system = request["messages"][0]["content"]
    assert system.index("- write_file(") < system.index("- final_answer(")
