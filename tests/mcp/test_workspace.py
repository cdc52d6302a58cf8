"""``Workspace``: every path resolves inside the root; escapes are refused with a message a
model can act on, and opening is safe against a symlink swapped in after the check."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from octopussy.errors import ToolError
from octopussy.mcp.workspace import Workspace


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "src" / "pkg" / "mod.py").write_text("x = 1\n")
    (root / "README.md").write_text("hello\n")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("top secret\n")
    return root


@pytest.fixture
def ws(root: Path) -> Workspace:
    return Workspace(root)


def read(ws: Workspace, path: str) -> str:
    fd = ws.open(path, os.O_RDONLY)
    with open(fd, encoding="utf-8") as f:
        return f.read()


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("README.md", "README.md"),
        ("./README.md", "README.md"),
        ("src/pkg/mod.py", "src/pkg/mod.py"),
        ("src/pkg/../../README.md", "README.md"),
        ("src//pkg/./mod.py", "src/pkg/mod.py"),
        (".", ""),
        ("new/dir/file.txt", "new/dir/file.txt"),  # need not exist
    ],
)
def test_relative_paths_resolve_inside(
    ws: Workspace, root: Path, given: str, expected: str
) -> None:
    assert ws.resolve(given) == (root / expected if expected else root).resolve()


def test_absolute_path_inside_is_accepted(ws: Workspace, root: Path) -> None:
    assert ws.resolve(str(root / "README.md")) == root.resolve() / "README.md"
    assert ws.relative(ws.resolve(str(root))) == "."


@pytest.mark.parametrize(
    "given",
    ["..", "../outside/secret.txt", "src/../../outside", "src/pkg/../../../x", "/etc/passwd", "/"],
)
def test_escapes_are_refused_with_an_actionable_message(ws: Workspace, given: str) -> None:
    with pytest.raises(ToolError) as caught:
        ws.resolve(given)
    message = str(caught.value)
    assert "outside the workspace" in message
    assert str(ws.root) in message
    assert "relative to it" in message


def test_absolute_path_that_only_shares_a_prefix_is_outside(tmp_path: Path, ws: Workspace) -> None:
    sibling = tmp_path / "ws-other"
    sibling.mkdir()
    with pytest.raises(ToolError, match="outside the workspace"):
        ws.resolve(str(sibling / "f"))


def test_symlink_pointing_outside_is_refused_at_any_component(
    ws: Workspace, root: Path, tmp_path: Path
) -> None:
    (root / "to_outside").symlink_to(tmp_path / "outside")
    (root / "secret_link").symlink_to(tmp_path / "outside" / "secret.txt")
    (root / "src" / "etc").symlink_to("/etc")
    for given in ("to_outside/secret.txt", "secret_link", "src/etc/passwd", "to_outside"):
        with pytest.raises(ToolError, match="symbolic link") as caught:
            ws.resolve(given)
        assert "outside the workspace" in str(caught.value)
    with pytest.raises(ToolError, match="symbolic link"):
        read(ws, "to_outside/secret.txt")


def test_dangling_symlink_pointing_outside_is_refused(ws: Workspace, root: Path) -> None:
    (root / "dangling").symlink_to("/nonexistent-octopussy/target")
    with pytest.raises(ToolError, match="outside the workspace"):
        ws.resolve("dangling")


def test_symlink_inside_the_workspace_works(ws: Workspace, root: Path) -> None:
    (root / "alias").symlink_to(root / "src" / "pkg")
    (root / "readme_link").symlink_to("README.md")
    assert ws.resolve("alias/mod.py") == root.resolve() / "src" / "pkg" / "mod.py"
    assert read(ws, "alias/mod.py") == "x = 1\n"
    assert read(ws, "readme_link") == "hello\n"


def test_root_given_through_a_symlink_is_canonical(tmp_path: Path, root: Path) -> None:
    link = tmp_path / "ws-link"
    link.symlink_to(root)
    ws = Workspace(link)
    assert ws.root == root.resolve()
    assert read(ws, "README.md") == "hello\n"


@pytest.mark.parametrize("given", ["a\x00b", "README.md\x00.png", "\x00"])
def test_nul_bytes_are_refused(ws: Workspace, given: str) -> None:
    with pytest.raises(ToolError, match="NUL byte"):
        ws.resolve(given)


@pytest.mark.parametrize("given", ["", "   "])
def test_empty_path_is_refused(ws: Workspace, given: str) -> None:
    with pytest.raises(ToolError, match="empty"):
        ws.resolve(given)


@pytest.mark.parametrize("given", ["~", "~/.ssh/id_rsa"])
def test_home_paths_are_refused(ws: Workspace, given: str) -> None:
    with pytest.raises(ToolError, match="home directory"):
        ws.resolve(given)


def test_missing_file_says_how_to_find_the_right_path(ws: Workspace) -> None:
    with pytest.raises(ToolError) as caught:
        ws.open("src/nope.py", os.O_RDONLY)
    assert "does not exist" in str(caught.value)
    assert "list_directory" in str(caught.value)
    with pytest.raises(ToolError, match="does not exist"):
        ws.open("missing/dir/file.py", os.O_RDONLY)


def test_file_used_as_a_directory(ws: Workspace) -> None:
    with pytest.raises(ToolError, match="is a file"):
        ws.open("README.md/x", os.O_RDONLY)


def test_directory_opened_as_a_file(ws: Workspace) -> None:
    with pytest.raises(ToolError, match="is a directory"):
        ws.open("src", os.O_RDONLY)
    with pytest.raises(ToolError, match="workspace directory itself"):
        ws.open(".", os.O_RDONLY)


def test_open_creates_parent_directories_inside(ws: Workspace, root: Path) -> None:
    fd = ws.open("a/b/c.txt", os.O_WRONLY | os.O_CREAT, create_parents=True)
    os.write(fd, b"made")
    os.close(fd)
    assert (root / "a" / "b" / "c.txt").read_text() == "made"
    with ws.open_dir("x/y", create=True) as dir_fd:
        assert os.listdir(dir_fd) == []
    assert (root / "x" / "y").is_dir()


def test_a_component_swapped_for_a_symlink_after_the_check_is_not_followed(
    ws: Workspace, root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The race: resolve() saw a real directory; by the time we open, sandboxed code has
    # replaced it with a symlink to somewhere else. The walk must refuse, not follow.
    checked = ws.resolve("src/pkg/mod.py")
    (root / "src" / "pkg" / "mod.py").unlink()
    (root / "src" / "pkg").rmdir()
    (root / "src" / "pkg").symlink_to(tmp_path / "outside")
    (tmp_path / "outside" / "mod.py").write_text("outside!\n")
    monkeypatch.setattr(ws, "resolve", lambda path: checked)
    with pytest.raises(ToolError, match="symbolic link"):
        ws.open("src/pkg/mod.py", os.O_RDONLY)
    with pytest.raises(ToolError, match="symbolic link"):
        ws.open("src/pkg/mod.py", os.O_WRONLY | os.O_CREAT, create_parents=True)
    assert (tmp_path / "outside" / "mod.py").read_text() == "outside!\n"


def test_final_component_swapped_for_a_symlink_is_not_followed(
    ws: Workspace, root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked = ws.resolve("README.md")
    (root / "README.md").unlink()
    (root / "README.md").symlink_to(tmp_path / "outside" / "secret.txt")
    monkeypatch.setattr(ws, "resolve", lambda path: checked)
    with pytest.raises(ToolError, match="symbolic link"):
        ws.open("README.md", os.O_WRONLY | os.O_TRUNC)
    assert (tmp_path / "outside" / "secret.txt").read_text() == "top secret\n"


def test_root_must_be_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ToolError, match="not a directory"):
        Workspace(tmp_path / "missing")


def test_missing_file_error_helps_find_the_right_path(tmp_path: Path) -> None:
    (tmp_path / "animals.txt").write_text("The octopus has three hearts.\n")
    (tmp_path / "docs").mkdir()
    ws = Workspace(tmp_path)
    with pytest.raises(ToolError) as caught:
        ws.open("workspace/octopus.txt", os.O_RDONLY)
    message = str(caught.value)
    assert "paths are relative to the workspace: write 'octopus.txt'" in message
    assert "./ has: animals.txt, docs/" in message
    assert "call search_files with text='octopus'" in message
    assert "write_file to create it" in message
    with pytest.raises(ToolError) as nested:
        ws.open("docs/deep/x1.md", os.O_RDONLY)
    assert "docs/ is empty" in str(nested.value)
    assert "relative to the workspace" not in str(nested.value)
    assert "search_files with text" not in str(nested.value)  # 'x1' is no word
