"""The real embedded model writes a Celsius→Fahrenheit tool, exactly as `octopussy chat` asks
for it (coordinator routing → tool agent → checks → sandbox → deployed), and it is called."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from octopussy.bus.messages import Message, MessageType
from octopussy.config import load_config
from octopussy.runtime import Runtime

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed"),
]


class Collect:
    def __init__(self) -> None:
        self.report: Message | None = None
        self.done = asyncio.Event()

    async def show(self, message: Message) -> None:
        if message.type is MessageType.AGENT_NOTIFICATION and message.sender == "tool_agent":
            self.report = message
            self.done.set()


async def test_the_embedded_model_writes_a_working_conversion_tool(tmp_path: Path) -> None:
    pytest.importorskip("xllamacpp", reason="the `embedded` extra is not installed")
    workspace = tmp_path / "ws"
    workspace.mkdir()
    config = f"workspace: {workspace}\nllm:\n  temperature: 0\nmemory:\n  enabled: false\n"
    (tmp_path / "config.yaml").write_text(config)
    loaded = load_config(None, cwd=tmp_path)
    presenter = Collect()
    async with Runtime(loaded, presenter=presenter) as runtime:
        await runtime.warm_up()
        reply = await runtime.coordinator.chat("I need a tool that converts Celsius to Fahrenheit")
        turn = runtime.coordinator.last_turn
        assert turn is not None
        assert turn.tool_requests, f"the coordinator did not ask the tool agent: {reply!r}"
        async with asyncio.timeout(900):
            await presenter.done.wait()
        report = presenter.report
        assert report is not None
        assert report.payload["ok"], report.payload["text"]
        assert report.payload["available"]
        assert report.payload["text"].endswith("(available now)")
        name = report.payload["tool"]
        parameters = report.payload["parameters"]
        assert len(parameters["required"]) == 1, parameters
        argument = parameters["required"][0]
        result = await runtime.mcp.call(name, {argument: 100})
        assert not result.is_error, result.text
        assert float(result.text) == pytest.approx(212.0)
        result = await runtime.mcp.call(name, {argument: -40})
        assert float(result.text) == pytest.approx(-40.0)
    assert runtime.tool_agent is not None
    outcome = runtime.tool_agent.outcomes[-1]
    assert 1 <= len(outcome.attempts) <= loaded.config.tool_agent.max_attempts
