"""EmbeddedModel with real weights: the Qwen2.5-Coder model (assembled once per session into
OCTOPUSSY_MODEL_CACHE and loaded once per module) and SmolLM2-135M for fast plumbing."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from octopussy.errors import ConfigError
from octopussy.llm import weights
from octopussy.llm.base import ChatMessage, ModelSettings, ToolSpec
from octopussy.llm.embedded import EmbeddedModel

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

READ = ToolSpec(
    "read_file",
    "Read a text file from the workspace.",
    {
        "type": "object",
        "properties": {"path": {"type": "string", "description": "relative path"}},
        "required": ["path"],
    },
)
WRITE = ToolSpec(
    "write_file",
    "Write text into a file in the workspace.",
    {
        "type": "object",
        "properties": {
            "path": {"type": "string", "description": "relative path"},
            "content": {"type": "string", "description": "the text to write"},
        },
        "required": ["path", "content"],
    },
)


def _need_xllamacpp() -> None:
    try:
        import xllamacpp  # noqa: F401
    except ImportError:
        pytest.skip("xllamacpp is not installed (pip install 'octopussy-light[embedded]')")


@pytest.fixture(scope="session")
def qwen_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The assembled embedded model, shared by every test of the session."""
    _need_xllamacpp()
    # tests/conftest.py sets this per test; session fixtures may run first, so mirror it.
    cache = os.environ.get("OCTOPUSSY_MODEL_CACHE") or str(
        tmp_path_factory.getbasetemp() / "models"
    )
    try:
        return weights.ensure_embedded_gguf(cache)
    except ConfigError as exc:
        pytest.skip(f"embedded weights unavailable: {exc}")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def qwen(qwen_gguf: Path) -> AsyncIterator[EmbeddedModel]:
    model = EmbeddedModel(model_path=qwen_gguf, n_ctx=4096, max_tokens=128, name="embedded:qwen")
    await model.start()
    yield model
    await model.aclose()


SYSTEM = ChatMessage.system("You are a helpful assistant working in a project folder.")


async def test_answers_a_chat_message(qwen: EmbeddedModel) -> None:
    assert qwen.load_seconds is not None
    response = await qwen.complete(
        [SYSTEM, ChatMessage.user("What is the capital of France? One word.")]
    )
    assert "paris" in response.text.lower()
    assert response.usage.input_tokens > 0
    assert response.usage.output_tokens > 0


async def test_makes_a_constrained_tool_call(qwen: EmbeddedModel) -> None:
    response = await qwen.complete(
        [SYSTEM, ChatMessage.user("Write 'hi' into hello.txt")], tools=[READ, WRITE]
    )
    assert [call.name for call in response.tool_calls] == ["write_file"]
    arguments = response.tool_calls[0].arguments
    assert arguments["path"].endswith("hello.txt")
    assert "hi" in arguments["content"].lower()


async def test_streams_deltas(qwen: EmbeddedModel) -> None:
    deltas: list[str] = []
    done = None
    async for event in qwen.stream(
        [SYSTEM, ChatMessage.user("Count from 1 to 5, separated by spaces.")],
        settings=ModelSettings(max_tokens=30),
    ):
        if event.kind == "delta":
            deltas.append(event.text)
        else:
            done = event.response
    assert len(deltas) >= 3
    assert done is not None
    assert done.text == "".join(deltas)
    assert "3" in done.text


async def test_output_schema_gives_parsed_data(qwen: EmbeddedModel) -> None:
    schema = {
        "type": "object",
        "properties": {
            "route": {"enum": ["chat", "create_task", "create_tool"]},
        },
        "required": ["route"],
    }
    response = await qwen.complete(
        [
            ChatMessage.system(
                "Route the user's message: chat (talk or questions), create_task (work to do "
                "with files or tools), create_tool (a new reusable tool)."
            ),
            ChatMessage.user("Hi! How are you today?"),
        ],
        output_schema=schema,
    )
    assert response.data == {"route": "chat"}


async def test_cancelling_a_real_generation_stops_it_quickly() -> None:
    _need_xllamacpp()
    try:
        path = weights.find_smollm2_gguf()
    except ConfigError as exc:
        pytest.skip(str(exc))
    model = EmbeddedModel(model_path=path, n_ctx=1024, max_tokens=2000, temperature=0.8)
    try:
        first = asyncio.Event()

        async def consume() -> None:
            async for event in model.stream([ChatMessage.user("Write a very long story.")]):
                if event.kind == "delta":
                    first.set()

        task = asyncio.create_task(consume())
        async with asyncio.timeout(60):
            await first.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        started = time.perf_counter()
        async with asyncio.timeout(60):
            response = await model.complete(
                [ChatMessage.user("Say hi.")], settings=ModelSettings(max_tokens=8)
            )
        assert response.text
        # The 2000-token story did not run on: the next call got the model in about the
        # time of its own 8 tokens.
        assert time.perf_counter() - started < 10
    finally:
        await model.aclose()
