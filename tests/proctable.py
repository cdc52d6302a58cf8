"""Process-table checks shared by the tests: nothing we start may outlive what owns it.

Reads /proc directly (no psutil). Importable from any test (``pythonpath`` in pyproject).
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path


def _state(pid: str) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def processes_mentioning(text: str) -> list[int]:
    """Live (non-zombie) processes, other than this one, whose command line contains ``text``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if text.encode() in cmdline and _state(entry) not in (None, "Z"):
            found.append(int(entry))
    return found


def sandbox_pids(workspace: Path) -> list[int]:
    """Host pids of processes a sandbox for ``workspace`` started (their env names it)."""
    marker = f"PYTHONPATH={workspace}".encode()
    found: list[int] = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if marker in f.read().split(b"\0"):
                    found.append(int(name))
        except OSError:
            continue
    return found


async def no_sandbox_processes(workspace: Path, within: float = 15.0) -> bool:
    """Wait (bounded) until no process of a sandbox for ``workspace`` is left."""
    deadline = time.monotonic() + within
    while sandbox_pids(workspace):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True
