"""The built-in MCP tools server: files in one workspace, and Python in a sandbox.

::

    MCP client (our registry, Claude Code, Inspector) ── stdio | Streamable HTTP ──►
      MCPServer "octopussy-builtin"
        read_file · write_file · edit_file · list_directory · search_files ──► Workspace
        execute_python ──────────────────────────────────────────────────────► Sandbox
        generated tools (``generated_tools/``, loaded and watched) ──────────► Sandbox

Every tool takes its input schema from its type hints (``Annotated`` + ``Field``) and
answers with text written for a model to read, plus structured content for programs
(``outputSchema``). A mistake in the input (a path outside the workspace, a missing file, an
``old_text`` that does not match) comes back as a tool result with ``isError: true`` and a
sentence saying what to do instead, never as a protocol error: the model can correct itself.

File tools run on worker threads (the SDK runs sync tools there), so a large search never
stalls the server; ``execute_python`` awaits the sandbox on the event loop.

With ``generated_tools`` set, the tools the tool agent wrote are served too, and the
directory is watched: a new, changed, disabled or removed tool takes effect live, and clients
hear ``notifications/tools/list_changed`` (see ``octopussy.mcp.generated``).

``python -m octopussy.mcp.builtin --workspace DIR [--http HOST:PORT]`` serves it with the
default limits (``octopussy mcp builtin`` is the configured front door).
"""

# No ``from __future__ import annotations`` here: the SDK reads each tool's signature to
# build its input schema, and the descriptions in those annotations come from the config
# (closures in ``build_builtin_server``), which string annotations could not see.

import argparse
import ast
import codecs
import contextlib
import csv
import difflib
import errno
import json
import logging
import os
import re
import shlex
import stat
import sys
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
from mcp.server import MCPServer, NotificationOptions
from mcp.server.mcpserver.exceptions import ToolError as MCPToolError
from mcp.server.subscriptions import InMemorySubscriptionBus
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from octopussy import __version__
from octopussy.config import MCPSettings, SandboxSettings
from octopussy.errors import ToolError
from octopussy.mcp.generated import GeneratedToolset, GeneratedToolStore
from octopussy.mcp.merge3 import merge3
from octopussy.mcp.oneliner import repair_python
from octopussy.mcp.pipes import run_server_stdio
from octopussy.mcp.sandbox import Sandbox, SandboxResult
from octopussy.mcp.workspace import Workspace

SERVER_NAME = "octopussy-builtin"
#: The built-in tools' names (a generated tool may not take one).
BUILTIN_TOOLS = (
    "read_file",
    "write_file",
    "edit_file",
    "list_directory",
    "search_files",
    "execute_python",
)
#: Longest line read_file shows in full; longer ones are cut with a note.
MAX_LINE_CHARS = 2000
#: Entries list_directory shows at most.
MAX_DIR_ENTRIES = 500
#: Files larger than this are skipped by search_files' text search.
MAX_SEARCH_FILE_BYTES = 5 * 1024 * 1024
#: Files search_files looks at, at most, per call.
MAX_SEARCH_FILES = 50_000
#: Files larger than this are not edited in place (read, replace, write back).
MAX_EDIT_BYTES = 10 * 1024 * 1024
#: Total line counts are computed for files up to this size.
MAX_COUNT_BYTES = 64 * 1024 * 1024
_SNIFF_BYTES = 8192
#: Directories that search_files never descends into (tooling caches and VCS data).
SKIP_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        "__pycache__",
        "node_modules",
        ".venv",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".tox",
    }
)
_MAGIC = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (or docx/xlsx/jar)"),
    (b"\x7fELF", "an executable (ELF)"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"SQLite format 3", "an SQLite database"),
)


# ---------------------------------------------------------------------- structured output


class ReadFileResult(BaseModel):
    path: str = Field(description="The file, relative to the workspace.")
    content: str = Field(description="The lines of this page, without line numbers.")
    offset: int = Field(description="Lines skipped before this page.")
    lines_returned: int
    total_lines: int | None = Field(description="Lines in the file (null for huge files).")
    next_offset: int | None = Field(description="Pass as offset to read on; null at the end.")
    size_bytes: int
    long_lines_cut: int = Field(description=f"Lines longer than {MAX_LINE_CHARS} characters.")


class WriteFileResult(BaseModel):
    path: str
    bytes_written: int
    created: bool = Field(description="True when the file did not exist before.")


class EditFileResult(BaseModel):
    path: str
    replacements: int
    first_line: int = Field(description="Line number of the first replacement.")
    bytes_written: int


class DirectoryEntry(BaseModel):
    name: str
    type: Literal["file", "directory", "symlink", "other"]
    size: int | None = Field(default=None, description="Bytes, for files.")
    target: str | None = Field(default=None, description="Where a symlink points.")


class ListDirectoryResult(BaseModel):
    path: str
    entries: list[DirectoryEntry]
    total: int = Field(description="Entries in the directory (more than shown if truncated).")
    truncated: bool


class SearchMatch(BaseModel):
    path: str
    line: int | None = Field(default=None, description="1-based line of a text match.")
    text: str | None = Field(default=None, description="The matching line (trimmed).")
    size: int | None = Field(default=None, description="Bytes, when listing files only.")


class SearchFilesResult(BaseModel):
    matches: list[SearchMatch]
    files_matched: int = Field(description="Files whose path matched the pattern.")
    truncated: bool = Field(description="True when max_results stopped the search early.")
    skipped_binary: int
    skipped_large: int


class ExecutePythonResult(BaseModel):
    stdout: str
    stderr: str
    exit_code: int | None = Field(description="Null when the wall-clock timeout killed it.")
    timed_out: bool
    killed_by_signal: str | None
    truncated: bool
    isolated: bool = Field(description="False when no sandbox was available (limits only).")
    notes: list[str]
    duration_seconds: float


# ---------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _tool_errors() -> Iterator[None]:
    """Turn our own errors into the SDK's ``ToolError`` so the client gets ``isError``."""
    try:
        yield
    except ToolError as exc:
        raise MCPToolError(str(exc)) from exc
    except UnicodeEncodeError as exc:
        raise MCPToolError(f"the text cannot be encoded as UTF-8: {exc.reason}") from exc
    except OSError as exc:
        raise MCPToolError(_describe_os_error(exc)) from exc


def _describe_os_error(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "the disk is full"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied: {exc.filename or ''}".strip()
    if exc.errno == errno.EFBIG:
        return "the file is too large"
    return exc.strerror or str(exc)


def _result(text: str, data: BaseModel) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content=data.model_dump(mode="json"),
    )


def _noted(result: CallToolResult, note: str) -> CallToolResult:
    """``result`` with ``[note]`` as the first line of its text."""
    first = result.content[0]
    assert isinstance(first, TextContent)
    first.text = f"[{note}]\n{first.text}"
    return result


def _human_size(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    value = float(size)
    for unit in ("KB", "MB", "GB", "TB"):
        value /= 1024
        if value < 1024 or unit == "TB":
            return f"{value:.1f} {unit}"
    return f"{size} bytes"  # pragma: no cover - the loop always returns


def _sniff_binary(sample: bytes) -> str | None:
    """A description of a binary file ("a PNG image"), or ``None`` for text."""
    for magic, name in _MAGIC:
        if sample.startswith(magic):
            return name
    if b"\x00" in sample:
        return "binary data"
    return None


def _valid_utf8(sample: bytes) -> bool:
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    try:
        decoder.decode(sample, final=False)  # a cut multi-byte sequence at the end is fine
    except UnicodeDecodeError:
        return False
    return True


def _count_lines(fd: int, size: int) -> int:
    count = 0
    last = b""
    position = 0
    while position < size:
        chunk = os.pread(fd, 1 << 20, position)
        if not chunk:
            break
        count += chunk.count(b"\n")
        last = chunk[-1:]
        position += len(chunk)
    return count + (1 if position and last != b"\n" else 0)


def _iter_lines(fd: int) -> Iterator[str]:
    """Lines of a file descriptor, decoded leniently, without their line endings."""
    with open(fd, "rb", closefd=False) as raw:
        raw.seek(0)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending = ""
        while True:
            chunk = raw.read(1 << 16)
            pending += decoder.decode(chunk, final=not chunk)
            *complete, pending = pending.split("\n")
            for line in complete:
                yield line.removesuffix("\r")
            if not chunk:
                break
        if pending:
            yield pending.removesuffix("\r")


def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """A glob as a regex over ``/``-separated relative paths.

    ``*`` and ``?`` stay inside one path segment, ``**`` spans directories (``**/x`` also
    matches ``x`` at the top), ``[abc]`` is a character class. A pattern without ``/``
    matches file names at any depth (``*.py``), as in ripgrep's ``-g``.
    """
    cleaned = pattern.strip()
    while cleaned.startswith("./"):
        cleaned = cleaned[2:]
    if not cleaned:
        cleaned = "**/*"
    if "/" not in cleaned and cleaned != "**":
        cleaned = "**/" + cleaned
    parts = cleaned.split("/")
    out = ""
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if part == "**":
            out += ".*" if last else "(?:.*/)?"
            continue
        out += _segment_regex(part) + ("" if last else "/")
    return re.compile(out + r"\Z", re.DOTALL)


def _name_matcher(pattern: str | None) -> re.Pattern[str] | None:
    """A glob over one directory's entry names (``*.txt``); None lists everything."""
    if pattern is None or pattern.strip() in ("", "*", "**", "**/*"):
        return None
    cleaned = pattern.strip()
    if "/" in cleaned or "\x00" in cleaned:
        raise ToolError(
            f"pattern {pattern!r} is matched against names in one directory, like '*.txt'; "
            "to match paths in sub-directories use search_files"
        )
    return re.compile(_segment_regex(cleaned) + r"\Z", re.DOTALL)


def _segment_regex(segment: str) -> str:
    out = ""
    i = 0
    while i < len(segment):
        char = segment[i]
        if char == "*":
            out += "[^/]*"
        elif char == "?":
            out += "[^/]"
        elif char == "[":
            end = segment.find("]", i + 2 if segment[i + 1 : i + 2] in ("!", "]") else i + 1)
            if end == -1:
                out += re.escape(char)
            else:
                body = segment[i + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out += "[" + body.replace("\\", "\\\\") + "]"
                i = end
        else:
            out += re.escape(char)
        i += 1
    return out


#: The regex of the pattern that matches every file (search_files' default).
_ALL_FILES = glob_to_regex("**/*").pattern


# ---------------------------------------------------------------------- the tools


class BuiltinTools:
    """The tool implementations, bound to one workspace and one sandbox."""

    def __init__(self, workspace: Workspace, sandbox: Sandbox, mcp: MCPSettings) -> None:
        self.workspace = workspace
        self.sandbox = sandbox
        self.settings = mcp
        #: Earlier texts of small files this server changed, oldest first, per path (the
        #: least recently changed path is forgotten first): see ``_resent_copy``.
        self._earlier: OrderedDict[str, list[str]] = OrderedDict()
        #: Writes refused by ``_refuse_misplaced_once`` (path, content hash): sent again,
        #: they go through.
        self._confirmed: set[tuple[str, int]] = set()
        #: The last partial JSON object merged into each file (see ``_guard_json``).
        self._json_merges: dict[str, str] = {}

    def _remember(self, rel: str, text: str | None) -> None:
        if text is None or len(text) > _HISTORY_CHARS:
            return
        versions = self._earlier.pop(rel, [])
        if not versions or versions[-1] != text:
            versions.append(text)
        self._earlier[rel] = versions[-_HISTORY_VERSIONS:]
        while len(self._earlier) > _HISTORY_FILES:
            self._earlier.popitem(last=False)

    def _small_bytes(self, path: str, limit: int) -> bytes | None:
        """The bytes of an existing file of at most ``limit`` bytes, None if not one."""
        try:
            fd = self.workspace.open(path, os.O_RDONLY)
        except ToolError:
            return None
        with os.fdopen(fd, "rb") as handle:
            raw = handle.read(limit + 1)
        return None if len(raw) > limit else raw

    def _small_text(self, path: str) -> str | None:
        """The text of a small existing file (for ``_remember``), None if not one."""
        raw = self._small_bytes(path, _HISTORY_CHARS)
        return None if raw is None else raw.decode("utf-8", errors="replace")

    # -- read_file

    def read_file(self, path: str, offset: int = 0, limit: int | None = None) -> CallToolResult:
        ws = self.workspace
        real = ws.resolve(path)
        rel = ws.relative(real)
        fd = ws.open(path, os.O_RDONLY)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ToolError(f"{path!r} is not a regular file")
            size = st.st_size
            sample = os.pread(fd, _SNIFF_BYTES, 0)
            kind = _sniff_binary(sample)
            if kind is not None:
                raise ToolError(
                    f"{rel!r} looks like {kind} ({_human_size(size)}); read_file only shows "
                    "text. To inspect it, use execute_python (e.g. open(path, 'rb').read(64))"
                )
            utf8 = _valid_utf8(sample)
            budget = self.settings.max_read_chars
            shown: list[str] = []
            used = 0
            cut = 0
            index = -1
            more = by_limit = False
            for index, line in enumerate(_iter_lines(fd)):
                if index < offset:
                    continue
                if limit is not None and len(shown) >= limit:
                    more = by_limit = True
                    break
                display = line
                if len(line) > MAX_LINE_CHARS:
                    cut += 1
                    extra = len(line) - MAX_LINE_CHARS
                    display = f"{line[:MAX_LINE_CHARS]} … [line cut: {extra} more characters]"
                if shown and used + len(display) > budget:
                    more = True
                    break
                shown.append(display)
                used += len(display) + 1
            seen = index + 1
            if offset and offset >= seen and not shown:
                raise ToolError(
                    f"offset={offset} is past the end of {rel!r}, which has {seen} lines; "
                    f"use an offset below {seen} (offset=0 reads from the start)"
                )
            total = _count_lines(fd, size) if size <= MAX_COUNT_BYTES else None
        finally:
            os.close(fd)
        first = offset + 1
        last = offset + len(shown)
        next_offset = last if more else None
        body = "".join(f"{first + i:>6}\t{line}\n" for i, line in enumerate(shown))
        of_total = f" of {total}" if total is not None else ""
        if size == 0:
            footer = f"[{rel} is empty: 0 bytes]"
        elif next_offset is not None and by_limit and total is not None and size <= budget:
            # Measured: given limit=1, the embedded model read a 5-line config.json line by
            # line, then past its end, and spent 9 of its 10 steps on it.
            footer = (
                f"[lines {first}-{last}{of_total} of {rel} ({_human_size(size)}). The other "
                f"{total - last} line(s) fit in one page: call read_file with "
                f"offset={next_offset} and no limit.]"
            )
        elif next_offset is not None:
            footer = (
                f"[lines {first}-{last}{of_total} of {rel} ({_human_size(size)}). "
                f"To read on, call read_file with offset={next_offset}.]"
            )
        else:
            footer = f"[end of {rel}: lines {first}-{last}{of_total}, {_human_size(size)}]"
        if not utf8:
            footer += "\n[the file is not valid UTF-8; undecodable bytes are shown as �]"
        if cut:
            footer += (
                f"\n[{cut} line(s) longer than {MAX_LINE_CHARS} characters were cut; "
                "use execute_python to see them whole]"
            )
        data = ReadFileResult(
            path=rel,
            content="".join(line + "\n" for line in shown),
            offset=offset,
            lines_returned=len(shown),
            total_lines=total,
            next_offset=next_offset,
            size_bytes=size,
            long_lines_cut=cut,
        )
        return _result(body + footer, data)

    # -- write_file

    def write_file(self, path: str, content: str, append: bool = False) -> CallToolResult:
        ws = self.workspace
        real = ws.resolve(path)
        rel = ws.relative(real)
        created = not real.exists()
        if created and not real.parent.exists():
            self._refuse_misplaced_once(rel, content)
        notes: list[str] = []
        unnumbered = _without_line_numbers(content)
        if unnumbered is not None:
            # Measured: the embedded model wrote read_file's display ("     1   bread")
            # into shopping.txt; those numbers are the display's, never the file's.
            content = unnumbered
            notes.append("removed the line numbers read_file shows (they are not in files)")
        fenced = _FENCED.match(content)
        if fenced and real.suffix.lower() not in _MARKUP_SUFFIXES:
            # Models wrap file content in a markdown fence; a JSON or Python file with the
            # fence in it is broken, so the fence goes and the result says so.
            content = fenced.group(1) + "\n"
            notes.append("removed the markdown code fence around the content")
        if real.suffix.lower() == ".json" and not append:
            _refuse_python_literal_as_json(content)
            if not created:
                merged = self._guard_json(path, rel, content)
                if merged is not None:
                    content, note = merged
                    notes.append(note)
        if not created and real.suffix.lower() in _DATA_SUFFIXES and _looks_like_code(content):
            # Measured on the embedded model: it wrote its failing script over sales.csv,
            # three times; the user's data was gone and the answer made up.
            raise ToolError(
                f"{rel} is a data file and this content is Python code, so the file was left "
                "unchanged; to run code use execute_python (it can open the file by name)"
            )
        before = None if created or append else self._small_text(path)
        if before is not None:
            kept = self._keep_own_changes(rel, before, content)
            if kept is not None:
                content = kept
                notes.append(
                    "content was based on the file as it was before your last change to it, "
                    "so that change was kept and yours were made on top of it"
                )
        mode = os.O_RDWR | os.O_APPEND if append else os.O_WRONLY | os.O_TRUNC
        fd = ws.open(path, mode | os.O_CREAT, create_parents=True)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ToolError(f"{path!r} is not a regular file")
            if append and st.st_size and content:
                current = _resent_whole_file(fd, st.st_size, content)
                if current is not None:
                    # Small models resend the whole file plus the new line with append=true;
                    # appending that would duplicate the file, so it becomes the content.
                    os.ftruncate(fd, 0)
                    notes.append(
                        "content began with the file's whole current text, so it replaced "
                        "the file instead of being appended (append=true takes only the "
                        "new text)"
                    )
                    append = False
                else:
                    copy = _resent_copy(fd, st.st_size, content, self._earlier.get(rel, []))
                    if copy is not None:
                        before = copy.current
                    if copy is not None and copy.tail is not None:
                        # Measured: after an edit_file it appended the file as it was before
                        # the edit plus the new line, undoing nothing but duplicating all.
                        content = copy.tail
                        notes.append(
                            "content began with an earlier copy of the file (before your "
                            "last change), so only the new line(s) after it were appended "
                            "(append=true takes only the new text)"
                        )
                    elif copy is not None:
                        # Measured: it sent the whole file with its edit made and the new
                        # line added, with append=true: the edit is the intent, not a copy.
                        os.ftruncate(fd, 0)
                        append = False
                        notes.append(
                            "content was the file's lines with some changed and new ones "
                            "added, so it replaced the file instead of being appended "
                            "(append=true takes only the new text)"
                        )
                    if append:
                        content, dropped = _as_new_lines(content, os.pread(fd, 1, st.st_size - 1))
                        if dropped:
                            notes.append(dropped)
            data = content.encode("utf-8")
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
        finally:
            os.close(fd)
        self._remember(rel, before)
        if created:
            what = "new file"
        else:
            what = "appended to the end" if append else "replaced the previous content"
        text = f"Wrote {len(data)} bytes to {rel} ({what})."
        if notes:
            text += " Note: " + "; ".join(notes) + "."
        return _result(text, WriteFileResult(path=rel, bytes_written=len(data), created=created))

    def _keep_own_changes(self, rel: str, current: str, content: str) -> str | None:
        """``content`` with this server's last changes to the file merged back, or None.

        When the whole file is written from a copy read before an earlier change this
        server made (an ``edit_file``, a write), writing it as given would undo that
        change: the two edits are merged (``merge3``) when they touch different lines.
        Content that is an earlier text exactly is a revert and is written as given, as is
        content whose changes clash with the file's (its version of those lines wins).
        """
        versions = self._earlier.get(rel, [])
        if content == current or content in versions:
            return None
        given = content.splitlines()
        now = current.splitlines()
        for base_text in reversed(versions):
            base = base_text.splitlines()
            if base == now or _likeness(base, given) <= _likeness(now, given):
                continue
            merged = merge3(base, now, given)
            if merged is None or merged == given:
                return None
            return "\n".join(merged) + ("\n" if content.endswith("\n") else "")
        return None

    def _refuse_misplaced_once(self, rel: str, content: str) -> None:
        """Refuse a new file in a new folder when the file exists without that folder.

        Measured on the embedded model: told to change config.json "in the user's
        workspace", it wrote ``user/config.json`` (folder and file new) and reported the
        port changed; config.json was untouched. The first such call is refused with the
        existing path; the same call sent again is taken as meant and goes through.
        """
        parts = Path(rel).parts
        existing = None
        for start in range(1, len(parts)):
            candidate = Path(*parts[start:])
            with contextlib.suppress(ToolError, OSError):
                if self.workspace.resolve(candidate).is_file():
                    existing = str(candidate)
                    break
        if existing is None:
            return
        key = (rel, hash(content))
        if key in self._confirmed:
            return
        self._confirmed.add(key)
        missing = next(
            str(Path(*parts[:end]))
            for end in range(1, len(parts))
            if not self.workspace.resolve(Path(*parts[:end])).exists()
        )
        raise ToolError(
            f"{rel} was not written: there is no folder {missing}/ in the workspace, but "
            f"there is {existing}. Paths are relative to the workspace, so to change that "
            f"file use path={existing!r}. To create {rel} (and its folders) as a new file, "
            "send the same call again."
        )

    def _guard_json(self, path: str, rel: str, content: str) -> tuple[str, str] | None:
        """Keep a valid JSON file's settings when a write would lose them by mistake.

        Measured on the embedded model: asked to change a port, it overwrote config.json
        with "port: 9090" (not JSON: refused, the file unchanged, the error gives the
        edit_file texts), and with ``{"port": 9090}``: an object with only some of the
        keys, changing a value. Told to use edit_file, it sent the same object again, so
        such an object is merged into the file (``(content, note)``): only the values it
        changes are edited in the file's own text, the rest stays as it was. An object
        with some keys left out and no value changed is a deletion, written as given.
        """
        new_value: object = None
        problem: str | None = None
        try:
            new_value = json.loads(content)
        except ValueError as exc:
            problem = str(exc)
        current = self._small_bytes(path, _JSON_GUARD_BYTES)
        if current is None:
            return None
        try:
            value = json.loads(current)
        except ValueError:
            return None  # it was not JSON before either: nothing to protect
        if problem is None:
            if not (isinstance(value, dict) and isinstance(new_value, dict) and new_value):
                return None
            dropped = [key for key in value if key not in new_value]
            if not dropped or any(key not in value for key in new_value):
                return None
            changed = [key for key in new_value if new_value[key] != value[key]]
            text = current.decode("utf-8", errors="replace")
            names = ", ".join(map(repr, dropped[:8]))
            if not changed and self._json_merges.get(rel) == content:
                # Measured (after run 10): the same object sent again after it was merged
                # would have read as a deletion and dropped the keys the merge had kept.
                return text, (
                    f"{rel} already had these values (the same content was merged before), "
                    f"so nothing changed and {names} stayed"
                )
            if not changed:
                return None  # keys left out, nothing changed: a deletion
            merged = _json_merged(text, value, {key: new_value[key] for key in changed})
            if merged is not None:
                self._json_merges[rel] = content
                return merged, (
                    f"the content had only {', '.join(map(repr, new_value))} of {rel}'s keys, "
                    f"so only {'that value was' if len(changed) == 1 else 'those values were'} "
                    f"changed and {names} kept (write_file replaces a whole file; to change "
                    "one value use edit_file)"
                )
            message = (
                f"this would remove {names} from {rel} (the new content has only "
                f"{', '.join(map(repr, new_value))}), so the file was left unchanged; to "
                "change a value use edit_file on its line, or write the whole object with "
                "every key"
            )
            key = changed[0]
            content = f"{key}: {json.dumps(new_value[key], ensure_ascii=False)}"
        else:
            message = (
                f"{rel} holds valid JSON and the new content is not JSON ({problem}), so the "
                "file was left unchanged; to change one value use edit_file on that line, or "
                "write the whole file as JSON"
            )
        edit = _json_edit_for(current.decode("utf-8", errors="replace"), value, content)
        if edit is not None:
            message += f"; here: edit_file with old_text={edit[0]!r} and new_text={edit[1]!r}"
        raise ToolError(message)

    # -- edit_file

    def edit_file(
        self, path: str, old_text: str, new_text: str, replace_all: bool = False
    ) -> CallToolResult:
        ws = self.workspace
        if old_text == "":
            raise ToolError(
                "old_text is empty; give the exact text to replace (use write_file to create "
                "or overwrite a whole file)"
            )
        if old_text == new_text:
            raise ToolError("old_text and new_text are the same; nothing would change")
        real = ws.resolve(path)
        rel = ws.relative(real)
        fd = ws.open(path, os.O_RDWR)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ToolError(f"{path!r} is not a regular file")
            if st.st_size > MAX_EDIT_BYTES:
                raise ToolError(
                    f"{rel!r} is {_human_size(st.st_size)}, too large to edit in place "
                    f"(limit {_human_size(MAX_EDIT_BYTES)}); use execute_python"
                )
            raw = os.pread(fd, st.st_size + 1, 0)
            try:
                original = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise ToolError(
                    f"{rel!r} is not UTF-8 text; edit_file only edits text files"
                ) from None
            old, new = old_text, new_text
            note = ""
            if "\r\n" in original and "\r\n" not in old and "\n" in old:
                # The model writes "\n"; the file uses Windows line endings.
                old, new = old.replace("\n", "\r\n"), new.replace("\n", "\r\n")
            count = original.count(old)
            unnumbered = _without_line_numbers(old) if count == 0 else None
            if unnumbered is not None and unnumbered in original:
                # old_text copied from read_file's display, line numbers and all.
                old, new = unnumbered, _without_line_numbers(new) or new
                count = original.count(old)
                note = " Note: removed the line numbers read_file shows (they are not in files)."
            if count == 0:
                raise ToolError(self._no_match(rel, original, old_text))
            if count > 1 and not replace_all:
                where = _match_lines(original, old)
                raise ToolError(
                    f"old_text occurs {count} times in {rel!r} (at lines {where}); add "
                    "surrounding lines to old_text so it matches exactly once, or set "
                    "replace_all=true to replace every occurrence"
                )
            first_line = original.count("\n", 0, original.index(old)) + 1
            updated = original.replace(old, new) if replace_all else original.replace(old, new, 1)
            encoded = updated.encode("utf-8")
            os.lseek(fd, 0, os.SEEK_SET)
            view = memoryview(encoded)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.ftruncate(fd, len(encoded))
        finally:
            os.close(fd)
        self._remember(rel, original)
        replaced = count if replace_all else 1
        text = f"Replaced {replaced} occurrence(s) in {rel} (first at line {first_line}).{note}"
        return _result(
            text,
            EditFileResult(
                path=rel, replacements=replaced, first_line=first_line, bytes_written=len(encoded)
            ),
        )

    @staticmethod
    def _no_match(rel: str, original: str, old_text: str) -> str:
        message = (
            f"old_text was not found in {rel!r}. It must match the file exactly, including "
            "whitespace and indentation; read_file the region again and copy the text"
        )
        first = next((line.strip() for line in old_text.splitlines() if line.strip()), "")
        if first:
            for number, line in enumerate(original.splitlines(), start=1):
                if line.strip() == first:
                    return message + (
                        f" (a line equal to the first line of old_text, ignoring indentation, "
                        f"is at line {number})"
                    )
        return message

    # -- list_directory

    def list_directory(self, path: str = ".", pattern: str | None = None) -> CallToolResult:
        ws = self.workspace
        path = path.strip() or "."  # measured: the embedded model sends "" for the workspace
        matcher = _name_matcher(pattern)
        real = ws.resolve(path)
        rel = ws.relative(real)
        entries: list[DirectoryEntry] = []
        in_all = 0
        try:
            with ws.open_dir(path) as fd, os.scandir(fd) as scan:
                for item in scan:
                    in_all += 1
                    if matcher is None or matcher.match(item.name):
                        entries.append(self._entry(real, fd, item))
        except ToolError:
            if real.exists() and not real.is_dir():
                raise ToolError(
                    f"{rel!r} is a file, not a directory; use read_file to read it"
                ) from None
            raise
        entries.sort(key=lambda e: (e.type != "directory", e.name.lower(), e.name))
        total = len(entries)
        shown = entries[:MAX_DIR_ENTRIES]
        if pattern is None:
            head = f"{rel}/ ({total} entries)" if total else f"{rel}/ is empty"
        elif total:
            head = f"{rel}/ ({total} of {in_all} entries match {pattern!r})"
        else:
            head = f"{rel}/: no entry matches {pattern!r} ({in_all} entries in all)"
        lines = [head]
        for entry in shown:
            if entry.type == "directory":
                lines.append(f"  {entry.name}/")
            elif entry.type == "symlink":
                lines.append(f"  {entry.name} -> {entry.target}")
            elif entry.type == "file":
                lines.append(f"  {entry.name}  ({_human_size(entry.size or 0)})")
            else:
                lines.append(f"  {entry.name}  (special file)")
        if total > len(shown):
            lines.append(
                f"[{total - len(shown)} more entries not shown; use search_files with a "
                "pattern to narrow down]"
            )
        data = ListDirectoryResult(
            path=rel, entries=shown, total=total, truncated=total > len(shown)
        )
        return _result("\n".join(lines), data)

    def _entry(self, directory: Path, fd: int, item: os.DirEntry[str]) -> DirectoryEntry:
        try:
            st = os.stat(item.name, dir_fd=fd, follow_symlinks=False)
        except OSError:
            return DirectoryEntry(name=item.name, type="other")
        if stat.S_ISLNK(st.st_mode):
            try:
                target = os.readlink(item.name, dir_fd=fd)
            except OSError:
                target = "?"
            resolved = Path(os.path.realpath(directory / item.name))
            root = self.workspace.root
            if resolved != root and root not in resolved.parents:
                target += " (outside the workspace: not accessible)"
            return DirectoryEntry(name=item.name, type="symlink", target=target)
        if stat.S_ISDIR(st.st_mode):
            return DirectoryEntry(name=item.name, type="directory")
        if stat.S_ISREG(st.st_mode):
            return DirectoryEntry(name=item.name, type="file", size=st.st_size)
        return DirectoryEntry(name=item.name, type="other")

    # -- search_files

    def search_files(
        self,
        pattern: str = "**/*",
        text: str | None = None,
        path: str = ".",
        regex: bool = False,
        ignore_case: bool = False,
        max_results: int = 100,
    ) -> CallToolResult:
        ws = self.workspace
        path = path.strip() or "."
        if pattern.startswith("/") or "\x00" in pattern:
            raise ToolError(
                f"pattern {pattern!r} must be relative to the search directory, like '**/*.py'"
            )
        matcher = glob_to_regex(pattern)
        needle: re.Pattern[str] | None = None
        if text == "":
            text = None  # measured: the embedded model fills every optional string with ""
        if text is not None:
            flags = re.IGNORECASE if ignore_case else 0
            try:
                needle = re.compile(text if regex else re.escape(text), flags)
            except re.error as exc:
                raise ToolError(
                    f"invalid regular expression {text!r}: {exc}; fix it or set regex=false"
                ) from None
        base = ws.resolve(path)
        base_rel = ws.relative(base)
        matches: list[SearchMatch] = []
        files_matched = skipped_binary = skipped_large = scanned = 0
        truncated = False
        with ws.open_dir(path) as base_fd:
            walker = os.fwalk(".", dir_fd=base_fd, follow_symlinks=False)
            for dirpath, dirnames, filenames, dir_fd in walker:
                dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
                for name in sorted(filenames):
                    rel_in_base = os.path.normpath(os.path.join(dirpath, name))
                    if not matcher.match(rel_in_base):
                        continue
                    scanned += 1
                    if scanned > MAX_SEARCH_FILES:
                        truncated = True
                        break
                    shown_path = rel_in_base if base_rel == "." else f"{base_rel}/{rel_in_base}"
                    try:
                        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                    except OSError:
                        continue
                    if not stat.S_ISREG(st.st_mode):
                        continue  # symlinks are found where they point, if that is inside
                    files_matched += 1
                    if needle is None:
                        matches.append(SearchMatch(path=shown_path, size=st.st_size))
                    elif st.st_size > MAX_SEARCH_FILE_BYTES:
                        skipped_large += 1
                        continue
                    else:
                        found = _grep(name, dir_fd, needle, max_results + 1 - len(matches))
                        if found is None:
                            skipped_binary += 1
                            continue
                        for line_no, line in found:
                            matches.append(SearchMatch(path=shown_path, line=line_no, text=line))
                    # One past the limit, so "stopped at max_results" is only said when
                    # there is more (measured: max_results=1 with exactly one match made
                    # the embedded model repeat the search until it ran out of steps).
                    if len(matches) > max_results:
                        del matches[max_results:]
                        truncated = True
                        break
                if truncated:
                    break
        data = SearchFilesResult(
            matches=matches,
            files_matched=files_matched,
            truncated=truncated,
            skipped_binary=skipped_binary,
            skipped_large=skipped_large,
        )
        word = _pattern_word(pattern) if text is None and not matches else None
        if word is not None:
            # A bare word as the pattern finds only a file named exactly that; models mean
            # "files that mention it" (measured: the embedded model ignored the hint to pass
            # text and looped; later it sent '*.octopus'). Search the contents, and say so.
            inner = self.search_files("**/*", word, path, False, True, max_results)
            return _noted(
                inner,
                f"no file name matches {pattern!r}, so the files' contents were searched "
                f"for {word!r} (as text={word!r}, ignore_case=true)",
            )
        if text is not None and not matches and matcher.pattern != _ALL_FILES:
            # Measured on the embedded model: it searched '*.py' for a word in a .txt file
            # three times. The wider search costs one more walk and answers the question.
            wider = self.search_files("**/*", text, path, regex, ignore_case, max_results)
            if (wider.structured_content or {}).get("matches"):
                return _noted(
                    wider,
                    f"no file matching {pattern!r} contains {text!r}; searching every file "
                    "found these",
                )
        out = self._search_text(data, pattern, text, base_rel, max_results)
        if text is None and (regex or ignore_case):
            # Measured on the embedded model: it sets regex/ignore_case, forgets text, and
            # then takes the file list for a content search.
            out += (
                "\n[regex and ignore_case apply to text, which was not given: these are file "
                "names only, their contents were not searched; pass text to find the files "
                "that contain it]"
            )
        return _result(out, data)

    @staticmethod
    def _search_text(
        data: SearchFilesResult, pattern: str, text: str | None, base: str, max_results: int
    ) -> str:
        where = f"in {base}/" if base != "." else "in the workspace"
        if text is None:
            lines = [m.path for m in data.matches]
            summary = f"{len(data.matches)} file(s) matching {pattern!r} {where}"
        else:
            lines = [f"{m.path}:{m.line}: {m.text}" for m in data.matches]
            names = list(dict.fromkeys(m.path for m in data.matches))
            # Named in the summary: asked "which file mentions the octopus?", the embedded
            # model answered with the matching line and left out the name before it.
            named = f": {', '.join(names)}" if len(names) <= _NAMED_FILES else ""
            summary = (
                f"{len(data.matches)} match(es) for {text!r} in {len(names)} file(s){named} "
                f"(pattern {pattern!r}, {where})"
            )
        if not data.matches:
            hint = "try a broader pattern like '**/*' or check the spelling"
            if text is None and not any(char in pattern for char in "*?[./"):
                hint = (
                    f"pattern matches file names; to find files that contain {pattern!r}, "
                    f"call search_files with text={pattern!r}"
                )
            summary = f"No matches: {summary}; {hint}"
        notes: list[str] = []
        if data.truncated:
            notes.append(
                f"stopped at max_results={max_results}; narrow the pattern or the text, "
                "or raise max_results"
            )
        if data.skipped_binary:
            notes.append(f"{data.skipped_binary} binary file(s) skipped")
        if data.skipped_large:
            notes.append(
                f"{data.skipped_large} file(s) over {_human_size(MAX_SEARCH_FILE_BYTES)} skipped"
            )
        skipped_dirs = ", ".join(sorted(SKIP_DIRS))
        out = "\n".join([*lines, f"[{summary}]"])
        if notes:
            out += "\n[" + "; ".join(notes) + "]"
        if not data.matches:
            out += f"\n[directories never searched: {skipped_dirs}]"
        return out

    # -- execute_python

    async def execute_python(
        self, code: str, timeout_seconds: float | None = None
    ) -> CallToolResult:
        limit = self.sandbox.settings.timeout_seconds
        capped = timeout_seconds is not None and timeout_seconds > limit
        timeout = limit if timeout_seconds is None or capped else timeout_seconds
        command = _shell_python_command(code)
        if command is not None:
            # "python fib.py" is not Python, and models send it anyway (then loop on the
            # SyntaxError): it can only mean "run that script", so that is what runs.
            script, args = command
            code = (
                f"import runpy, sys\nsys.argv = {[script, *args]!r}\n"
                f"runpy.run_path({script!r}, run_name='__main__')\n"
            )
        repair = None if command is not None else repair_python(code)
        if repair is not None:
            code = repair.code
        shown = None if command is not None else _shown_last_value(code)
        if shown is not None:
            code = shown[0]
        missing = [] if command is not None else _unimported_modules(code)
        if missing:
            # "csv.DictReader(...)" without "import csv" can only fail with a NameError, and
            # the embedded model does not recover from that (it edits the data file instead);
            # the import it forgot is added on the first line, and the result says so.
            code = f"import {', '.join(missing)}\n{code}"
        result = await self.sandbox.run_python(code, timeout_seconds=timeout)
        if command is not None:
            result.notes.append(
                f"the code was a shell command, so the script {command[0]} was run "
                "(execute_python takes Python source)"
            )
        elif not result.ok:
            result.notes.extend(_python_error_hints(code, result.stderr, self._csv_columns))
        if repair is not None and repair.line_breaks_escaped:
            result.notes.append(
                "a line break inside a '...' string cannot be Python, so it was run as the "
                "escape \\n (in the JSON of the call, write \\\\n for that)"
            )
        if repair is not None and repair.unfolded:
            # Told "put each statement on its own line", the embedded model sent the same
            # line three times; the unfolded code runs instead, and is shown to be reused.
            result.notes.append(
                "the code was one line that Python cannot parse (a block such as for/if/with "
                "after ';', or a missing ';'), so it ran with one statement per line, as "
                "below; check that each block ends where you meant:\n" + repair.code.rstrip("\n")
            )
        if missing:
            names = ", ".join(missing)
            result.notes.append(
                f"added 'import {names}' as line 1: the code uses {names} without importing "
                "it (line numbers above are one higher than in your code)"
            )
        if shown is not None and result.ok:
            result.notes.append(
                "the code prints nothing and ends in an assignment, so that value is shown "
                "(the last line was added); use print() for the results you need"
                if shown[1]
                else "the code ends in an expression: its value is printed unless it is None "
                "(as a notebook shows it); use print() for anything else"
            )
        if capped:
            result.notes.append(f"timeout_seconds was capped at the configured {limit:g} s")
        out = _result(_format_run(result), _run_data(result))
        # A script that raised, exited non-zero or was killed is a failed call (isError),
        # with the whole run still in the result: agents then treat it as a call to fix, not
        # as an answer (measured: after a TypeError the embedded model gave a made-up sum).
        out.is_error = not result.ok
        return out

    def _csv_columns(self, code: str) -> dict[str, list[str]]:
        """The column names (first line) of each workspace CSV file the code names."""
        found: dict[str, list[str]] = {}
        for name in dict.fromkeys(_CSV_NAME.findall(code)):
            try:
                fd = self.workspace.open(name, os.O_RDONLY)
            except ToolError:
                continue
            with os.fdopen(fd, "rb") as handle:
                head = handle.read(8192).decode("utf-8-sig", errors="replace")
            first = head.splitlines()[0] if head.strip() else ""
            if not first:
                continue
            delimiter = max(",;\t", key=first.count) if any(c in first for c in ",;\t") else ","
            found[name] = [
                column.strip() for column in next(csv.reader([first], delimiter=delimiter))
            ]
        return found


def _grep(
    name: str, dir_fd: int, needle: re.Pattern[str], room: int
) -> list[tuple[int, str]] | None:
    """Matching lines of one file (at most ``room``), or ``None`` for a binary file."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except OSError:
        return []
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped since the walk saw it
            return []
        if _sniff_binary(os.pread(fd, _SNIFF_BYTES, 0)) is not None:
            return None
        found: list[tuple[int, str]] = []
        for number, line in enumerate(_iter_lines(fd), start=1):
            if needle.search(line):
                trimmed = line.strip()
                if len(trimmed) > 300:
                    trimmed = trimmed[:300] + " …"
                found.append((number, trimmed))
                if len(found) >= room:
                    break
        return found
    finally:
        os.close(fd)


def _match_lines(text: str, old: str) -> str:
    lines: list[str] = []
    start = text.find(old)
    while start != -1 and len(lines) < 10:
        lines.append(str(text.count("\n", 0, start) + 1))
        start = text.find(old, start + len(old))
    return ", ".join(lines)


def _run_data(result: SandboxResult) -> ExecutePythonResult:
    return ExecutePythonResult(
        stdout=result.stdout,
        stderr=result.stderr,
        exit_code=result.exit_code,
        timed_out=result.timed_out,
        killed_by_signal=result.killed_by_signal,
        truncated=result.truncated,
        isolated=result.isolated,
        notes=list(result.notes),
        duration_seconds=result.duration_seconds,
    )


def _format_run(result: SandboxResult) -> str:
    if result.timed_out:
        head = "timed out (killed)"
    elif result.killed_by_signal:
        head = f"killed by {result.killed_by_signal} (exit code {result.exit_code})"
    else:
        head = f"exit code {result.exit_code}"
    where = "sandboxed" if result.isolated else "NOT sandboxed"
    parts = [f"{head} ({where}, {result.duration_seconds:.2f} s)"]
    if result.stdout:
        parts.append("--- stdout ---\n" + result.stdout.rstrip("\n"))
    if result.stderr:
        parts.append("--- stderr ---\n" + result.stderr.rstrip("\n"))
    if not result.stdout and not result.stderr:
        parts.append("(no output; use print() to show results)")
    if result.notes:
        parts.append("--- notes ---\n" + "\n".join(f"- {note}" for note in result.notes))
    return "\n".join(parts)


#: Data files that write_file will not replace (or extend) with Python code.
_DATA_SUFFIXES = frozenset(
    {".csv", ".tsv", ".json", ".jsonl", ".yaml", ".yml", ".toml", ".ini", ".xml"}
)
_CODE_MARKERS = re.compile(
    r"^\s*(?:import\s+\w|from\s+\w+\s+import\b|def\s+\w+\s*\(|class\s+\w+\s*[(:])|"
    r"\b(?:print|open|sum|len|range)\s*\(|\b(?:csv|json|os|sys)\.\w+\s*\(",
    re.MULTILINE,
)


def _as_new_lines(content: str, last_byte: bytes) -> tuple[str, str | None]:
    """``content`` to append after a file whose last byte is ``last_byte``: on a line of its
    own, ending like the file's lines do; and a note when a newline was dropped."""
    if last_byte != b"\n":
        return "\n" + content, None  # a new line, not glued to the last one
    note = None
    if content.startswith("\n") and not content.startswith("\n\n") and content.strip():
        # Measured: for "add June,1500 as a new last line of sales.csv" the embedded model
        # sent "\nJune,1500"; the file already ends with a newline, so that was an empty
        # line in the CSV. Two newlines ask for a blank line and are kept.
        content = content[1:]
        note = (
            "the file already ends with a newline, so the one your content began with was "
            "dropped (it would have left an empty line)"
        )
    if not content.endswith("\n"):
        content += "\n"  # the file's lines end with a newline; so does the new one
    return content, note


def _looks_like_code(content: str) -> bool:
    """Python source rather than data: an import, a def, or a call such as print(...)."""
    return _CODE_MARKERS.search(content) is not None


#: Up to this size an existing JSON file is checked before write_file replaces it.
_JSON_GUARD_BYTES = 4 * 1024 * 1024


_KEY_VALUE = re.compile(r"""^\s*["']?([\w.-]+)["']?\s*[:=]\s*(.+?)\s*,?\s*$""")


def _json_merged(text: str, value: dict[str, Any], changes: dict[str, Any]) -> str | None:
    """``text`` (the JSON object ``value``) with the top-level ``changes`` made in place,
    keeping its layout; None when a value cannot be found exactly once in the text."""
    for key, new in changes.items():
        old = json.dumps(value[key], ensure_ascii=False)
        pattern = re.compile(rf"{re.escape(json.dumps(key))}\s*:\s*{re.escape(old)}")
        found = list(pattern.finditer(text))
        if len(found) != 1:
            return None
        start, end = found[0].span()
        head = found[0].group(0)[: len(found[0].group(0)) - len(old)]
        text = text[:start] + head + json.dumps(new, ensure_ascii=False) + text[end:]
    try:
        merged_ok = json.loads(text) == {**value, **changes}
    except ValueError:
        return None
    return text if merged_ok else None


def _json_edit_for(text: str, value: object, content: str) -> tuple[str, str] | None:
    """The edit_file texts that set ``key`` as ``content`` ("port: 9090") says, if the JSON
    object has that key at its top level: ('"port": 8080', '"port": 9090')."""
    lines = content.strip().splitlines()
    match = _KEY_VALUE.match(lines[0]) if len(lines) == 1 else None
    if match is None or not isinstance(value, dict) or match.group(1) not in value:
        return None
    key, raw = match.groups()
    try:
        new_value = json.loads(raw)
    except ValueError:
        new_value = raw.strip("'\"")
    old = json.dumps(value[key], ensure_ascii=False)
    found = re.search(rf"{re.escape(json.dumps(key))}\s*:\s*{re.escape(old)}", text)
    if found is None:
        return None
    return found.group(0), f"{json.dumps(key)}: {json.dumps(new_value, ensure_ascii=False)}"


def _refuse_python_literal_as_json(content: str) -> None:
    """Raise when ``content`` is a Python literal that is not JSON (``['a', 'b']``).

    That is a model's mistake, not a format the user wants; the error shows the JSON.
    Anything else that fails to parse (JSON with comments, a template) is written as is.
    """
    try:
        json.loads(content)
        return
    except ValueError as exc:
        problem = str(exc)
    try:
        value = ast.literal_eval(content.strip())
        as_json = json.dumps(value, ensure_ascii=False)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return
    if len(as_json) > 300:
        as_json = as_json[:300] + "…"
    raise ToolError(
        f"content is not valid JSON ({problem}): it is Python syntax; JSON needs double "
        f"quotes, true/false/null. Write it as JSON, e.g. {as_json}"
    )


@dataclass(frozen=True)
class _Copy:
    current: str  # the file's text before this write
    tail: str | None  # what to append: the lines after an earlier copy; None: replace


def _likeness(a: Sequence[str], b: Sequence[str]) -> float:
    """How alike two texts' lines are (0..1, difflib's ratio)."""
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def _resent_copy(fd: int, size: int, content: str, earlier: Sequence[str]) -> _Copy | None:
    """What an append that starts with a copy of the file, not the file as it is, means.

    - ``content`` starts with an earlier text of the file (one this server replaced) and
      goes on: the model re-sent what it read before its own edit; append only the rest.
    - Otherwise, a near copy (the file has at least two lines, ``content`` has more, and
      at least two thirds of the file's lines are the same, in place): the file with the
      model's changes made and lines added; it replaces the file.
    """
    if size > _RESEND_CHECK_BYTES:
        return None
    text = os.pread(fd, size, 0).decode("utf-8", errors="replace")
    current = text.splitlines()
    given = content.splitlines()
    for version in reversed(earlier):
        old = version.splitlines()
        if len(old) >= 2 and old != current and len(given) > len(old) and given[: len(old)] == old:
            tail = "\n".join(given[len(old) :])
            return _Copy(text, tail + "\n" if content.endswith("\n") else tail)
    if len(current) < 2 or len(given) <= len(current):
        return None
    same = sum(a == b for a, b in zip(current, given, strict=False))
    if 3 * same < 2 * len(current):
        return None
    return _Copy(text, None)


_NUMBERED_LINE = re.compile(r"( *)(\d{1,7})(?:[\t ]+(.*))?")


def _without_line_numbers(content: str) -> str | None:
    """``content`` without read_file's line-number column, if every line carries it.

    The display is ``f"{n:>6}\\t{line}"``; models copy it with the tab turned to spaces.
    Taken as that only when the numbers are right-aligned (at least four columns wide) and
    consecutive over two lines or more, or one line in the display's exact shape.
    """
    lines = content.split("\n")
    end = "\n" if len(lines) > 1 and lines[-1] == "" else ""
    if end:
        lines.pop()
    bodies: list[str] = []
    numbers: list[int] = []
    for line in lines:
        match = _NUMBERED_LINE.fullmatch(line)
        if match is None or len(match.group(1) + match.group(2)) < 4:
            return None
        numbers.append(int(match.group(2)))
        bodies.append(match.group(3) or "")
    if not numbers or numbers != list(range(numbers[0], numbers[0] + len(numbers))):
        return None
    if len(lines) == 1 and not re.fullmatch(r" *\d{1,7}\t.*", lines[0]):
        return None
    return "\n".join(bodies) + end


def _resent_whole_file(fd: int, size: int, content: str) -> str | None:
    """The file's text when ``content`` starts with all of it (a small text file only)."""
    if size > _RESEND_CHECK_BYTES or len(content.encode("utf-8")) < size:
        return None
    current = os.pread(fd, size, 0).decode("utf-8", errors="replace").rstrip("\n")
    return current if current and content.startswith(current) else None


_RESEND_CHECK_BYTES = 1 << 20
#: What ``BuiltinTools._remember`` keeps: files up to this size, so many versions each,
#: for so many files.
_HISTORY_CHARS = 64 * 1024
_HISTORY_VERSIONS = 4
_HISTORY_FILES = 64

# ---------------------------------------------------------------------- the server

_PATH_HELP = "Relative to the workspace root (an absolute path must lie inside it)."
_FENCED = re.compile(r"\A\s*```[\w+.-]*[ \t]*\n(.*?)\n?```\s*\Z", re.DOTALL)
#: Up to this many files with text matches are also listed by name in the summary.
_NAMED_FILES = 5
_MARKUP_SUFFIXES = frozenset({".md", ".markdown", ".mdx", ".rst", ".txt"})
_BARE_WORD = re.compile(r"[^\W\d][\w-]{1,63}")
#: A word in a pattern that names no file: '*.octopus' (longer than an extension) or
#: '*octopus*'; see ``_pattern_word``.
_GLOB_WORD = re.compile(r"(?:\*\*/)?\*(?:\.([^\W\d][\w-]{5,63})|([^\W\d][\w-]{2,63})\*)")


def _pattern_word(pattern: str) -> str | None:
    """The word a name pattern that matched nothing was most likely meant to find inside
    files: the pattern itself when a bare word, or the word in '*.octopus' / '*octopus*'."""
    if _BARE_WORD.fullmatch(pattern):
        return pattern
    match = _GLOB_WORD.fullmatch(pattern)
    return (match.group(1) or match.group(2)) if match else None


_SHELL_PYTHON = re.compile(r"\A\s*(?:\$\s*)?python3?\s+([\w./-]+\.py)((?:[ \t]+[^\n]*)?)\s*\Z")


_LAST_VALUE = "__octopussy_last_value__"
#: Calls made for what they do, whose return value (a byte count, a path) is noise.
#: Calls that show output: code with one of them prints what it means to (no last value).
_OUTPUT_CALLS = frozenset({"print", "write", "pprint", "display"})
_SIDE_EFFECT_CALLS = frozenset(
    {
        "print", "write", "writelines", "write_text", "write_bytes", "flush", "close",
        "dump", "save", "savefig", "to_csv", "to_json", "system", "sleep", "run", "exit",
    }
)  # fmt: skip


def _shown_last_value(code: str) -> tuple[str, bool] | None:
    """``code`` that also shows its last value, and whether that value is an assignment's.

    Small models write ``sum(rows)`` or ``total = sum(rows)`` and forget ``print``, then read
    "(no output)" and make a number up (measured, runs 4 and 12). A last expression is
    printed as a notebook shows it; a last assignment is shown when the code prints
    nothing. None if the code is unchanged (or does not parse).
    """
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return None
    if not tree.body:
        return None
    expression = _print_last_expression(code, tree)
    if expression is not None:
        return expression, False
    name = _last_assigned_name(tree)
    if name is None:
        return None
    rebuilt = code if code.endswith("\n") else code + "\n"
    return f"{rebuilt}print({name + ' ='!r}, repr({name}))\n", True


def _call_name(call: ast.Call) -> str:
    """``f`` for ``f(...)`` and ``x.f(...)``."""
    func = call.func
    return func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")


def _print_last_expression(code: str, tree: ast.Module) -> str | None:
    """``code`` that also prints the value of its last expression, as a notebook shows it.

    The last top-level statement, when it is an expression other than a ``print(...)``
    call or a literal, is bound to a name and printed unless it is ``None`` (so ``main()``
    prints nothing more). Line numbers stay as they were; None if unchanged.
    """
    if not isinstance(last := tree.body[-1], ast.Expr):
        return None
    value = last.value
    if isinstance(value, ast.Constant | ast.Await | ast.Yield | ast.YieldFrom):
        return None
    if isinstance(value, ast.Call) and _call_name(value) in _SIDE_EFFECT_CALLS:
        return None
    lines = code.splitlines(keepends=True)
    row = last.lineno - 1
    head = lines[row].encode("utf-8")
    lines[row] = (
        head[: last.col_offset] + f"{_LAST_VALUE} = ".encode() + head[last.col_offset :]
    ).decode("utf-8")
    rebuilt = "".join(lines)
    if not rebuilt.endswith("\n"):
        rebuilt += "\n"
    return f"{rebuilt}if {_LAST_VALUE} is not None:\n    print(repr({_LAST_VALUE}))\n"


def _last_assigned_name(tree: ast.Module) -> str | None:
    """The name the last statement assigns (``x = …``, ``x: int = …``, ``x += …``), when the
    code never prints or writes to stdout; None otherwise."""
    last = tree.body[-1]
    target: ast.expr | None = None
    if isinstance(last, ast.Assign) and len(last.targets) == 1:
        target = last.targets[0]
    elif isinstance(last, ast.AnnAssign | ast.AugAssign) and last.value is not None:
        target = last.target
    if not isinstance(target, ast.Name):
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _call_name(node) in _OUTPUT_CALLS:
            return None
    return target.id


def _unimported_modules(code: str) -> list[str]:
    """Standard-library modules ``code`` uses as ``name.attr`` but never imports or binds."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return []
    used: dict[str, None] = {}
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if isinstance(node.value.ctx, ast.Load):
                used[node.value.id] = None
        elif isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            bound.add(node.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            bound.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    return [
        name
        for name in used
        if name in sys.stdlib_module_names
        and name not in bound
        and not name.startswith("_")
        and name not in ("this", "antigravity")
    ]


_MISSING_KEY = re.compile(r"^KeyError: ('[^'\n]{1,80}'|\"[^\"\n]{1,80}\")$", re.M)
_CSV_NAME = re.compile(r"""['"]([^'"\n]{1,200}\.(?:csv|tsv))['"]""", re.IGNORECASE)
_MISSING_NAME = re.compile(r"NameError: name '(\w+)' is not defined")
_DICT_ROWS_UNPACKED = re.compile(
    r"\bfor\s+\(?\s*\w+\s*(?:,\s*\w+\s*)+\)?\s+in\s+(?:csv\.)?DictReader\b"
)
_STR_ARITHMETIC = re.compile(
    r"TypeError: (?:unsupported operand type\(s\) for [^:]+: '(?:int|float)' and 'str'|"
    r"unsupported operand type\(s\) for [^:]+: 'str' and '(?:int|float)'|"
    r"can only concatenate str|"
    r"'(?:<|>|<=|>=)' not supported between instances of '(?:str|int|float)' and "
    r"'(?:str|int|float)')"
)


def _python_error_hints(
    code: str, stderr: str, csv_columns: Callable[[str], dict[str, list[str]]]
) -> list[str]:
    """Plain hints for the mistakes small models make most with execute_python.

    ``csv_columns(code)`` gives the column names of the CSV files the code names, so a
    KeyError can say which names exist (measured: the embedded model wrote 'Revenue' for a
    column 'revenue', then re-ran the same code).
    """
    hints: list[str] = []
    found: list[dict[str, list[str]]] = []

    def tables() -> dict[str, list[str]]:  # read the CSV headers once, only if needed
        if not found:
            found.append(csv_columns(code))
        return found[0]

    if "SyntaxError" in stderr and "\n" not in code.strip():
        hints.append(
            "the code is a single line: put each statement on its own line (a newline "
            "between them in the code string)"
        )
    key = _MISSING_KEY.search(stderr)
    if key:
        missing = key.group(1)[1:-1]
        hint = f"there is no key {key.group(1)}: keys are case-sensitive; use the exact names"
        named = tables()
        near = [c for cols in named.values() for c in cols if c.lower() == missing.strip().lower()]
        if near:
            hint += f"; use {near[0]!r} instead of {key.group(1)}"
        for name, columns in named.items():
            hint += f"; the columns of {name} (its first line) are: {', '.join(map(repr, columns))}"
        if not named:
            hint += " (for a CSV file, the names in its first line)"
        hints.append(hint)
    for name in dict.fromkeys(_MISSING_NAME.findall(stderr)):
        if name in sys.stdlib_module_names:
            hints.append(f"{name} is a module: add 'import {name}' as the first line")
        elif name == "final_answer" or name in BUILTIN_TOOLS:
            # Measured: the embedded model ended a script with final_answer(f"...") (the
            # JSON tool mode's answer option, octopussy.llm.jsontools.FINAL_ANSWER).
            then = "give the answer" if name == "final_answer" else f"call {name}"
            hints.append(
                f"{name} is one of your tools, not a Python function: print() the values "
                f"in the code, then {then} outside it"
            )
    unpacked = _DICT_ROWS_UNPACKED.search(code)
    if unpacked:
        hints.append(
            "csv.DictReader gives one dict per row, and unpacking a dict gives its column "
            f"names, not its values: write 'for row in csv.DictReader(...)' and use "
            f"row[{_example_column(tables())!r}]"
        )
    if _STR_ARITHMETIC.search(stderr):
        hint = "a value is still text (str): values read from a file are strings; convert them"
        hint += " with int(...) or float(...) before adding or comparing them"
        if ".csv" in code.lower() and not unpacked:
            column = _example_column(tables())
            hint += f", e.g. sum(float(row[{column!r}]) for row in csv.DictReader(f))"
        hints.append(hint)
    return hints


def _example_column(tables: dict[str, list[str]]) -> str:
    """A real column name for an example (the last one of the first CSV), else 'column'."""
    for columns in tables.values():
        if columns:
            return columns[-1]
    return "column"


def _shell_python_command(code: str) -> tuple[str, list[str]] | None:
    """``("fib.py", ["10"])`` for code that is the shell command ``python fib.py 10``."""
    match = _SHELL_PYTHON.match(code)
    if match is None:
        return None
    try:
        args = shlex.split(match.group(2))
    except ValueError:
        return None
    return match.group(1), args


def build_builtin_server(
    *,
    workspace: Path,
    sandbox: SandboxSettings,
    mcp: MCPSettings,
    bwrap_path: str | Path | None = None,
    generated_tools: Path | None = None,
) -> MCPServer:
    """The built-in tools server for ``workspace`` (which must exist).

    ``bwrap_path`` overrides where bubblewrap is looked for (default: ``bwrap`` on PATH);
    a path that does not exist runs code without isolation (or refuses, with
    ``sandbox.require_isolation``). ``generated_tools``: the directory of generated tools
    to serve and watch (None: none).
    """
    ws = Workspace(workspace)
    if bwrap_path is None:
        bwrap_path = sandbox.bwrap_path
    shared_sandbox = Sandbox(sandbox, ws.root, bwrap_path=bwrap_path)
    tools = BuiltinTools(ws, shared_sandbox, mcp)
    toolset: GeneratedToolset | None = None
    extra: dict[str, Any] = {}
    if generated_tools is not None:
        subscriptions = InMemorySubscriptionBus()
        toolset = GeneratedToolset(
            GeneratedToolStore(generated_tools),
            shared_sandbox,
            subscriptions=subscriptions,
            reserved=BUILTIN_TOOLS,
        )
        extra = {
            "subscriptions": subscriptions,
            "middleware": [toolset.middleware],
            "lifespan": toolset.lifespan,
        }
    limits = (
        f"{sandbox.timeout_seconds:g} s wall clock, {sandbox.cpu_seconds} s CPU, "
        f"{sandbox.memory_mb} MB memory, {sandbox.max_processes} processes, "
        f"{sandbox.max_file_mb} MB per file written"
    )
    server: MCPServer = MCPServer(
        SERVER_NAME,
        title="Octopussy built-in tools",
        version=__version__,
        instructions=(
            f"Files in the workspace {ws.root} and a Python sandbox. Paths are relative to "
            "the workspace; nothing outside it can be read or written. Read files in pages "
            "with read_file, change them with edit_file (exact text) or write_file, find "
            "them with list_directory and search_files, and run code with execute_python."
        ),
        log_level="WARNING",
        **extra,
    )
    read_only = ToolAnnotations(read_only_hint=True, open_world_hint=False)
    writes = ToolAnnotations(destructive_hint=True, open_world_hint=False)
    descriptions: dict[str, str] = {}

    def read_file(
        path: Annotated[str, Field(description=f"The file to read. {_PATH_HELP}")],
        offset: Annotated[
            int, Field(ge=0, description="Lines to skip first (0 = from the start).")
        ] = 0,
        limit: Annotated[
            int | None,
            Field(ge=1, description="Most lines to return (default: as many as fit a page)."),
        ] = None,
    ) -> Annotated[CallToolResult, ReadFileResult]:
        with _tool_errors():
            return tools.read_file(path, offset, limit)

    descriptions["read_file"] = (
        "Read a text file from the workspace, one page at a time, with line numbers "
        f"(at most {mcp.max_read_chars} characters per page). The footer says how many lines "
        "the file has and which offset reads the next page. Binary files are refused; "
        "inspect those with execute_python."
    )

    def write_file(
        path: Annotated[str, Field(description=f"The file to write. {_PATH_HELP}")],
        content: Annotated[
            str,
            Field(
                description="The content, exactly as it should be in the file (UTF-8 text; "
                "no markdown code fences around it)."
            ),
        ],
        append: Annotated[
            bool,
            Field(
                description="Add content at the end of the file (on a new line) instead of "
                "replacing everything in it."
            ),
        ] = False,
    ) -> Annotated[CallToolResult, WriteFileResult]:
        with _tool_errors():
            return tools.write_file(path, content, append)

    descriptions["write_file"] = (
        "Create or overwrite a text file in the workspace with the given content, or add to "
        "its end with append=true; missing parent directories are created. Returns the "
        "number of bytes written. To change part of an existing file, use edit_file."
    )

    def edit_file(
        path: Annotated[str, Field(description=f"The file to edit. {_PATH_HELP}")],
        old_text: Annotated[
            str,
            Field(
                description="The exact text to replace, including whitespace and indentation; "
                "include enough lines to make it unique."
            ),
        ],
        new_text: Annotated[str, Field(description="The text to put in its place.")],
        replace_all: Annotated[
            bool, Field(description="Replace every occurrence instead of exactly one.")
        ] = False,
    ) -> Annotated[CallToolResult, EditFileResult]:
        with _tool_errors():
            return tools.edit_file(path, old_text, new_text, replace_all)

    descriptions["edit_file"] = (
        "Replace exact text in a file. old_text must occur exactly once (or set replace_all); "
        "otherwise the call fails and says how many times it was found and where. Read the "
        "file first and copy old_text from it."
    )

    def list_directory(
        path: Annotated[str, Field(description=f"The directory. {_PATH_HELP}")] = ".",
        pattern: Annotated[
            str | None,
            Field(
                description="Only the names matching this glob, e.g. '*.txt' for the .txt "
                "files (leave it out to list everything)."
            ),
        ] = None,
    ) -> Annotated[CallToolResult, ListDirectoryResult]:
        with _tool_errors():
            return tools.list_directory(path, pattern)

    descriptions["list_directory"] = (
        "List a directory of the workspace: sub-directories first (ending in /), then files "
        f"with their sizes, and symlinks with their targets. At most {MAX_DIR_ENTRIES} "
        "entries. To list only some files, e.g. the .txt files, set pattern to '*.txt'."
    )

    def search_files(
        pattern: Annotated[
            str,
            Field(
                description="Glob for file paths: '*.txt' matches names at any depth, "
                "'src/**/*.ts' paths from the search directory; leave it out to search "
                "every file."
            ),
        ] = "**/*",
        text: Annotated[
            str | None,
            Field(
                description="Only files containing this text (a word or phrase); each "
                "matching line is shown."
            ),
        ] = None,
        path: Annotated[str, Field(description=f"Directory to search. {_PATH_HELP}")] = ".",
        regex: Annotated[bool, Field(description="Treat text as a Python regex.")] = False,
        ignore_case: Annotated[bool, Field(description="Match text case-insensitively.")] = False,
        max_results: Annotated[
            int, Field(ge=1, le=1000, description="Stop after this many results.")
        ] = 100,
    ) -> Annotated[CallToolResult, SearchFilesResult]:
        with _tool_errors():
            return tools.search_files(pattern, text, path, regex, ignore_case, max_results)

    descriptions["search_files"] = (
        "Find files by name (a glob pattern such as '*.txt') and/or by content: with text, "
        "only the files containing it, each matching line shown as path:line: text (to "
        "find which file mentions a word, set text to the word). Binary files and files over "
        f"{_human_size(MAX_SEARCH_FILE_BYTES)} are skipped, and so are "
        ".git, node_modules, .venv and cache directories."
    )

    async def execute_python(
        code: Annotated[
            str,
            Field(max_length=1_000_000, description="A Python 3 script; print() what you need."),
        ],
        timeout_seconds: Annotated[
            float | None,
            Field(
                gt=0,
                description=f"Wall-clock limit, at most {sandbox.timeout_seconds:g} s "
                "(the default).",
            ),
        ] = None,
    ) -> Annotated[CallToolResult, ExecutePythonResult]:
        with _tool_errors():
            return await tools.execute_python(code, timeout_seconds)

    descriptions["execute_python"] = (
        "Run a Python script in a sandbox and return its stdout, stderr and exit code. "
        "The working directory is the workspace (read-write); there is no network, /tmp is "
        "private and empty, the environment is empty, and the rest of the system is "
        f"read-only. Limits: {limits}. Output over {sandbox.max_output_chars} characters per "
        "stream is truncated. Each call is a fresh process: keep state in files."
    )

    for fn, annotations in (
        (read_file, read_only),
        (write_file, writes),
        (edit_file, writes),
        (list_directory, read_only),
        (search_files, read_only),
        (execute_python, writes),
    ):
        server.add_tool(fn, description=descriptions[fn.__name__], annotations=annotations)
    if toolset is not None:
        toolset.attach(server)
        toolset.sync(force=True)
        _advertise_tool_changes(server)
    return server


def _advertise_tool_changes(server: MCPServer) -> None:
    """Say ``tools.listChanged: true`` to 2025-era clients too (2026-era ones derive it).

    The SDK's transports all call ``create_initialization_options()`` without options,
    which advertises no change notifications; this default makes them say so.
    """
    lowlevel = server._lowlevel_server
    original = lowlevel.create_initialization_options

    def with_tool_changes(
        notification_options: NotificationOptions | None = None, *args: Any, **kwargs: Any
    ) -> Any:
        options = notification_options or NotificationOptions(tools_changed=True)
        return original(options, *args, **kwargs)

    lowlevel.create_initialization_options = with_tool_changes  # type: ignore[method-assign]


# ---------------------------------------------------------------------- serving


async def serve_stdio(
    *,
    workspace: Path,
    sandbox: SandboxSettings,
    mcp: MCPSettings,
    generated_tools: Path | None = None,
) -> None:
    """Serve over stdin/stdout until the client closes stdin.

    The pipes are read and written on the event loop (``octopussy.mcp.pipes``). While
    serving, fd 1 points at stderr, so a stray ``print`` cannot corrupt the wire; logs go
    wherever logging was configured (stderr or a file, never stdout).
    """
    server = build_builtin_server(
        workspace=workspace, sandbox=sandbox, mcp=mcp, generated_tools=generated_tools
    )
    await run_server_stdio(server)


async def serve_http(
    host: str,
    port: int,
    *,
    workspace: Path,
    sandbox: SandboxSettings,
    mcp: MCPSettings,
    path: str = "/mcp",
    generated_tools: Path | None = None,
) -> None:
    """Serve Streamable HTTP at ``http://host:port{path}`` until cancelled.

    On loopback the SDK turns on DNS-rebinding protection (Host and Origin checks).
    """
    import uvicorn

    server = build_builtin_server(
        workspace=workspace, sandbox=sandbox, mcp=mcp, generated_tools=generated_tools
    )
    app = server.streamable_http_app(streamable_http_path=path, host=host)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )
    await uvicorn.Server(config).serve()


def main_stdio(
    workspace: Path,
    sandbox_settings: SandboxSettings,
    mcp_settings: MCPSettings,
    *,
    generated_tools: Path | None = None,
) -> None:
    """Blocking: serve over stdio (for ``octopussy mcp builtin``)."""

    async def run() -> None:
        await serve_stdio(
            workspace=workspace,
            sandbox=sandbox_settings,
            mcp=mcp_settings,
            generated_tools=generated_tools,
        )

    anyio.run(run)


def main_http(
    host: str,
    port: int,
    workspace: Path,
    sandbox_settings: SandboxSettings,
    mcp_settings: MCPSettings,
    *,
    generated_tools: Path | None = None,
) -> None:
    """Blocking: serve over Streamable HTTP (for ``octopussy mcp builtin --http``)."""

    async def run() -> None:
        await serve_http(
            host,
            port,
            workspace=workspace,
            sandbox=sandbox_settings,
            mcp=mcp_settings,
            generated_tools=generated_tools,
        )

    anyio.run(run)


def parse_host_port(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) → ``(host, port)``; ``ValueError`` if bad."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range")
    return host.strip("[]"), port


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m octopussy.mcp.builtin --workspace DIR [--http HOST:PORT]`` (defaults)."""
    parser = argparse.ArgumentParser(
        prog="python -m octopussy.mcp.builtin",
        description="Serve Octopussy's built-in tools over MCP (stdio by default).",
    )
    parser.add_argument("--workspace", required=True, help="the directory tools may touch")
    parser.add_argument("--http", metavar="HOST:PORT", help="serve Streamable HTTP instead")
    parser.add_argument(
        "--generated-tools", metavar="DIR", help="also serve (and watch) the tools in DIR"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    workspace = Path(args.workspace).expanduser()
    if not workspace.is_dir():
        print(f"error: workspace {workspace} is not a directory", file=sys.stderr)
        return 2
    gen = Path(args.generated_tools).expanduser() if args.generated_tools else None
    try:
        if args.http:
            try:
                host, port = parse_host_port(args.http)
            except ValueError as exc:
                print(f"error: --http: {exc}", file=sys.stderr)
                return 2
            main_http(host, port, workspace, SandboxSettings(), MCPSettings(), generated_tools=gen)
        else:
            main_stdio(workspace, SandboxSettings(), MCPSettings(), generated_tools=gen)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
