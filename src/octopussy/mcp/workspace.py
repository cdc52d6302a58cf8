"""Path confinement: every path a model gives us resolves inside one workspace root.

::

    "src/../notes.md" ─► reject NUL, "~" ─► join with the root ─► realpath (follows every
    symlink) ─► must be the root or below it ─► open by walking the real path component by
    component from the root with O_NOFOLLOW (dir fds, never a string path)

Checking the resolved path is not enough on its own: code running in the sandbox can swap a
directory for a symlink between our check and our ``open``. Opening walks the already
resolved components from a file descriptor of the root with ``O_NOFOLLOW``, so a symlink that
appears in the meantime makes the open fail instead of leading outside. Symlinks that stay
inside the workspace keep working (``realpath`` resolved them before the walk).

Errors are ``ToolError`` with a sentence a model can act on ("path '../x' is outside the
workspace /w; use a path relative to it").
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from octopussy.errors import ToolError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: First path parts that models use for the workspace itself ('workspace/notes.txt').
_ROOT_NAMES = frozenset({"workspace", "the_workspace", "ws"})
_NEARBY_NAMES = 12


class Workspace:
    """A directory that file tools may not leave."""

    def __init__(self, root: Path | str) -> None:
        real = Path(os.path.realpath(Path(root).expanduser()))
        if not real.is_dir():
            raise ToolError(f"workspace {root} is not a directory")
        self.root = real

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"

    # ------------------------------------------------------------------ resolving

    def resolve(self, path: str | os.PathLike[str]) -> Path:
        """The real absolute path of ``path`` (relative to the root, or absolute inside it).

        Raises ``ToolError`` for NUL bytes, ``~``, and anything that ends up outside the
        root, whether by ``..``, an absolute path or a symlink at any component.
        """
        text = os.fspath(path)
        if "\x00" in text:
            raise ToolError(
                f"path {text!r} contains a NUL byte; use a plain path relative to the "
                f"workspace {self.root}"
            )
        if not text.strip():
            raise ToolError(f"the path is empty; use a path relative to the workspace {self.root}")
        if text == "~" or text.startswith("~/"):
            raise ToolError(
                f"path {text!r} points into a home directory, outside the workspace "
                f"{self.root}; use a path relative to the workspace"
            )
        joined = self.root / text  # an absolute ``text`` replaces the root
        lexical = Path(os.path.normpath(joined))
        if not _inside(lexical, self.root):
            raise ToolError(
                f"path {text!r} is outside the workspace {self.root}; use a path relative to it"
            )
        real = Path(os.path.realpath(joined))
        if not _inside(real, self.root):
            raise ToolError(
                f"path {text!r} goes through a symbolic link to {real}, which is outside the "
                f"workspace {self.root}; use a path whose target is inside the workspace"
            )
        return real

    def relative(self, path: Path) -> str:
        """``path`` as the model should write it: relative to the root, ``.`` for the root."""
        try:
            return str(path.relative_to(self.root))  # "." for the root itself
        except ValueError:
            return str(path)

    # ------------------------------------------------------------------ opening

    @contextlib.contextmanager
    def open_dir(self, path: str | os.PathLike[str], *, create: bool = False) -> Iterator[int]:
        """A file descriptor of the directory ``path`` (created, with parents, if asked)."""
        real = self.resolve(path)
        fd = self._walk(real.relative_to(self.root).parts, create=create, text=os.fspath(path))
        try:
            yield fd
        finally:
            os.close(fd)

    def open(
        self,
        path: str | os.PathLike[str],
        flags: int,
        mode: int = 0o644,
        *,
        create_parents: bool = False,
    ) -> int:
        """``os.open`` of a regular file inside the workspace; the caller closes the result.

        The last component is opened with ``O_NOFOLLOW`` relative to its (verified) parent.
        """
        text = os.fspath(path)
        real = self.resolve(text)
        if real == self.root:
            raise ToolError(f"{text!r} is the workspace directory itself, not a file")
        parts = real.relative_to(self.root).parts
        parent = self._walk(parts[:-1], create=create_parents, text=text)
        # O_NONBLOCK: a FIFO that sandboxed code left in the workspace must not hang us in
        # open() waiting for a writer (it has no effect on regular files).
        flags |= os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        try:
            fd = os.open(parts[-1], flags, mode, dir_fd=parent)
        except FileNotFoundError:
            raise ToolError(self._not_found(text)) from None
        except IsADirectoryError:
            raise ToolError(
                f"{text!r} is a directory, not a file; use list_directory to see what it contains"
            ) from None
        except OSError as exc:
            raise ToolError(self._os_error(text, exc)) from None
        finally:
            os.close(parent)
        kind = os.fstat(fd).st_mode
        if not stat.S_ISREG(kind):
            os.close(fd)
            if stat.S_ISDIR(kind):  # O_RDONLY opens a directory without EISDIR
                raise ToolError(
                    f"{text!r} is a directory, not a file; use list_directory to see what it "
                    "contains"
                )
            raise ToolError(f"{text!r} is not a regular file (a pipe, socket or device)")
        return fd

    def _walk(self, parts: tuple[str, ...], *, create: bool, text: str) -> int:
        fd = os.open(self.root, _DIR_FLAGS)
        try:
            for index, part in enumerate(parts):
                try:
                    nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise ToolError(self._not_found(text)) from None
                    # Made concurrently? The open below checks what it is.
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, 0o755, dir_fd=fd)
                    nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except NotADirectoryError:
                    where = "/".join(parts[: index + 1])
                    if stat.S_ISLNK(os.lstat(part, dir_fd=fd).st_mode):
                        raise ToolError(_swapped(text)) from None
                    raise ToolError(
                        f"{where!r} is a file, so {text!r} cannot be inside it; check the path"
                    ) from None
                except OSError as exc:
                    if exc.errno == errno.ELOOP:
                        raise ToolError(_swapped(text)) from None
                    raise ToolError(self._os_error(text, exc)) from None
                os.close(fd)
                fd = nxt
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _not_found(self, text: str) -> str:
        """What is missing, plus what a model needs to find the right path.

        Measured on the embedded model: asked which file mentions a word, it guessed
        'workspace/octopus.txt' twice. The message says what the nearest existing directory
        holds, that paths are relative to the workspace, and how to search by content.
        """
        message = f"{text!r} does not exist in the workspace {self.root}"
        hints: list[str] = []
        cleaned = text.strip()
        while cleaned.startswith("./"):
            cleaned = cleaned[2:]
        parts = Path(cleaned or ".").parts
        if (
            len(parts) > 1
            and parts[0].lower() in _ROOT_NAMES
            and not (self.root / parts[0]).exists()
        ):
            rest = "/".join(parts[1:])
            hints.append(f"paths are relative to the workspace: write {rest!r}, not {text!r}")
        listing = self._nearby(self.resolve(text).parent)
        if listing:
            hints.append(listing)
        stem = Path(text).stem
        if stem.isalpha() and len(stem) > 2:
            hints.append(
                f"to find the file that mentions {stem!r}, call search_files with text={stem!r}"
            )
        hints.append(
            "use list_directory or search_files to find the right path, or write_file to create it"
        )
        return f"{message}; " + "; ".join(hints)

    def _nearby(self, directory: Path) -> str:
        """'files in ./: a.txt, b.csv' for the nearest existing directory (at most 12 names)."""
        while directory != self.root and not directory.is_dir():
            directory = directory.parent
        try:
            with os.scandir(directory) as scan:
                names = sorted(
                    entry.name + ("/" if entry.is_dir(follow_symlinks=False) else "")
                    for entry in scan
                )
        except OSError:
            return ""
        where = self.relative(directory) + "/"
        if not names:
            return f"{where} is empty"
        shown = ", ".join(names[:_NEARBY_NAMES])
        more = f" and {len(names) - _NEARBY_NAMES} more" if len(names) > _NEARBY_NAMES else ""
        return f"{where} has: {shown}{more}"

    def _os_error(self, text: str, exc: OSError) -> str:
        if exc.errno == errno.ELOOP:
            return _swapped(text)
        if exc.errno == errno.ENXIO:  # a FIFO without a reader, opened non-blocking
            return f"{text!r} is not a regular file (a pipe, socket or device)"
        if exc.errno in (errno.EACCES, errno.EPERM):
            return f"permission denied for {text!r}"
        return f"cannot open {text!r}: {exc.strerror or exc}"


def _swapped(text: str) -> str:
    return (
        f"path {text!r} changed into a symbolic link while it was being opened, and symbolic "
        "links are not followed there; try again with the real path"
    )


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents
