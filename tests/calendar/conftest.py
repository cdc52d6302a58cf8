"""A real Radicale CalDAV server for the tests: a subprocess on a free loopback port, its
collections and its htpasswd file in the test's temp dir, stopped afterwards."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Radicale:
    url: str
    username: str
    password: str
    log: Path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"radicale exited early:\n{log.read_text()[-2000:]}")
        with socket.socket() as probe:
            probe.settimeout(0.2)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"radicale did not listen on {port}:\n{log.read_text()[-2000:]}")


@pytest.fixture
def radicale(tmp_path: Path) -> Iterator[Radicale]:
    import radicale  # noqa: F401  (the test extra installs it; missing is a failure, not a skip)

    root = tmp_path / "radicale"
    root.mkdir()
    users = root / "users"
    users.write_text("alice:wonderland\n")
    log = root / "radicale.log"
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "radicale",
        "--config",
        "",  # no /etc/radicale or ~/.config: only what is given here
        "--server-hosts",
        f"127.0.0.1:{port}",
        "--storage-filesystem-folder",
        str(root / "collections"),
        "--auth-type",
        "htpasswd",
        "--auth-htpasswd-filename",
        str(users),
        "--auth-htpasswd-encryption",
        "plain",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_listening(port, process, log)
        yield Radicale(f"http://127.0.0.1:{port}/", "alice", "wonderland", log)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
