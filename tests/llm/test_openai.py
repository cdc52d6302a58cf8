"""OpenAIModel against a fake OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from octopussy.errors import BackendUnavailable, ConfigError, LimitExceeded, ModelBehaviorError
from octopussy.llm.base import ChatMessage, ModelSettings, StreamEvent, ToolCall, ToolSpec
from octopussy.llm.openai import OpenAIModel, normalize_base_url

from .fake_openai import (
    FakeOpenAI,
    Reply,
    Request,
    chunk,
    completion,
    error,
    scripted,
    tool_call,
    usage_chunk,
)

READ = ToolSpec(
    "read_file",
    "Read a text file.",
    {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
)
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
HELLO = [ChatMessage.system("Be brief."), ChatMessage.user("hello")]
FAST_RETRY = {"retry-after-ms": "1"}  # the SDK honours it: retries without slow backoff


def make(server: FakeOpenAI, **kwargs: Any) -> OpenAIModel:
    options: dict[str, Any] = {"model": "m1", "base_url": server.url, "max_retries": 2}
    options.update(kwargs)
    return OpenAIModel(**options)


@pytest.fixture
async def model_factory() -> AsyncIterator[list[OpenAIModel]]:
    made: list[OpenAIModel] = []
    yield made
    for model in made:
        await model.aclose()


async def collect(stream: AsyncIterator[StreamEvent]) -> list[StreamEvent]:
    return [event async for event in stream]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # closed: nothing listens there


def test_base_url_normalisation() -> None:
    assert normalize_base_url("http://localhost:11434", "ollama") == "http://localhost:11434/v1"
    assert normalize_base_url("http://localhost:11434/v1/", "ollama") == (
        "http://localhost:11434/v1"
    )
    assert normalize_base_url(None, "ollama") == "http://localhost:11434/v1"
    assert normalize_base_url("", "openai") == "https://api.openai.com/v1"
    assert normalize_base_url("http://h:8080", "openai") == "http://h:8080"
    model = OpenAIModel(model="llama3.2", provider="ollama", base_url="http://127.0.0.1:11434")
    assert model.base_url == "http://127.0.0.1:11434/v1"
    assert model.name == "ollama:llama3.2"


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="tool_mode"):
        OpenAIModel(model="m", tool_mode="magic")  # type: ignore[arg-type]


async def test_plain_completion_sends_settings_and_records_usage() -> None:
    async with FakeOpenAI(scripted(completion("Hi there."))) as server:
        model = make(server, temperature=0.3, max_tokens=50, api_key="sk-test")
        response = await model.complete(HELLO, settings=ModelSettings(max_tokens=20))
        await model.aclose()
    assert response.text == "Hi there."
    assert response.tool_calls == []
    assert response.model == "fake-model"
    assert response.finish_reason == "stop"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (11, 7)
    assert response.usage.requests == 1
    assert response.usage.seconds > 0
    request = server.requests[0]
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.body["model"] == "m1"
    assert request.body["temperature"] == 0.3
    assert request.body["max_tokens"] == 20
    assert request.body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hello"},
    ]
    assert "tools" not in request.body


async def test_retries_on_500_and_429_then_succeeds() -> None:
    handler = scripted(
        error(500, "boom", **FAST_RETRY), error(429, "slow down", **FAST_RETRY), completion("ok")
    )
    async with FakeOpenAI(handler) as server:
        model = make(server, max_retries=2)
        response = await model.complete(HELLO)
        await model.aclose()
    assert response.text == "ok"
    assert len(server.requests) == 3


async def test_retries_are_bounded() -> None:
    async with FakeOpenAI(scripted(error(503, "overloaded", **FAST_RETRY))) as server:
        model = make(server, max_retries=1)
        with pytest.raises(BackendUnavailable, match="HTTP 503") as caught:
            await model.complete(HELLO)
        await model.aclose()
    assert len(server.requests) == 2
    assert server.url in str(caught.value)
    assert "overloaded" in str(caught.value)


async def test_rate_limit_exhausted() -> None:
    async with FakeOpenAI(scripted(error(429, "quota", **FAST_RETRY))) as server:
        model = make(server, max_retries=0)
        with pytest.raises(BackendUnavailable, match="429"):
            await model.complete(HELLO)
        await model.aclose()


async def test_401_names_the_api_key() -> None:
    async with FakeOpenAI(scripted(error(401, "Incorrect API key provided"))) as server:
        model = make(server)
        with pytest.raises(BackendUnavailable) as caught:
            await model.complete(HELLO)
        await model.aclose()
    message = str(caught.value)
    assert "refused the API key (HTTP 401)" in message
    assert "api_key" in (caught.value.hint or "")
    assert len(server.requests) == 1  # never retried
    assert "\n" not in message


async def test_404_model_not_found_hints_ollama_pull() -> None:
    handler = scripted(error(404, 'model "llama9" not found, try pulling it first'))
    async with FakeOpenAI(handler) as server:
        model = OpenAIModel(model="llama9", base_url=server.url, provider="ollama")
        with pytest.raises(BackendUnavailable, match="model 'llama9' not found") as caught:
            await model.complete(HELLO)
        await model.aclose()
    assert caught.value.hint == "try `ollama pull llama9`, or check the model name"


async def test_404_for_other_endpoints_hints_model_name() -> None:
    async with FakeOpenAI(scripted(error(404, "The model `gpt-9` does not exist"))) as server:
        model = make(server)
        with pytest.raises(BackendUnavailable) as caught:
            await model.complete(HELLO)
        await model.aclose()
    assert "check the model name" in (caught.value.hint or "")


async def test_connection_refused_names_url_with_ollama_hint() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    model = OpenAIModel(model="llama3.2", base_url=url, provider="ollama", max_retries=0)
    with pytest.raises(BackendUnavailable) as caught:
        await model.complete(HELLO)
    await model.aclose()
    error_ = caught.value
    assert f"{url}/v1" in str(error_)
    assert error_.url == f"{url}/v1"
    assert "connection refused" in str(error_)
    assert error_.hint == "is Ollama running? try `ollama serve`"


async def test_connection_refused_generic_hint() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    model = OpenAIModel(model="x", base_url=url, max_retries=0)
    with pytest.raises(BackendUnavailable, match="cannot reach model endpoint") as caught:
        await model.complete(HELLO)
    await model.aclose()
    assert "base_url" in (caught.value.hint or "")


async def test_timeout_is_backend_unavailable() -> None:
    never = asyncio.Event()

    async def hang(_request: Request) -> Reply:
        await never.wait()
        return completion("late")

    async with FakeOpenAI(hang) as server:
        model = make(server, timeout=0.2, max_retries=0)
        with pytest.raises(BackendUnavailable, match=r"did not answer within 0\.2s"):
            await model.complete(HELLO)
        await model.aclose()


async def test_cancellation_propagates() -> None:
    arrived = asyncio.Event()

    async def hang(_request: Request) -> Reply:
        arrived.set()
        await asyncio.Event().wait()
        return completion("never")

    async with FakeOpenAI(hang) as server:
        model = make(server)
        task = asyncio.create_task(model.complete(HELLO))
        async with asyncio.timeout(5):
            await arrived.wait()
        task.cancel()
        async with asyncio.timeout(5):
            with pytest.raises(asyncio.CancelledError):
                await task
        await model.aclose()


async def test_empty_content_is_model_behavior_error() -> None:
    async with FakeOpenAI(scripted(completion(""))) as server:
        model = make(server)
        with pytest.raises(ModelBehaviorError, match="empty reply"):
            await model.complete(HELLO)
        await model.aclose()


async def test_non_api_body_is_reported() -> None:
    async with FakeOpenAI(scripted(Reply(raw=b"<html>hello</html>"))) as server:
        model = make(server)
        with pytest.raises(BackendUnavailable, match="did not answer like an OpenAI"):
            await model.complete(HELLO)
        await model.aclose()


async def test_context_overflow_is_limit_exceeded() -> None:
    message = "This model's maximum context length is 8192 tokens"
    async with FakeOpenAI(scripted(error(400, message))) as server:
        model = make(server)
        with pytest.raises(LimitExceeded, match="too long"):
            await model.complete(HELLO)
        await model.aclose()


async def test_other_400_is_config_error() -> None:
    async with FakeOpenAI(scripted(error(400, "temperature must be <= 2"))) as server:
        model = make(server)
        with pytest.raises(ConfigError, match="HTTP 400"):
            await model.complete(HELLO)
        await model.aclose()


# ---------------------------------------------------------------------------- tools


async def test_native_tool_calls_are_parsed() -> None:
    reply = completion(None, tool_calls=[tool_call("read_file", '{"path": "a.txt"}', "call_9")])
    async with FakeOpenAI(scripted(reply)) as server:
        model = make(server)
        history = [
            ChatMessage.user("read b"),
            ChatMessage.assistant("", [ToolCall("read_file", {"path": "b"}, id="call_1")]),
            ChatMessage.tool_result(ToolCall("read_file", {"path": "b"}, id="call_1"), "B!"),
            ChatMessage.user("now read a.txt"),
        ]
        response = await model.complete(history, tools=[READ])
        await model.aclose()
    assert response.tool_calls == [ToolCall("read_file", {"path": "a.txt"}, id="call_9")]
    body = server.requests[0].body
    assert body["tools"][0]["function"]["name"] == "read_file"
    assert body["tools"][0]["function"]["parameters"] == READ.parameters
    assert body["messages"][1]["tool_calls"][0]["function"]["arguments"] == '{"path": "b"}'
    assert body["messages"][2] == {"role": "tool", "tool_call_id": "call_1", "content": "B!"}


async def test_native_bad_arguments_are_repaired_once() -> None:
    bad = completion(None, tool_calls=[tool_call("read_file", '{"path": "a.txt"')])
    good = completion(None, tool_calls=[tool_call("read_file", '{"path": "a.txt"}')])
    async with FakeOpenAI(scripted(bad, good)) as server:
        model = make(server)
        response = await model.complete(HELLO, tools=[READ])
        await model.aclose()
    assert response.tool_calls[0].arguments == {"path": "a.txt"}
    assert response.usage.requests == 2
    assert "not valid JSON" in server.requests[1].body["messages"][-1]["content"]


async def test_native_bad_arguments_twice_raise() -> None:
    bad = completion(None, tool_calls=[tool_call("read_file", "{nope")])
    async with FakeOpenAI(scripted(bad)) as server:
        model = make(server)
        with pytest.raises(ModelBehaviorError, match="not valid JSON") as caught:
            await model.complete(HELLO, tools=[READ])
        await model.aclose()
    assert caught.value.raw == "{nope"


async def test_rejected_tools_switch_to_json_mode_for_good() -> None:
    def handler(request: Request) -> Reply:
        if "tools" in request.body:
            return error(400, "registry.ollama.ai/library/gemma:2b does not support tools")
        return completion('```json\n{"tool": "read_file", "arguments": {"path": "x.md"}}\n```')

    async with FakeOpenAI(handler) as server:
        model = make(server)
        first = await model.complete(HELLO, tools=[READ])
        second = await model.complete(HELLO, tools=[READ])
        await model.aclose()
    assert [(c.name, c.arguments) for c in first.tool_calls] == [("read_file", {"path": "x.md"})]
    assert second.tool_calls[0].name == "read_file"
    assert ["tools" in r.body for r in server.requests] == [True, False, False]
    json_request = server.requests[1]
    assert "read_file(path: string)" in json_request.system_prompt
    assert json_request.system_prompt.startswith("Be brief.")
    schema = json_request.body["response_format"]["json_schema"]["schema"]
    assert [o["properties"]["tool"]["const"] for o in schema["anyOf"]] == [
        "final_answer",
        "read_file",
    ]
    assert not model.native_tools


async def test_json_mode_final_answer_and_repair() -> None:
    handler = scripted(
        completion("Sorry, I think the answer is Rome."),
        completion('{"tool": "final_answer", "arguments": {"answer": "Rome"}}'),
    )
    async with FakeOpenAI(handler) as server:
        model = make(server, tool_mode="json")
        response = await model.complete(HELLO, tools=[READ])
        await model.aclose()
    assert response.text == "Rome"
    assert response.tool_calls == []
    assert response.usage.requests == 2
    assert all("tools" not in r.body for r in server.requests)
    repair = server.requests[1].body["messages"]
    assert repair[-2] == {"role": "assistant", "content": "Sorry, I think the answer is Rome."}
    assert "not JSON" in repair[-1]["content"]


async def test_json_mode_garbage_twice_is_model_behavior_error() -> None:
    async with FakeOpenAI(scripted(completion("I'd rather not."))) as server:
        model = make(server, tool_mode="json")
        with pytest.raises(ModelBehaviorError, match="not JSON") as caught:
            await model.complete(HELLO, tools=[READ])
        await model.aclose()
    assert caught.value.raw == "I'd rather not."
    assert len(server.requests) == 2


async def test_json_mode_unknown_tool_is_repaired() -> None:
    handler = scripted(
        completion('{"tool": "rm_rf", "arguments": {}}'),
        completion('{"tool": "read_file", "arguments": {"path": "a"}}'),
    )
    async with FakeOpenAI(handler) as server:
        model = make(server, tool_mode="json")
        response = await model.complete(HELLO, tools=[READ])
        await model.aclose()
    assert response.tool_calls[0].name == "read_file"
    assert "unknown tool 'rm_rf'" in server.requests[1].body["messages"][-1]["content"]


async def test_native_mode_rejected_is_config_error() -> None:
    async with FakeOpenAI(scripted(error(400, "tools are not supported"))) as server:
        model = make(server, tool_mode="native")
        with pytest.raises(ConfigError, match="tool_mode: json"):
            await model.complete(HELLO, tools=[READ])
        await model.aclose()


# ---------------------------------------------------------------------------- output_schema


async def test_output_schema_uses_response_format() -> None:
    async with FakeOpenAI(scripted(completion('{"city": "Paris"}'))) as server:
        model = make(server)
        response = await model.complete(HELLO, output_schema=SCHEMA)
        await model.aclose()
    assert response.data == {"city": "Paris"}
    body = server.requests[0].body
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "reply", "schema": SCHEMA},
    }


async def test_output_schema_prompt_fallback_when_response_format_rejected() -> None:
    def handler(request: Request) -> Reply:
        if "response_format" in request.body:
            return error(400, "response_format json_schema is not supported")
        return completion('Here you go:\n{"city": "Lyon"}')

    async with FakeOpenAI(handler) as server:
        model = make(server)
        first = await model.complete(HELLO, output_schema=SCHEMA)
        second = await model.complete(HELLO, output_schema=SCHEMA)
        await model.aclose()
    assert first.data == second.data == {"city": "Lyon"}
    assert ["response_format" in r.body for r in server.requests] == [True, False, False]
    assert '"city"' in server.requests[1].system_prompt


async def test_output_schema_mismatch_repaired_then_raises() -> None:
    async with FakeOpenAI(scripted(completion('{"town": "Paris"}'))) as server:
        model = make(server)
        with pytest.raises(ModelBehaviorError, match="missing the required key 'city'"):
            await model.complete(HELLO, output_schema=SCHEMA)
        await model.aclose()
    assert len(server.requests) == 2


# ---------------------------------------------------------------------------- streaming


async def test_streaming_deltas_and_usage() -> None:
    events = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hel"}),
        chunk({"content": "lo"}),
        chunk({}, "stop"),
        usage_chunk(5, 2),
    ]
    async with FakeOpenAI(scripted(Reply(events=events))) as server:
        model = make(server)
        got = await collect(model.stream(HELLO))
        await model.aclose()
    assert [(e.kind, e.text) for e in got[:-1]] == [("delta", "Hel"), ("delta", "lo")]
    done = got[-1]
    assert done.kind == "done"
    assert done.response is not None
    assert done.response.text == "Hello"
    assert done.response.finish_reason == "stop"
    assert (done.response.usage.input_tokens, done.response.usage.output_tokens) == (5, 2)
    assert done.response.usage.requests == 1
    body = server.requests[0].body
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


async def test_streaming_without_stream_options_support() -> None:
    def handler(request: Request) -> Reply:
        if "stream_options" in request.body:
            return error(400, "Unrecognized request argument supplied: stream_options")
        return Reply(events=[chunk({"content": "ok"}, "stop")])

    async with FakeOpenAI(handler) as server:
        model = make(server)
        first = await collect(model.stream(HELLO))
        second = await collect(model.stream(HELLO))
        await model.aclose()
    assert first[0].text == second[0].text == "ok"
    assert ["stream_options" in r.body for r in server.requests] == [True, False, False]


async def test_streaming_native_tool_calls_accumulate() -> None:
    events = [
        chunk(
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_7",
                        "type": "function",
                        "function": {"name": "read_file", "arguments": ""},
                    }
                ],
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"path": '}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"a.txt"}'}}]}),
        chunk({}, "tool_calls"),
    ]
    async with FakeOpenAI(scripted(Reply(events=events))) as server:
        model = make(server)
        got = await collect(model.stream(HELLO, tools=[READ]))
        await model.aclose()
    assert [e.kind for e in got] == ["done"]
    assert got[0].response is not None
    assert got[0].response.tool_calls == [ToolCall("read_file", {"path": "a.txt"}, id="call_7")]


async def test_streaming_with_output_schema_arrives_whole() -> None:
    async with FakeOpenAI(scripted(completion('{"city": "Nice"}'))) as server:
        model = make(server)
        got = await collect(model.stream(HELLO, output_schema=SCHEMA))
        await model.aclose()
    assert got[-1].response is not None
    assert got[-1].response.data == {"city": "Nice"}


async def test_streaming_connection_refused() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    model = OpenAIModel(model="x", base_url=url, max_retries=0)
    with pytest.raises(BackendUnavailable, match="cannot reach"):
        await collect(model.stream(HELLO))
    await model.aclose()


async def test_streaming_mid_stream_error() -> None:
    events = [chunk({"content": "par"}), {"error": {"message": "slot crashed"}}]
    async with FakeOpenAI(scripted(Reply(events=events))) as server:
        model = make(server)
        with pytest.raises(Exception, match="slot crashed"):
            await collect(model.stream(HELLO))
        await model.aclose()


def test_tool_call_json_roundtrip_helper() -> None:
    # The fake server's helper produces what the SDK parses; guard against typos in it.
    assert json.loads(tool_call("a", "{}")["function"]["arguments"]) == {}


async def test_streaming_with_rejected_tools_falls_back_to_json_mode() -> None:
    def handler(request: Request) -> Reply:
        if "tools" in request.body:
            return error(400, "this model does not support tools")
        return completion('{"tool": "final_answer", "arguments": {"answer": "Hi!"}}')

    async with FakeOpenAI(handler) as server:
        model = make(server)
        got = await collect(model.stream(HELLO, tools=[READ]))
        await model.aclose()
    assert [(e.kind, e.text) for e in got[:-1]] == [("delta", "Hi!")]
    assert got[-1].response is not None
    assert got[-1].response.text == "Hi!"
    assert not model.native_tools
