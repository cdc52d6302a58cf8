"""The built-in tools server, driven through the SDK's in-process ``Client``.

Every test runs twice: over the direct in-process dispatch (``mode="auto"``, the 2026-07-28
era) and over JSON-RPC streams with the initialize handshake (``mode="legacy"``). Input
mistakes must come back as results with ``is_error`` and an actionable sentence.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
from mcp.server import MCPServer
from mcp_types import CallToolResult, TextContent

from mcp import Client
from mcp_session import held_client
from octopussy.config import MCPSettings, SandboxSettings
from octopussy.mcp import builtin
from octopussy.mcp.builtin import build_builtin_server, glob_to_regex

TOOLS = {"read_file", "write_file", "edit_file", "list_directory", "search_files", "execute_python"}

needs_bwrap = pytest.mark.skipif(
    shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed"
)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    (ws / "src" / "pkg").mkdir(parents=True)
    (ws / "src" / "pkg" / "__init__.py").write_text("")
    (ws / "src" / "pkg" / "core.py").write_text(
        "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n"
    )
    (ws / "README.md").write_text("# Demo\nSee src/pkg/core.py for add().\n")
    (ws / "docs").mkdir()
    (ws / "docs" / "notes.txt").write_text("TODO: write docs\nnothing else\n")
    (ws / ".git").mkdir()
    (ws / ".git" / "config").write_text("TODO: never searched\n")
    (tmp_path / "outside.txt").write_text("outside\n")
    return ws


def connected(server: MCPServer, mode: str = "auto") -> AbstractAsyncContextManager[Client]:
    """A client session on ``server`` held by a task of its own."""
    return held_client(server, timeout=30, mode=mode)


@pytest.fixture(params=["auto", "legacy"])
async def client(request: pytest.FixtureRequest, workspace: Path) -> AsyncIterator[Client]:
    server = build_builtin_server(
        workspace=workspace,
        sandbox=SandboxSettings(timeout_seconds=5, max_output_chars=2000),
        mcp=MCPSettings(max_read_chars=1000),
    )
    async with connected(server, request.param) as session:
        yield session


def text(result: CallToolResult) -> str:
    assert result.content, result
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


async def ok(client: Client, tool: str, **arguments: Any) -> CallToolResult:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, text(result)
    return result


async def error(client: Client, tool: str, **arguments: Any) -> str:
    result = await client.call_tool(tool, arguments)
    assert result.is_error, result
    assert result.structured_content is None
    return text(result)


async def failed(client: Client, tool: str, **arguments: Any) -> CallToolResult:
    """A call that ran and failed (a script that raised): isError, with the run's details."""
    result = await client.call_tool(tool, arguments)
    assert result.is_error, text(result)
    assert result.structured_content is not None
    return result


def data(result: CallToolResult) -> dict[str, Any]:
    structured: dict[str, Any] | None = result.structured_content
    assert structured is not None
    return structured


# ------------------------------------------------------------------ schemas


async def test_tools_have_schemas_descriptions_and_annotations(client: Client) -> None:
    listed = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(listed) == TOOLS
    for name, tool in listed.items():
        assert tool.description, name
        assert len(tool.description) > 60, name
        assert tool.output_schema is not None, name
        properties = tool.input_schema["properties"]
        for prop, schema in properties.items():
            assert schema.get("description"), f"{name}.{prop} has no description"
        assert tool.annotations is not None
        assert tool.annotations.open_world_hint is False
    assert listed["read_file"].input_schema["required"] == ["path"]
    assert listed["read_file"].annotations.read_only_hint  # type: ignore[union-attr]
    assert listed["write_file"].annotations.destructive_hint  # type: ignore[union-attr]
    assert listed["execute_python"].input_schema["required"] == ["code"]
    assert "5 s wall clock" in (listed["execute_python"].description or "")
    assert set(listed["read_file"].output_schema["properties"]) >= {  # type: ignore[index]
        "content",
        "next_offset",
        "total_lines",
    }


async def test_argument_mistakes_are_tool_errors(client: Client) -> None:
    assert "path" in await error(client, "read_file")
    assert "offset" in await error(client, "read_file", path="README.md", offset=-1)
    assert "timeout_seconds" in await error(client, "execute_python", code="1", timeout_seconds=0)
    assert "Unknown tool" in await error(client, "no_such_tool")


# ------------------------------------------------------------------ read_file


async def test_read_file_shows_numbered_lines_and_sizes(client: Client) -> None:
    result = await ok(client, "read_file", path="src/pkg/core.py")
    assert text(result).splitlines()[:2] == ["     1\tdef add(a, b):", "     2\t    return a + b"]
    assert "[end of src/pkg/core.py: lines 1-6 of 6, 66 bytes]" in text(result)
    assert data(result) == {
        "path": "src/pkg/core.py",
        "content": "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n",
        "offset": 0,
        "lines_returned": 6,
        "total_lines": 6,
        "next_offset": None,
        "size_bytes": 66,
        "long_lines_cut": 0,
    }


async def test_read_file_pages_by_lines_and_by_characters(client: Client, workspace: Path) -> None:
    (workspace / "big.txt").write_text(
        "".join(f"line {i:04d} " + "x" * 40 + "\n" for i in range(500))
    )
    first = await ok(client, "read_file", path="big.txt", limit=10)
    assert data(first)["lines_returned"] == 10
    assert data(first)["next_offset"] == 10
    assert "To read on, call read_file with offset=10." in text(first)
    assert "of 500" in text(first)
    second = await ok(client, "read_file", path="big.txt", offset=10, limit=5)
    assert data(second)["content"].splitlines()[0].startswith("line 0010")
    assert text(second).startswith("    11\tline 0010")
    # No limit: as many lines as fit max_read_chars (1000 here).
    page = await ok(client, "read_file", path="big.txt", offset=100)
    assert 0 < data(page)["lines_returned"] < 25
    assert len(data(page)["content"]) <= 1000
    # Walking the pages covers the file exactly once.
    offset, seen = 0, []
    while offset is not None:
        got = data(await ok(client, "read_file", path="big.txt", offset=offset))
        seen.extend(got["content"].splitlines())
        offset = got["next_offset"]
    assert seen == (workspace / "big.txt").read_text().splitlines()
    past = await error(client, "read_file", path="big.txt", offset=900)
    assert "past the end" in past
    assert "500 lines" in past
    # A small file cut by a small limit: the footer says the rest fits in one page.
    (workspace / "config.json").write_text('{\n  "port": 8080,\n  "debug": false\n}\n')
    one = await ok(client, "read_file", path="config.json", limit=1)
    assert data(one)["lines_returned"] == 1
    assert "The other 3 line(s) fit in one page: call read_file with offset=1 and no limit." in (
        text(one)
    )


async def test_read_file_cuts_very_long_lines(client: Client, workspace: Path) -> None:
    (workspace / "min.js").write_text("a" * 5000 + "\nshort\n")
    result = await ok(client, "read_file", path="min.js", limit=1)
    assert "line cut: 3000 more characters" in text(result)
    assert data(result)["long_lines_cut"] == 1


async def test_read_file_refuses_binary_files_politely(client: Client, workspace: Path) -> None:
    (workspace / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    (workspace / "blob.bin").write_bytes(b"abc\x00def")
    png = await error(client, "read_file", path="logo.png")
    assert "PNG image" in png
    assert "execute_python" in png
    assert "binary data" in await error(client, "read_file", path="blob.bin")


async def test_read_file_shows_invalid_utf8_with_a_note(client: Client, workspace: Path) -> None:
    (workspace / "latin1.txt").write_bytes("café\n".encode("latin-1"))
    result = await ok(client, "read_file", path="latin1.txt")
    assert "caf\ufffd" in text(result)
    assert "not valid UTF-8" in text(result)


async def test_read_file_mistakes(client: Client, workspace: Path) -> None:
    assert "does not exist" in await error(client, "read_file", path="src/pkg/missing.py")
    assert "is a directory" in await error(client, "read_file", path="src")
    assert "outside the workspace" in await error(client, "read_file", path="../outside.txt")
    outside = str(workspace.parent / "outside.txt")
    assert "outside the workspace" in await error(client, "read_file", path=outside)
    (workspace / "empty.txt").write_text("")
    assert "is empty" in text(await ok(client, "read_file", path="empty.txt"))


# ------------------------------------------------------------------ write_file / edit_file


async def test_write_file_creates_parents_and_counts_bytes(client: Client, workspace: Path) -> None:
    result = await ok(client, "write_file", path="new/deep/file.txt", content="héllo 🐙\n")
    assert data(result) == {"path": "new/deep/file.txt", "bytes_written": 12, "created": True}
    assert "Wrote 12 bytes" in text(result)
    assert (workspace / "new" / "deep" / "file.txt").read_text() == "héllo 🐙\n"
    again = await ok(client, "write_file", path="new/deep/file.txt", content="short")
    assert data(again)["created"] is False
    assert (workspace / "new" / "deep" / "file.txt").read_text() == "short"


async def test_an_appended_line_leaves_no_empty_line(client: Client, workspace: Path) -> None:
    (workspace / "sales.csv").write_text("month,revenue\nMay,1675\n")
    # Measured: "\nJune,1500" for "add June,1500 as a new last line of sales.csv".
    result = await ok(client, "write_file", path="sales.csv", content="\nJune,1500", append=True)
    assert (workspace / "sales.csv").read_text() == "month,revenue\nMay,1675\nJune,1500\n"
    assert "the one your content began with was dropped" in text(result)
    # Two newlines ask for a blank line: kept, and said nothing about.
    (workspace / "notes.md").write_text("# Notes\n")
    result = await ok(client, "write_file", path="notes.md", content="\n\nMore.\n", append=True)
    assert (workspace / "notes.md").read_text() == "# Notes\n\n\nMore.\n"
    assert "Note:" not in text(result)
    # A file without a final newline gets one before the new line, and stays as it was.
    (workspace / "raw.txt").write_text("a")
    await ok(client, "write_file", path="raw.txt", content="b", append=True)
    assert (workspace / "raw.txt").read_text() == "a\nb"


async def test_write_file_appends_on_a_new_line(client: Client, workspace: Path) -> None:
    await ok(client, "write_file", path="log.txt", content="one")
    result = await ok(client, "write_file", path="log.txt", content="two\n", append=True)
    assert "appended to the end" in text(result)
    assert (workspace / "log.txt").read_text() == "one\ntwo\n"
    await ok(client, "write_file", path="log.txt", content="three", append=True)
    assert (workspace / "log.txt").read_text() == "one\ntwo\nthree\n"  # ends as its lines do
    fresh = await ok(client, "write_file", path="new.txt", content="x", append=True)
    assert data(fresh)["created"] is True
    resent = await ok(
        client, "write_file", path="log.txt", content="one\ntwo\nthree\nfour\n", append=True
    )
    assert "replaced the file instead of being appended" in text(resent)
    assert (workspace / "log.txt").read_text() == "one\ntwo\nthree\nfour\n"
    # Run 6: edit_file, then the file as it was before the edit plus the new line.
    (workspace / "shop.txt").write_text("eggs\nflour\nsugar\n")
    await ok(client, "edit_file", path="shop.txt", old_text="eggs", new_text="bread")
    older = await ok(
        client, "write_file", path="shop.txt", content="eggs\nflour\nsugar\nbutter\n", append=True
    )
    assert "only the new line(s) after it were appended" in text(older)
    assert (workspace / "shop.txt").read_text() == "bread\nflour\nsugar\nbutter\n"
    # Run 7: no edit made; the whole file with the edit and the new line, append=true.
    (workspace / "list.txt").write_text("eggs\nflour\nsugar\n")
    edited = await ok(
        client, "write_file", path="list.txt", content="bread\nflour\nsugar\nbutter\n", append=True
    )
    assert "so it replaced the file instead of being appended" in text(edited)
    assert (workspace / "list.txt").read_text() == "bread\nflour\nsugar\nbutter\n"
    # A replaced version counts as earlier too (write_file without append).
    await ok(client, "write_file", path="list.txt", content="milk\nflour\nsugar\n")
    again = await ok(
        client,
        "write_file",
        path="list.txt",
        content="bread\nflour\nsugar\nbutter\ntea\n",
        append=True,
    )
    assert (workspace / "list.txt").read_text() == "milk\nflour\nsugar\ntea\n"
    assert "earlier copy of the file" in text(again)
    (workspace / "other.txt").write_text("a\nb\nc\n")
    await ok(client, "write_file", path="other.txt", content="x\ny\nc\nd\n", append=True)
    assert (workspace / "other.txt").read_text() == "a\nb\nc\nx\ny\nc\nd\n"


async def test_write_file_drops_the_line_numbers_read_file_shows(
    client: Client, workspace: Path
) -> None:
    # As the embedded model wrote it in run 7 (the tab of the display turned to spaces).
    numbered = "     1   bread\n     2   flour\n     3   sugar\n     4   butter"
    result = await ok(client, "write_file", path="shop.txt", content=numbered)
    assert "removed the line numbers read_file shows" in text(result)
    assert (workspace / "shop.txt").read_text() == "bread\nflour\nsugar\nbutter"
    await ok(client, "write_file", path="one.txt", content="     7\tonly line\n")
    assert (workspace / "one.txt").read_text() == "only line\n"
    for kept in (
        "1 eggs\n2 flour\n",  # a numbered list, not the display
        "   1  a\n   3  b\n",  # not consecutive
        "   10 apples",  # one line, not the display's shape
        "  2024  was a year\n  2025  is another\nand this is prose\n",
    ):
        await ok(client, "write_file", path="kept.txt", content=kept)
        assert (workspace / "kept.txt").read_text() == kept


async def test_write_file_strips_a_markdown_fence_except_in_markup(
    client: Client, workspace: Path
) -> None:
    fenced = '```json\n{"a": 1}\n```\n'
    result = await ok(client, "write_file", path="data.json", content=fenced)
    assert "removed the markdown code fence" in text(result)
    assert (workspace / "data.json").read_text() == '{"a": 1}\n'
    await ok(client, "write_file", path="notes.md", content=fenced)
    assert (workspace / "notes.md").read_text() == fenced


async def test_write_file_refuses_python_syntax_for_a_json_file(
    client: Client, workspace: Path
) -> None:
    problem = await error(client, "write_file", path="todo.json", content="['a', 'b']")
    assert "it is Python syntax" in problem
    assert '["a", "b"]' in problem
    assert not (workspace / "todo.json").exists()
    # JSON with comments (tsconfig.json style) is not Python either: written as given.
    await ok(client, "write_file", path="tsconfig.json", content='{// c\n"a": 1}')
    assert (workspace / "tsconfig.json").read_text() == '{// c\n"a": 1}'


async def test_write_file_mistakes(client: Client, workspace: Path) -> None:
    assert "outside the workspace" in await error(
        client, "write_file", path="../escape.txt", content="x"
    )
    assert not (workspace.parent / "escape.txt").exists()
    assert "is a directory" in await error(client, "write_file", path="src", content="x")
    assert "is a file" in await error(client, "write_file", path="README.md/x", content="x")


async def test_edit_file_replaces_exactly_once(client: Client, workspace: Path) -> None:
    result = await ok(
        client, "edit_file", path="src/pkg/core.py", old_text="a - b", new_text="a - b - 0"
    )
    assert data(result)["replacements"] == 1
    assert data(result)["first_line"] == 6
    assert "first at line 6" in text(result)
    assert "return a - b - 0" in (workspace / "src" / "pkg" / "core.py").read_text()


async def test_edit_file_no_match_and_ambiguous_match(client: Client, workspace: Path) -> None:
    missing = await error(
        client, "edit_file", path="src/pkg/core.py", old_text="return a * b", new_text="x"
    )
    assert "not found" in missing
    assert "exactly" in missing
    indented = await error(
        client,
        "edit_file",
        path="src/pkg/core.py",
        old_text="  return a + b\n\n\ndef sub(a,b):",
        new_text="x",
    )
    assert "ignoring indentation, is at line 2" in indented
    ambiguous = await error(
        client, "edit_file", path="src/pkg/core.py", old_text="(a, b)", new_text="(x, y)"
    )
    assert "occurs 2 times" in ambiguous
    assert "lines 1, 5" in ambiguous
    assert "replace_all" in ambiguous
    before = (workspace / "src" / "pkg" / "core.py").read_text()
    assert "(a, b)" in before  # nothing changed by the failed calls
    everywhere = await ok(
        client,
        "edit_file",
        path="src/pkg/core.py",
        old_text="(a, b)",
        new_text="(x, y)",
        replace_all=True,
    )
    assert data(everywhere)["replacements"] == 2
    assert "(a, b)" not in (workspace / "src" / "pkg" / "core.py").read_text()
    assert "empty" in await error(client, "edit_file", path="README.md", old_text="", new_text="x")
    assert "same" in await error(client, "edit_file", path="README.md", old_text="D", new_text="D")


async def test_edit_file_keeps_windows_line_endings(client: Client, workspace: Path) -> None:
    (workspace / "win.txt").write_bytes(b"one\r\ntwo\r\nthree\r\n")
    await ok(client, "edit_file", path="win.txt", old_text="one\ntwo", new_text="1\n2")
    assert (workspace / "win.txt").read_bytes() == b"1\r\n2\r\nthree\r\n"


async def test_edit_file_takes_old_text_copied_with_line_numbers(
    client: Client, workspace: Path
) -> None:
    (workspace / "shop.txt").write_text("eggs\nflour\nsugar\n")
    result = await ok(
        client,
        "edit_file",
        path="shop.txt",
        old_text="     1\teggs\n     2\tflour",
        new_text="     1\tbread\n     2\tflour",
    )
    assert "removed the line numbers read_file shows" in text(result)
    assert (workspace / "shop.txt").read_text() == "bread\nflour\nsugar\n"
    missing = await error(
        client, "edit_file", path="shop.txt", old_text="     1\tmilk", new_text="x"
    )
    assert "old_text was not found" in missing


async def test_edit_file_shrinking_truncates(client: Client, workspace: Path) -> None:
    (workspace / "s.txt").write_text("keep REMOVE-THIS-LONG-PART end\n")
    await ok(client, "edit_file", path="s.txt", old_text=" REMOVE-THIS-LONG-PART", new_text="")
    assert (workspace / "s.txt").read_text() == "keep end\n"


async def test_write_file_asks_once_before_a_new_folder_beside_an_existing_file(
    client: Client, workspace: Path
) -> None:
    config = '{\n  "name": "demo",\n  "port": 8080\n}\n'
    (workspace / "config.json").write_text(config)
    # Measured: "change config.json in the user's workspace" became user/config.json.
    message = await error(client, "write_file", path="user/config.json", content='{"port": 1}')
    assert "no folder user/ in the workspace, but there is config.json" in message
    assert "path='config.json'" in message
    assert not (workspace / "user").exists()
    # Sent again, it is meant: the new folder and file are made.
    await ok(client, "write_file", path="user/config.json", content='{"port": 1}')
    assert (workspace / "user" / "config.json").read_text() == '{"port": 1}'
    assert (workspace / "config.json").read_text() == config
    # Deeper: the nearest existing file is named, and the first missing folder.
    message = await error(client, "write_file", path="a/b/src/pkg/core.py", content="x = 1\n")
    assert "no folder a/ in the workspace, but there is src/pkg/core.py" in message
    # A new file in a new folder with no namesake, or in an existing folder: no question.
    await ok(client, "write_file", path="reports/summary.md", content="# Summary\n")
    await ok(client, "write_file", path="src/config.json", content="{}")


async def test_write_file_from_a_copy_read_before_an_edit_keeps_the_edit(
    client: Client, workspace: Path
) -> None:
    shopping = workspace / "shopping.txt"
    shopping.write_text("eggs\nflour\nsugar\n")
    await ok(client, "read_file", path="shopping.txt")
    await ok(client, "edit_file", path="shopping.txt", old_text="eggs", new_text="bread")
    # Measured (run 10): the whole file as first read, plus the new last line.
    result = await ok(
        client, "write_file", path="shopping.txt", content="eggs\nflour\nsugar\nbutter\n"
    )
    assert shopping.read_text() == "bread\nflour\nsugar\nbutter\n"
    assert "that change was kept" in text(result)
    # A write of the text as it was before the edit is a revert: written as given.
    await ok(client, "write_file", path="shopping.txt", content="eggs\nflour\nsugar\n")
    assert shopping.read_text() == "eggs\nflour\nsugar\n"
    # Changes that clash with the edit (the same line): the new content wins.
    await ok(client, "edit_file", path="shopping.txt", old_text="sugar", new_text="salt")
    clash = await ok(client, "write_file", path="shopping.txt", content="eggs\nflour\nhoney\n")
    assert shopping.read_text() == "eggs\nflour\nhoney\n"
    assert "kept" not in text(clash)
    # A write based on the file as it is now is untouched.
    await ok(client, "write_file", path="shopping.txt", content="eggs\nflour\nhoney\ntea\n")
    assert shopping.read_text() == "eggs\nflour\nhoney\ntea\n"


async def test_write_file_does_not_put_code_into_a_data_file(
    client: Client, workspace: Path
) -> None:
    sales = "month,revenue\nJanuary,1200\n"
    (workspace / "sales.csv").write_text(sales)
    code = (
        "total = sum(float(r['revenue']) for r in csv.DictReader(open('sales.csv'))) print(total)"
    )
    message = await error(client, "write_file", path="sales.csv", content=code)
    assert "is a data file and this content is Python code" in message
    assert "use execute_python" in message
    appended = await error(
        client, "write_file", path="sales.csv", content="import csv", append=True
    )
    assert "left unchanged" in appended
    assert (workspace / "sales.csv").read_text() == sales
    await ok(client, "write_file", path="sales.csv", content="month,revenue\nMay,1675\n")
    await ok(client, "write_file", path="notes.txt", content="print('hi')\n")
    await ok(client, "write_file", path="script.py", content="import csv\n")
    await ok(client, "write_file", path="new.csv", content="import,print(x)\n")


async def test_write_file_does_not_replace_valid_json_with_text(
    client: Client, workspace: Path
) -> None:
    config = '{"name": "demo", "port": 8080}\n'
    (workspace / "config.json").write_text(config)
    message = await error(client, "write_file", path="config.json", content="port: 9090\n")
    assert "config.json holds valid JSON and the new content is not JSON" in message
    assert "use edit_file" in message
    assert "edit_file with old_text='\"port\": 8080' and new_text='\"port\": 9090'" in message
    assert (workspace / "config.json").read_text() == config
    named = await error(client, "write_file", path="config.json", content="name = 'prod'")
    assert 'new_text=\'"name": "prod"\'' in named
    unknown = await error(client, "write_file", path="config.json", content="debug: true")
    assert "here: edit_file" not in unknown
    await ok(client, "write_file", path="config.json", content='{"name": "x", "port": 9090}')
    assert json.loads((workspace / "config.json").read_text()) == {"name": "x", "port": 9090}
    await ok(client, "write_file", path="config.json", content='{"other": 1}')  # a new object
    await ok(client, "write_file", path="config.json", content="[1, 2]")
    (workspace / "draft.json").write_text("not json yet")
    await ok(client, "write_file", path="draft.json", content="still a draft")
    await ok(client, "write_file", path="new.json", content="{ template }")


async def test_write_file_merges_an_object_with_only_the_changed_keys(
    client: Client, workspace: Path
) -> None:
    config = '{\n  "name": "demo",\n  "port": 8080,\n  "debug": false\n}\n'
    (workspace / "config.json").write_text(config)
    # As the embedded model sent it twice in run 8, for "change the port to 9090".
    result = await ok(client, "write_file", path="config.json", content='{"port": 9090}')
    assert (workspace / "config.json").read_text() == config.replace("8080", "9090")
    assert "only that value was changed and 'name', 'debug' kept" in text(result)
    # Sent again (measured after run 10: three times): a repeat, not a deletion.
    for _ in range(2):
        again = await ok(client, "write_file", path="config.json", content='{"port": 9090}')
        assert (workspace / "config.json").read_text() == config.replace("8080", "9090")
        assert "already had these values" in text(again)
    # Keys left out and nothing changed: a deletion, written as given.
    await ok(client, "write_file", path="config.json", content='{"name": "demo", "port": 9090}')
    assert json.loads((workspace / "config.json").read_text()) == {"name": "demo", "port": 9090}
    # A value the text does not hold exactly once cannot be edited in place: refused.
    listed = '{"hosts": [\n  "a",\n  "b"\n], "port": 1}\n'
    (workspace / "hosts.json").write_text(listed)
    refused = await error(client, "write_file", path="hosts.json", content='{"hosts": ["c"]}')
    assert "this would remove 'port' from hosts.json" in refused
    assert (workspace / "hosts.json").read_text() == listed


# ------------------------------------------------------------------ list_directory


async def test_list_directory_sorted_with_types_and_sizes(client: Client, workspace: Path) -> None:
    (workspace / "link_in").symlink_to("README.md")
    (workspace / "link_out").symlink_to("/etc")
    result = await ok(client, "list_directory")
    entries = data(result)["entries"]
    assert [e["name"] for e in entries] == [
        ".git",
        "docs",
        "src",
        "link_in",
        "link_out",
        "README.md",
    ]
    readme = next(e for e in entries if e["name"] == "README.md")
    assert readme == {"name": "README.md", "type": "file", "size": 38, "target": None}
    lines = text(result).splitlines()
    assert lines[0] == "./ (6 entries)"
    assert "  docs/" in lines
    assert "  README.md  (38 bytes)" in lines
    assert "  link_out -> /etc (outside the workspace: not accessible)" in lines
    sub = await ok(client, "list_directory", path="src/pkg")
    assert [e["name"] for e in data(sub)["entries"]] == ["__init__.py", "core.py"]


async def test_list_directory_pattern_lists_only_matching_names(
    client: Client, workspace: Path
) -> None:
    (workspace / "notes.txt").write_text("n\n")
    (workspace / "essay.txt").write_text("e\n")
    (workspace / "data.csv").write_text("a,b\n")
    result = await ok(client, "list_directory", pattern="*.txt")
    assert [e["name"] for e in data(result)["entries"]] == ["essay.txt", "notes.txt"]
    assert data(result)["total"] == 2
    assert text(result).splitlines()[0] == "./ (2 of 7 entries match '*.txt')"
    assert "data.csv" not in text(result)
    empty_path = await ok(client, "list_directory", path="", pattern="*.txt")
    assert data(empty_path)["total"] == 2  # "" is the workspace, as "." is
    assert data(await ok(client, "search_files", path=" ", text="n"))["matches"]
    everything = await ok(client, "list_directory", pattern="*")
    assert data(everything)["total"] == 7
    none = await ok(client, "list_directory", pattern="*.pdf")
    assert data(none)["entries"] == []
    assert "no entry matches '*.pdf' (7 entries in all)" in text(none)
    assert "use search_files" in await error(client, "list_directory", pattern="src/*.py")


async def test_list_directory_is_capped(
    client: Client, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(builtin, "MAX_DIR_ENTRIES", 5)
    (workspace / "many").mkdir()
    for i in range(12):
        (workspace / "many" / f"f{i:02d}").write_text("")
    result = await ok(client, "list_directory", path="many")
    assert data(result)["total"] == 12
    assert data(result)["truncated"] is True
    assert len(data(result)["entries"]) == 5
    assert "7 more entries not shown" in text(result)


async def test_list_directory_mistakes(client: Client) -> None:
    assert "use read_file" in await error(client, "list_directory", path="README.md")
    assert "does not exist" in await error(client, "list_directory", path="nope")
    assert "outside the workspace" in await error(client, "list_directory", path="..")


# ------------------------------------------------------------------ search_files


async def test_search_files_by_pattern(client: Client) -> None:
    py = await ok(client, "search_files", pattern="*.py")
    assert [m["path"] for m in data(py)["matches"]] == ["src/pkg/__init__.py", "src/pkg/core.py"]
    rooted = await ok(client, "search_files", pattern="src/**/core.py")
    assert [m["path"] for m in data(rooted)["matches"]] == ["src/pkg/core.py"]
    top = await ok(client, "search_files", pattern="*.md")
    assert [m["path"] for m in data(top)["matches"]] == ["README.md"]
    everything = await ok(client, "search_files")
    paths = [m["path"] for m in data(everything)["matches"]]
    assert ".git/config" not in paths
    assert len(paths) == 4
    within = await ok(client, "search_files", pattern="*.py", path="src")
    assert data(within)["matches"][0]["path"] == "src/pkg/__init__.py"


async def test_search_files_by_a_bare_word_searches_the_contents(client: Client) -> None:
    result = await ok(client, "search_files", pattern="demo")
    assert text(result).startswith("[no file name matches 'demo', so the files' contents")
    assert data(result)["matches"][0]["path"] == "README.md"
    nothing = await ok(client, "search_files", pattern="zebra")
    assert "No matches" in text(nothing)
    # As the embedded model sent it in run 8: a word dressed as a glob, and text="".
    for pattern, word, where in (
        ("*demo*", "demo", "README.md"),
        ("**/*demo*", "demo", "README.md"),
        ("*.return", "return", "src/pkg/core.py"),  # longer than a file extension
    ):
        dressed = await ok(client, "search_files", pattern=pattern, text="")
        assert text(dressed).startswith(
            f"[no file name matches {pattern!r}, so the files' contents were searched for {word!r}"
        )
        assert data(dressed)["matches"][0]["path"] == where
    for extension in ("*.rs", "*.demo"):  # extension-like: file names only
        names = await ok(client, "search_files", pattern=extension)
        assert "No matches" in text(names)
        assert "contents were searched" not in text(names)
    listing = await ok(client, "search_files", pattern="*.md", text="")  # "" is no text
    assert [m["path"] for m in data(listing)["matches"]] == ["README.md"]


async def test_search_files_says_when_regex_is_given_without_text(client: Client) -> None:
    result = await ok(client, "search_files", pattern="*.md", ignore_case=True)
    assert "their contents were not searched; pass text" in text(result)


async def test_search_files_for_text_and_regex(client: Client, workspace: Path) -> None:
    (workspace / "image.bin").write_bytes(b"TODO\x00binary")
    found = await ok(client, "search_files", text="TODO")
    assert data(found)["matches"] == [
        {"path": "docs/notes.txt", "line": 1, "text": "TODO: write docs", "size": None}
    ]
    assert data(found)["skipped_binary"] == 1
    assert "docs/notes.txt:1: TODO: write docs" in text(found)
    assert "1 match(es) for 'TODO' in 1 file(s): docs/notes.txt (pattern" in text(found)
    regex = await ok(client, "search_files", pattern="*.py", text=r"def \w+\(", regex=True)
    assert [(m["path"], m["line"]) for m in data(regex)["matches"]] == [
        ("src/pkg/core.py", 1),
        ("src/pkg/core.py", 5),
    ]
    folded = await ok(client, "search_files", text="todo", ignore_case=True)
    assert len(data(folded)["matches"]) == 1
    none = await ok(client, "search_files", text="no such text anywhere")
    assert "No matches" in text(none)


async def test_search_files_widens_a_pattern_that_finds_no_text(client: Client) -> None:
    result = await ok(client, "search_files", pattern="*.py", text="TODO")
    assert text(result).startswith(
        "[no file matching '*.py' contains 'TODO'; searching every file found these]"
    )
    assert [m["path"] for m in data(result)["matches"]] == ["docs/notes.txt"]
    narrow = await ok(client, "search_files", pattern="*.py", text="return")
    assert "searching every file" not in text(narrow)
    assert {m["path"] for m in data(narrow)["matches"]} == {"src/pkg/core.py"}
    nowhere = await ok(client, "search_files", pattern="*.py", text="zebra")
    assert "No matches" in text(nowhere)
    assert "searching every file" not in text(nowhere)


async def test_search_files_stops_at_max_results(client: Client, workspace: Path) -> None:
    (workspace / "many.txt").write_text("hit\n" * 50)
    result = await ok(client, "search_files", text="hit", max_results=7)
    assert len(data(result)["matches"]) == 7
    assert data(result)["truncated"] is True
    assert "stopped at max_results=7" in text(result)
    exact = await ok(client, "search_files", text="hit", max_results=50)  # exactly 50 hits
    assert len(data(exact)["matches"]) == 50
    assert data(exact)["truncated"] is False
    assert "stopped at max_results" not in text(exact)
    for n in range(6):
        (workspace / f"hit{n}.txt").write_text("hit\n")
    spread = await ok(client, "search_files", text="hit", max_results=20)
    assert "in 7 file(s) (pattern" in text(spread)  # more than five: not listed by name


async def test_search_files_does_not_follow_symlinks_out(client: Client, workspace: Path) -> None:
    (workspace / "etc_link").symlink_to("/etc")
    result = await ok(client, "search_files", pattern="**/passwd")
    assert data(result)["matches"] == []


async def test_search_files_mistakes(client: Client) -> None:
    assert "invalid regular expression" in await error(client, "search_files", text="(", regex=True)
    assert "relative" in await error(client, "search_files", pattern="/etc/*")
    assert "outside the workspace" in await error(client, "search_files", path="..")


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("*.py", "a.py", True),
        ("*.py", "x/y/a.py", True),
        ("*.py", "a.pyc", False),
        ("src/*.py", "src/a.py", True),
        ("src/*.py", "src/x/a.py", False),
        ("src/**/*.py", "src/a.py", True),
        ("src/**/*.py", "src/x/y/a.py", True),
        ("**/test_?.py", "t/test_1.py", True),
        ("**/test_?.py", "t/test_10.py", False),
        ("[ab].txt", "a.txt", True),
        ("[!ab].txt", "a.txt", False),
        ("**", "any/thing", True),
        ("./docs/*", "docs/x", True),
    ],
)
def test_glob_to_regex(pattern: str, path: str, matches: bool) -> None:
    assert bool(glob_to_regex(pattern).match(path)) is matches


# ------------------------------------------------------------------ execute_python


@needs_bwrap
async def test_execute_python_text_and_structured_result(client: Client, workspace: Path) -> None:
    result = await ok(
        client,
        "execute_python",
        code="import sys\n"
        "print(open('README.md').readline().strip())\n"
        "print('warn', file=sys.stderr)",
    )
    body = text(result)
    assert body.startswith("exit code 0 (sandboxed, ")
    assert "--- stdout ---\n# Demo" in body
    assert "--- stderr ---\nwarn" in body
    structured = data(result)
    assert structured["stdout"] == "# Demo\n"
    assert structured["isolated"] is True
    assert structured["exit_code"] == 0
    failing = await failed(client, "execute_python", code="1/0")
    assert "exit code 1" in text(failing)
    assert "ZeroDivisionError" in data(failing)["stderr"]


@needs_bwrap
async def test_execute_python_timeout_is_capped_by_config(client: Client) -> None:
    result = await ok(client, "execute_python", code="print('quick')", timeout_seconds=500)
    assert "capped at the configured 5 s" in text(result)
    slow = await failed(
        client, "execute_python", code="import time; time.sleep(30)", timeout_seconds=0.5
    )
    assert data(slow)["timed_out"] is True
    assert text(slow).startswith("timed out (killed)")


@needs_bwrap
async def test_execute_python_given_a_shell_command_runs_the_script(
    client: Client, workspace: Path
) -> None:
    (workspace / "hello.py").write_text("import sys\nprint('hi', sys.argv[1:])\n")
    result = await ok(client, "execute_python", code="python3 hello.py 10 'a b'\n")
    assert "hi ['10', 'a b']" in data(result)["stdout"]
    assert "the code was a shell command, so the script hello.py was run" in text(result)
    plain = await ok(client, "execute_python", code="python = 1\nprint(python)")
    assert data(plain)["stdout"] == "1\n"


@needs_bwrap
async def test_execute_python_runs_one_line_code_unfolded(client: Client, workspace: Path) -> None:
    (workspace / "sales.csv").write_text("month,revenue\nJan,5\nFeb,9\nMar,7\n")
    # As the embedded model wrote it (benchmarks/bench_tasks.py, csv-best-month).
    code = (
        "with open('sales.csv') as f: lines = f.readlines(); best = {}; "
        "for line in lines[1:]: month, revenue = line.strip().split(','); "
        "best[month] = int(revenue); top = max(best, key=best.get); print(top, best[top])"
    )
    result = await ok(client, "execute_python", code=code)
    assert data(result)["stdout"] == "Feb 9\n"
    assert "ran with one statement per line" in text(result)
    assert "\n    for line in lines[1:]:\n        month, revenue" in text(result)
    assert "\n    top = max(best, key=best.get)" in text(result)
    unparsable = await failed(client, "execute_python", code="for x in: print(x)")
    assert "one statement per line" not in text(unparsable)
    broken = await ok(client, "execute_python", code="x = 3\nprint(f'x is\n{x}')")
    assert data(broken)["stdout"] == "x is\n3\n"
    assert "a line break inside a '...' string cannot be Python" in text(broken)


@needs_bwrap
async def test_execute_python_hints_at_one_line_code_and_missing_imports(client: Client) -> None:
    one_line = await failed(client, "execute_python", code="x = 1 print(x) y = (")
    assert "the code is a single line: put each statement on its own line" in text(one_line)
    joined = await ok(client, "execute_python", code="x = 1 print(x)")  # read as two lines
    assert data(joined)["stdout"] == "1\n"
    missing = await ok(client, "execute_python", code="print(csv.__name__, math.pi > 3)")
    assert data(missing)["stdout"] == "csv True\n"
    assert "added 'import csv, math' as line 1" in text(missing)
    shadowed = await ok(client, "execute_python", code="json = {'a': 1}\nprint(json.get('a'))")
    assert data(shadowed)["stdout"] == "1\n"
    assert "added 'import" not in text(shadowed)
    key = await failed(client, "execute_python", code="row = {'revenue': 1}\nprint(row['Revenue'])")
    assert "there is no key 'Revenue': keys are case-sensitive" in text(key)
    tool = await failed(client, "execute_python", code="x = 2\nfinal_answer(f'x is {x}')")
    assert "final_answer is one of your tools, not a Python function: print()" in text(tool)
    other = await failed(client, "execute_python", code="print(undefined_thing)")
    assert "is a module" not in text(other)


@needs_bwrap
async def test_execute_python_prints_the_value_of_a_last_expression(
    client: Client, workspace: Path
) -> None:
    (workspace / "sales.csv").write_text("month,revenue\nJan,1200\nFeb,950\n")
    code = "import csv\nsum(int(r['revenue']) for r in csv.DictReader(open('sales.csv')))"
    total = await ok(client, "execute_python", code=code)
    assert data(total)["stdout"] == "2150\n"
    assert "its value is printed unless it is None" in text(total)
    same_line = await ok(client, "execute_python", code="s = 'é'; len(s)")
    assert data(same_line)["stdout"] == "1\n"
    quoted = await ok(client, "execute_python", code="'a' + 'b'")
    assert data(quoted)["stdout"] == "'ab'\n"
    none = await ok(client, "execute_python", code="def main():\n    pass\nmain()\n")
    assert data(none)["stdout"] == ""
    written = await ok(client, "execute_python", code="import sys\nsys.stdout.write('w')")
    assert data(written)["stdout"] == "w"
    printed = await ok(client, "execute_python", code="print(2)")
    assert data(printed)["stdout"] == "2\n"
    assert "its value is printed" not in text(printed)
    broken = await failed(client, "execute_python", code="x = 1\nx +")
    assert "SyntaxError" in data(broken)["stderr"]
    # Measured (run 12): the whole script was an assignment, and the model made a total up.
    code = "total = sum(int(r['revenue']) for r in csv.DictReader(open('sales.csv')))"
    assigned = await ok(client, "execute_python", code=code)
    assert data(assigned)["stdout"] == "total = 2150\n"
    assert "ends in an assignment, so that value is shown" in text(assigned)
    counted = await ok(client, "execute_python", code="n = 1\nn += 2")
    assert data(counted)["stdout"] == "n = 3\n"
    quiet = await ok(client, "execute_python", code="x = 5\nprint('done')\ny = x")
    assert data(quiet)["stdout"] == "done\n"  # it prints: only what it prints
    unpacked = await ok(client, "execute_python", code="a, b = 1, 2")
    assert data(unpacked)["stdout"] == ""
    traced = await failed(client, "execute_python", code="x = 1\n1 / 0")
    assert "line 2" in data(traced)["stderr"]


@needs_bwrap
async def test_execute_python_hints_at_text_values_and_unpacked_dict_rows(
    client: Client, workspace: Path
) -> None:
    (workspace / "sales.csv").write_text("month,revenue\nJan,1200\nFeb,950\n")
    # Measured: the embedded model unpacked DictReader rows and summed the column names.
    unpacked = await failed(
        client,
        "execute_python",
        code="import csv\nsum(r for m, r in csv.DictReader(open('sales.csv')))",
    )
    assert "unpacking a dict gives its column names" in text(unpacked)
    assert "use row['revenue']" in text(unpacked)
    strings = await failed(
        client,
        "execute_python",
        code="import csv\nprint(sum(r['revenue'] for r in csv.DictReader(open('sales.csv'))))",
    )
    assert "values read from a file are strings" in text(strings)
    assert "sum(float(row['revenue']) for row in csv.DictReader(f))" in text(strings)
    compared = await failed(client, "execute_python", code="print(max(['1', 2]))")
    assert "convert them with int(...) or float(...)" in text(compared)
    other = await failed(client, "execute_python", code="print(len(5))")
    assert "strings" not in text(other)


@needs_bwrap
async def test_execute_python_key_error_names_the_csv_columns(
    client: Client, workspace: Path
) -> None:
    (workspace / "sales.csv").write_text("month,revenue\nJanuary,1200\n")
    (workspace / "semi.csv").write_text("\ufeffName;Age\nx;1\n")
    code = (
        "import csv\n"
        "rows = list(csv.DictReader(open('sales.csv')))\n"
        "print(sum(int(r['Revenue']) for r in rows))\n"
    )
    result = await failed(client, "execute_python", code=code)
    assert data(result)["exit_code"] != 0
    assert "use 'revenue' instead of 'Revenue'" in text(result)
    assert "the columns of sales.csv (its first line) are: 'month', 'revenue'" in text(result)
    both = await failed(
        client,
        "execute_python",
        code="names = ['semi.csv', 'missing.csv']\nprint({}['age'])",
    )
    assert "use 'Age' instead of 'age'" in text(both)
    assert "the columns of semi.csv (its first line) are: 'Name', 'Age'" in text(both)
    assert "missing.csv" not in text(both).split("keys are case-sensitive")[1]


@needs_bwrap
async def test_execute_python_empty_output_says_so(client: Client) -> None:
    assert "(no output; use print()" in text(await ok(client, "execute_python", code="import os"))


async def test_execute_python_without_bwrap_says_so(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = build_builtin_server(
        workspace=workspace,
        sandbox=SandboxSettings(timeout_seconds=5),
        mcp=MCPSettings(),
        bwrap_path=workspace / "missing-bwrap",
    )
    async with connected(server) as client:
        result = await ok(client, "execute_python", code="print('hi')")
    assert "NOT sandboxed" in text(result)
    assert "isolation unavailable" in text(result)
    assert data(result)["isolated"] is False
    assert data(result)["stdout"] == "hi\n"


async def test_execute_python_required_isolation_is_a_tool_error(workspace: Path) -> None:
    server = build_builtin_server(
        workspace=workspace,
        sandbox=SandboxSettings(require_isolation=True),
        mcp=MCPSettings(),
        bwrap_path=workspace / "missing-bwrap",
    )
    async with connected(server) as client:
        message = await error(client, "execute_python", code="print('hi')")
    assert "isolation is required" in message


# ------------------------------------------------------------------ entry point


def test_host_port_parsing() -> None:
    assert builtin.parse_host_port("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert builtin.parse_host_port("[::1]:9") == ("::1", 9)
    for bad in ("8080", "host:", "host:0", "host:70000", "host:x"):
        with pytest.raises(ValueError, match=r"HOST:PORT|out of range"):
            builtin.parse_host_port(bad)


def test_main_refuses_a_missing_workspace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert builtin.main(["--workspace", str(tmp_path / "nope")]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "not a directory" in err
    assert builtin.main(["--workspace", str(tmp_path), "--http", "nonsense"]) == 2


def test_structured_output_is_json(workspace: Path) -> None:
    # Every output model must serialise to plain JSON (what the wire carries).
    for model in (builtin.ReadFileResult, builtin.SearchFilesResult, builtin.ExecutePythonResult):
        assert json.dumps(model.model_json_schema())
