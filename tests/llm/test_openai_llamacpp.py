"""OpenAIModel against a real llama.cpp server (xllamacpp in a child process, SmolLM2-135M)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from octopussy.errors import BackendUnavailable, ConfigError
from octopussy.llm import weights
from octopussy.llm.base import ChatMessage, ModelSettings, ToolSpec
from octopussy.llm.openai import OpenAIModel

pytestmark = pytest.mark.integration

HELPER = Path(__file__).with_name("llama_server.py")
START_TIMEOUT = 60.0


def _smollm2() -> Path:
    try:
        import xllamacpp  # noqa: F401
    except ImportError:
        pytest.skip("xllamacpp is not installed (pip install 'octopussy-light[embedded]')")
    try:
        return weights.find_smollm2_gguf()
    except ConfigError as exc:
        pytest.skip(str(exc))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass
class LlamaServer:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def kill(self) -> None:
        if self.process.poll() is None:
            # SIGKILL: the in-process HTTP server ignores SIGTERM.
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


def start_llama_server(model: Path, log: Path) -> LlamaServer:
    port = _free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(HELPER), str(model), str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = LlamaServer(process, port, log)
    deadline = time.monotonic() + START_TIMEOUT
    health = f"http://127.0.0.1:{port}/health"
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"llama server exited early: {log.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(health, timeout=2) as reply:
                if json.loads(reply.read()).get("status") == "ok":
                    return server
        except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
            pass  # not listening yet (refused) or still loading (503)
        if time.monotonic() > deadline:
            server.kill()
            raise TimeoutError(f"llama server not healthy after {START_TIMEOUT:g}s")
        time.sleep(0.1)  # a poll interval inside a bounded wait, not a fixed delay


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    model = _smollm2()
    server = start_llama_server(model, tmp_path_factory.mktemp("llama") / "server.log")
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
async def model(llama_server: LlamaServer) -> AsyncIterator[OpenAIModel]:
    instance = OpenAIModel(
        model="smollm2", base_url=llama_server.url, max_tokens=32, temperature=0.0, timeout=60
    )
    yield instance
    await instance.aclose()


HELLO = [ChatMessage.user("Say hello in one short sentence.")]


async def test_plain_completion(model: OpenAIModel) -> None:
    response = await model.complete(HELLO)
    assert response.text.strip()
    assert response.usage.input_tokens > 0
    assert response.usage.output_tokens > 0
    assert response.usage.requests == 1


async def test_streaming(model: OpenAIModel) -> None:
    deltas: list[str] = []
    done = None
    async for event in model.stream(HELLO):
        if event.kind == "delta":
            deltas.append(event.text)
        else:
            done = event.response
    assert len(deltas) >= 2
    assert done is not None
    assert done.text == "".join(deltas)
    assert done.usage.output_tokens > 0  # stream_options include_usage is honoured


async def test_output_schema_json(model: OpenAIModel) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 40}},
        "required": ["city"],
    }
    response = await model.complete(
        [ChatMessage.user("What is the capital of France? Answer in JSON.")],
        output_schema=schema,
        settings=ModelSettings(max_tokens=60),
    )
    assert isinstance(response.data, dict)
    assert isinstance(response.data["city"], str)


async def test_json_tool_mode_is_constrained(llama_server: LlamaServer) -> None:
    model = OpenAIModel(
        model="smollm2", base_url=llama_server.url, tool_mode="json", max_tokens=120, timeout=60
    )
    tool = ToolSpec(
        "write_file",
        "Write text into a file.",
        {
            "type": "object",
            "properties": {
                "path": {"type": "string", "maxLength": 40},
                "content": {"type": "string", "maxLength": 40},
            },
            "required": ["path", "content"],
        },
    )
    try:
        response = await model.complete(
            [ChatMessage.user("Write 'hi' into hello.txt")], tools=[tool]
        )
    finally:
        await model.aclose()
    # A 135M model may pick either; constrained decoding guarantees one usable shape.
    assert response.text or [c.name for c in response.tool_calls] == ["write_file"]


async def test_killed_server_is_reported_with_its_url(tmp_path: Path) -> None:
    server = start_llama_server(_smollm2(), tmp_path / "server.log")
    model = OpenAIModel(model="smollm2", base_url=server.url, max_tokens=8, max_retries=0)
    try:
        assert (await model.complete(HELLO)).text
        server.kill()
        with pytest.raises(BackendUnavailable) as caught:
            await model.complete(HELLO)
    finally:
        server.kill()
        await model.aclose()
    assert server.url in str(caught.value)
    assert caught.value.url == server.url
