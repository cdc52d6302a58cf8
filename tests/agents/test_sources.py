"""Citing the file a quoted answer came from, on the real built-in server's output."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mcp_types import TextContent

from mcp import Client
from mcp_session import held_client
from octopussy.agents.sources import Sources
from octopussy.config import MCPSettings, SandboxSettings
from octopussy.mcp.builtin import build_builtin_server

FISH = "The octopus has three hearts and blue blood.\n"
ESSAY = (
    "The colour of the sea changes with the weather.\n"
    "On grey days the colour is dull; in summer the colour is bright blue.\n"
)


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    ws = tmp_path / "ws"
    (ws / "zoo").mkdir(parents=True)
    (ws / "animals.txt").write_text(FISH)
    (ws / "essay.txt").write_text(ESSAY)
    (ws / "zoo" / "list.txt").write_text("short\n" + FISH)
    server = build_builtin_server(
        workspace=ws, sandbox=SandboxSettings(timeout_seconds=5), mcp=MCPSettings()
    )
    async with held_client(server, timeout=30) as session:
        yield session


async def seen(client: Client, sources: Sources, tool: str, **arguments: Any) -> str:
    result = await client.call_tool(tool, arguments)
    block = result.content[0]
    assert isinstance(block, TextContent)
    sources.record(tool, arguments, block.text, bool(result.is_error))
    return block.text


async def test_an_answer_quoting_a_read_line_names_the_file(client: Client) -> None:
    sources = Sources()
    await seen(client, sources, "read_file", path="animals.txt")
    answer = "The octopus has three hearts and blue blood."
    assert sources.cite(answer) == f"{answer} (from animals.txt, line 1)"


async def test_a_search_match_is_cited_with_its_folder(client: Client) -> None:
    sources = Sources()
    await seen(client, sources, "search_files", pattern="**/*.txt", text="octopus")
    cited = sources.cite("the octopus has three hearts and  blue blood")
    assert cited.endswith("(from animals.txt, line 1; zoo/list.txt, line 2)")


async def test_several_quoted_lines_of_one_file_are_listed(client: Client) -> None:
    sources = Sources()
    await seen(client, sources, "read_file", path="./essay.txt")
    answer = "It says: " + ESSAY.replace("\n", " ")
    assert sources.cite(answer).endswith("(from essay.txt, lines 1, 2)")


async def test_an_answer_that_names_the_file_is_left_alone(client: Client) -> None:
    sources = Sources()
    await seen(client, sources, "read_file", path="animals.txt")
    answer = "animals.txt says: The octopus has three hearts and blue blood."
    assert sources.cite(answer) == answer


async def test_answers_that_do_not_quote_are_left_alone(client: Client) -> None:
    sources = Sources()
    await seen(client, sources, "read_file", path="essay.txt")
    for answer in ("The essay has 2 lines.", "The colour", "blue"):
        assert sources.cite(answer) == answer


async def test_a_failed_read_and_other_tools_are_not_sources(client: Client) -> None:
    sources = Sources()
    text = await seen(client, sources, "read_file", path="missing.txt")
    assert text  # the error text itself is never quoted back as a source
    await seen(client, sources, "execute_python", code="print('The octopus has three hearts')")
    await seen(client, sources, "search_files", pattern="*.txt")  # names only, no lines
    assert sources.quoted("The octopus has three hearts and blue blood.") == {}


def test_an_answer_that_is_part_of_a_line_is_a_quote_when_long_enough() -> None:
    sources = Sources()
    sources.record(
        "read_file", {"path": "a.txt"}, "     7\tThe meeting moved to Friday at ten.", False
    )
    assert sources.cite("The meeting moved to Friday.") == (
        "The meeting moved to Friday. (from a.txt, line 7)"
    )
    assert sources.cite("Friday at ten.") == "Friday at ten."
