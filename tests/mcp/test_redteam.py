"""Red team: hostile code and hostile paths against the built-in server, over real stdio.

The server runs as its own process (so an attack that escaped could only hurt that
process, and "the server stays up" means something), with a fake ``OPENAI_API_KEY`` and a
fake ``HOME`` holding an SSH key in its environment. One server and one session serve the
whole module: after every attack the same session makes a normal call, and the server's
pid must still be alive, so each attack also runs against a server that survived all the
attacks before it. The workspace is emptied (but for README.md) between attacks.

What contains each attack (see ``sandbox.py``): bwrap's namespaces (net, pid, ipc, uts,
user without capabilities, no nested user namespaces), the read-only minimal filesystem
with a private size-limited /tmp, the empty environment, rlimits (CPU, address space,
file size, processes), the pid namespace's ``pid_max`` when we run as root, the
wall-clock timeout that kills the process group, and ``Workspace`` for the file tools.

No test sends traffic anywhere but loopback: the network tests listen on the host's
127.0.0.1 and check that the sandbox could not reach it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from mcp_types import CallToolResult, TextContent

from mcp import Client, StdioServerParameters
from mcp_session import held_client
from proctable import no_sandbox_processes

pytestmark = [
    pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed"),
    # One server for the whole module: every attack runs against the server that survived
    # all the attacks before it.
    pytest.mark.asyncio(loop_scope="module"),
]

SECRET = "sk-redteam-0123456789abcdef"
SSH_KEY = "-----BEGIN FAKE OPENSSH PRIVATE KEY----- redteam"
LIMITS = {
    "timeout_seconds": 4.0,
    "cpu_seconds": 3,
    "memory_mb": 256,
    "max_processes": 32,
    "max_file_mb": 4,
    "tmp_size_mb": 8,
    "max_output_chars": 2000,
}
# The server, as `octopussy mcp builtin` runs it, with the limits above; it writes its pid
# next to the workspace so the tests can check it is still alive.
SERVER = """
import json, os, sys
from pathlib import Path
from octopussy.config import MCPSettings, SandboxSettings
from octopussy.mcp import builtin, pipes
workspace, limits, pidfile, bwrap = sys.argv[1:5]
Path(pidfile).write_text(str(os.getpid()))
sandbox = SandboxSettings.model_validate(json.loads(limits))
async def serve():
    server = builtin.build_builtin_server(
        workspace=Path(workspace), sandbox=sandbox, mcp=MCPSettings(), bwrap_path=bwrap or None
    )
    await pipes.run_server_stdio(server)
import anyio
anyio.run(serve)
"""


@dataclass
class Target:
    client: Client
    workspace: Path
    server_pid: int
    tmp: Path

    async def call(self, tool: str, **arguments: Any) -> CallToolResult:
        return await self.client.call_tool(tool, arguments, read_timeout_seconds=60)

    async def run(self, code: str, **arguments: Any) -> dict[str, Any]:
        """execute_python; returns the structured result of the run.

        A run that failed (killed, timed out, non-zero exit) is a tool error with the run's
        details; anything else refused (no structured result) fails the test here.
        """
        result = await self.call("execute_python", code=code, **arguments)
        structured: dict[str, Any] | None = result.structured_content
        assert structured is not None, text(result)
        ran_ok = structured["exit_code"] == 0 and not structured["timed_out"]
        assert result.is_error is not ran_ok, text(result)
        return structured

    async def refused(self, tool: str, **arguments: Any) -> str:
        result = await self.call(tool, **arguments)
        assert result.is_error, f"{tool}({arguments}) was not refused: {text(result)}"
        return text(result)

    async def still_serving(self) -> None:
        """The server survived: its process is alive and the same session still works."""
        os.kill(self.server_pid, 0)
        after = await self.run("print('still here')")
        assert after["stdout"] == "still here\n"
        assert after["isolated"] is True
        listed = await self.call("list_directory")
        assert not listed.is_error


def text(result: CallToolResult) -> str:
    block = result.content[0] if result.content else None
    return block.text if isinstance(block, TextContent) else repr(result)


def connected(params: StdioServerParameters) -> AbstractAsyncContextManager[Client]:
    """A client session on the stdio server held by a task of its own."""
    return held_client(params, timeout=60)


@asynccontextmanager
async def serve(tmp_path: Path, *, bwrap: str = "") -> AsyncIterator[Target]:
    workspace = tmp_path / "ws"
    workspace.mkdir(exist_ok=True)
    (workspace / "README.md").write_text("normal file\n")
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, exist_ok=True)
    (home / ".ssh" / "id_rsa").write_text(SSH_KEY)
    pidfile = tmp_path / "server.pid"
    params = StdioServerParameters(
        command=sys.executable,
        args=["-c", SERVER, str(workspace), json.dumps(LIMITS), str(pidfile), bwrap],
        env={"OPENAI_API_KEY": SECRET, "HOME": str(home)},
        cwd=str(tmp_path),
    )
    async with connected(params) as client:
        pid = int(pidfile.read_text())
        # The secret really is in the server's environment.
        assert SECRET.encode() in environ_of(pid)
        yield Target(client=client, workspace=workspace, server_pid=pid, tmp=tmp_path)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Target]:
    async with serve(tmp_path_factory.mktemp("redteam")) as t:
        yield t


@pytest.fixture
def target(shared: Target) -> Iterator[Target]:
    """The shared server, with a workspace holding only README.md before each attack."""
    yield shared
    for entry in shared.workspace.iterdir():
        if entry.name == "README.md":
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def environ_of(pid: int) -> bytes:
    with open(f"/proc/{pid}/environ", "rb") as f:
        return f.read()


def lines(result: dict[str, Any]) -> list[str]:
    out: str = result["stdout"]
    return out.splitlines()


# ------------------------------------------------------------------ secrets on the host


async def test_cannot_read_shadow_or_ssh_keys(target: Target) -> None:
    key = target.tmp / "home" / ".ssh" / "id_rsa"
    assert "outside the workspace" in await target.refused("read_file", path="/etc/shadow")
    assert "outside the workspace" in await target.refused("read_file", path=str(key))
    assert "home directory" in await target.refused("read_file", path="~/.ssh/id_rsa")
    code = f"""
import os
for p in ("/etc/shadow", "/etc/gshadow", os.path.expanduser("~/.ssh/id_rsa"),
          {str(key)!r}, "/root/.ssh/id_rsa", "/home"):
    print(p, os.path.exists(p))
print(sorted(os.listdir("/root")) if os.path.isdir("/root") else "no /root")
"""
    result = await target.run(code)
    out = lines(result)
    assert all(line.endswith(" False") for line in out[:6]), result
    assert ".ssh" not in out[6]
    assert SSH_KEY not in json.dumps(result)
    await target.still_serving()


async def test_cannot_write_outside_the_workspace(target: Target) -> None:
    outside = target.tmp / "escaped.txt"
    venv_file = Path(sys.prefix) / "redteam-was-here"
    for path in ("../escaped.txt", str(outside), "/etc/cron.d/x", "/tmp/x"):
        assert "outside the workspace" in await target.refused(
            "write_file", path=path, content="pwned"
        )
    code = f"""
import os
for p in ("/etc/passwd", "/usr/lib/redteam", "/root/redteam", {str(venv_file)!r},
          "/run/sandbox/main.py", "/proc/sys/kernel/hostname", "/redteam", "/dev/redteam"):
    try:
        with open(p, "a") as f:
            f.write("pwned")
        print("WROTE", p)
    except OSError as exc:
        print("refused", p, exc.errno)
# The workspace's parent exists inside only as a directory on the private /tmp tmpfs:
# writing there succeeds but never reaches the host.
with open({str(outside)!r}, "w") as f:
    f.write("pwned")
"""
    result = await target.run(code)
    assert not [line for line in lines(result) if line.startswith("WROTE")], result
    assert result["exit_code"] == 0, result
    assert not outside.exists()
    assert not venv_file.exists()
    await target.still_serving()


async def test_host_sysctls_are_read_only(target: Target) -> None:
    # Run as root, the sandbox's uid is the host's uid 0, which is all the kernel's sysctl
    # permission check looks at: without a read-only /proc, kernel.core_pattern (a pipe
    # to a program the host runs as root on the next crash) would be writable. The
    # attack only opens for writing and never writes, so a failure cannot harm the host.
    code = """
import os
for p in ("/proc/sys/kernel/core_pattern", "/proc/sys/kernel/modprobe",
          "/proc/sys/vm/drop_caches", "/proc/sys/kernel/hostname", "/proc/sysrq-trigger",
          "/proc/irq/default_smp_affinity", "/proc/self/oom_score_adj"):
    try:
        os.close(os.open(p, os.O_WRONLY))
        print("OPENED", p)
    except OSError as exc:
        print("refused", p, exc.errno)
"""
    result = await target.run(code)
    assert len(lines(result)) == 7, result
    assert all(line.startswith("refused") for line in lines(result)), result
    await target.still_serving()


# ------------------------------------------------------------------ network


async def test_cannot_reach_a_server_on_the_hosts_loopback(target: Target) -> None:
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        tcp.bind(("127.0.0.1", 0))
        tcp.listen(8)
        tcp.setblocking(False)
        udp.bind(("127.0.0.1", 0))
        udp.setblocking(False)
        code = f"""
import socket
try:
    socket.create_connection(("127.0.0.1", {tcp.getsockname()[1]}), timeout=2)
    print("CONNECTED")
except OSError as exc:
    print("tcp blocked", exc.errno)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    s.sendto(b"hello", ("127.0.0.1", {udp.getsockname()[1]}))
    print("udp sent (into the sandbox's own loopback)")
except OSError as exc:
    print("udp blocked", exc.errno)
"""
        result = await target.run(code)
        assert lines(result)[0].startswith("tcp blocked"), result
        with pytest.raises(BlockingIOError):
            tcp.accept()  # nothing ever reached the host's listener
        with pytest.raises(BlockingIOError):
            udp.recvfrom(100)
    finally:
        tcp.close()
        udp.close()
    await target.still_serving()


async def test_only_the_loopback_interface_exists(target: Target) -> None:
    code = """
import os, socket
print(socket.if_nameindex())
names = [l.split(":")[0].strip() for l in open("/proc/net/dev").read().splitlines()[2:]]
print(names)
print(os.path.exists("/sys/class/net"))
"""
    result = await target.run(code)
    assert lines(result) == ["[(1, 'lo')]", "['lo']", "False"], result
    await target.still_serving()


# ------------------------------------------------------------------ resources


def process_cap() -> int:
    """What caps a fork bomb here: pid_max of the sandbox's pid namespace as root (>= 301),
    RLIMIT_NPROC (counted inside bwrap's user namespace) as a normal user."""
    if os.geteuid() == 0:
        return max(301, int(LIMITS["max_processes"]) + 4)
    return int(LIMITS["max_processes"])


async def test_fork_bomb_is_capped(target: Target) -> None:
    code = """
import os, time
forks = 0
try:
    while True:
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
        forks += 1
except OSError as exc:
    print(forks, exc.errno)
"""
    result = await target.run(code)
    forks, errno_ = (int(x) for x in lines(result)[0].split())
    assert forks < process_cap(), result
    assert errno_ == 11  # EAGAIN: the cap, not the timeout, stopped it
    assert await no_sandbox_processes(target.workspace)  # the sleepers died with it
    await target.still_serving()


async def test_classic_fork_bomb_is_killed(target: Target) -> None:
    code = """
import os
while True:
    try:
        os.fork()
    except OSError:
        pass
"""
    result = await target.run(code, timeout_seconds=2)
    assert result["timed_out"] or result["killed_by_signal"], result
    assert await no_sandbox_processes(target.workspace)
    await target.still_serving()


async def test_memory_bomb(target: Target) -> None:
    code = """
hoard = []
while True:
    hoard.append(bytearray(16 * 1024 * 1024))
"""
    result = await target.run(code)
    assert "MemoryError" in result["stderr"], result
    assert any("memory limit" in note for note in result["notes"])
    one_shot = await target.run("x = bytearray(8 * 1024 ** 3)")
    assert "MemoryError" in one_shot["stderr"]
    # Many processes, each under its own address-space limit, add up: the watchdog sums
    # the resident memory of the whole run and kills it past twice memory_mb.
    many = await target.run(
        """
import os, time
for _ in range(24):
    if os.fork() == 0:
        block = bytearray(200 * 1024 * 1024)
        for i in range(0, len(block), 4096):
            block[i] = 1
        time.sleep(60)
print("forked", flush=True)
time.sleep(60)
"""
    )
    assert many["killed_by_signal"] == "SIGKILL", many
    assert not many["timed_out"]
    assert any("memory limit for the whole run" in note for note in many["notes"]), many
    assert await no_sandbox_processes(target.workspace)
    await target.still_serving()


async def test_infinite_loop_is_stopped(target: Target) -> None:
    spin = await target.run("while True: pass", timeout_seconds=1.5)
    assert spin["timed_out"] is True, spin
    assert spin["exit_code"] is None
    assert spin["killed_by_signal"] == "SIGKILL"
    assert any("wall-clock timeout" in note for note in spin["notes"])
    assert await no_sandbox_processes(target.workspace)
    await target.still_serving()


async def test_huge_output_is_truncated(target: Target) -> None:
    started = time.monotonic()
    result = await target.run(
        "import sys\nfor _ in range(5000): sys.stdout.write('A' * 10000)\n"
        "sys.stderr.write('B' * 10**7)"
    )
    assert time.monotonic() - started < 30
    assert result["truncated"] is True
    assert result["stdout"].endswith(f"[output truncated: {5000 * 10000 - 2000} more characters]")
    assert len(result["stdout"]) < 2100
    assert len(result["stderr"]) < 2100
    await target.still_serving()


async def test_filling_the_disk(target: Target) -> None:
    code = """
import os
def fill(path, chunk, count):
    written = 0
    try:
        with open(path, "wb") as f:
            for _ in range(count):
                f.write(chunk)
                f.flush()
                written += len(chunk)
    except OSError as exc:
        return written, exc.errno
    return written, 0
mb = b"x" * (1024 * 1024)
print(*fill("huge.bin", mb, 100))
print(*fill("/tmp/huge.bin", mb, 3))
total, err = 0, 0
for i in range(20):
    written, err = fill(f"/tmp/f{i}", mb, 3)
    total += written
    if err:
        break
print(total, err)
print(*fill("/dev/shm/huge.bin", mb, 100))
"""
    result = await target.run(code)
    ws_bytes, ws_err = (int(x) for x in lines(result)[0].split())
    assert ws_err == 27  # EFBIG: the file size limit (4 MB)
    assert ws_bytes <= 4 * 1024 * 1024
    assert (target.workspace / "huge.bin").stat().st_size <= 4 * 1024 * 1024
    tmp_total, tmp_err = (int(x) for x in lines(result)[2].split())
    assert tmp_err == 28  # ENOSPC: the 8 MB tmpfs is full
    assert tmp_total <= 8 * 1024 * 1024
    shm_bytes, shm_err = (int(x) for x in lines(result)[3].split())
    assert shm_err in (27, 28)
    assert shm_bytes <= 8 * 1024 * 1024
    await target.still_serving()


# ------------------------------------------------------------------ the server's process


async def test_environment_secrets_do_not_leak(target: Target) -> None:
    code = f"""
import glob, os
print("in os.environ:", {SECRET!r} in repr(dict(os.environ)), "OPENAI_API_KEY" in os.environ)
leaks = []
for path in set(glob.glob("/proc/*/environ") + ["/proc/self/environ", "/proc/1/environ",
                                                 f"/proc/{{os.getppid()}}/environ"]):
    try:
        data = open(path, "rb").read()
    except OSError:
        continue
    if b"OPENAI_API_KEY" in data or {SECRET.encode()!r} in data:
        leaks.append(path)
print("leaks:", leaks)
"""
    result = await target.run(code)
    assert lines(result) == ["in os.environ: False False", "leaks: []"], result
    await target.still_serving()


async def test_killing_the_parent_does_not_reach_the_server(target: Target) -> None:
    code = f"""
import os, signal, subprocess
for pid in (os.getppid(), 1, {target.server_pid}):
    try:
        os.kill(pid, signal.SIGKILL)
        print("sent", pid)
    except OSError as exc:
        print("refused", pid, exc.errno)
subprocess.run("kill -9 -1", shell=True)
os.kill(-1, signal.SIGKILL)
"""
    result = await target.run(code)
    assert result["killed_by_signal"] == "SIGKILL", result
    assert await no_sandbox_processes(target.workspace)
    await target.still_serving()


async def test_proc_self_tricks(target: Target) -> None:
    code = f"""
import os
print(sorted(os.listdir("/proc/self/root")) == sorted(os.listdir("/")))
for p in ("/proc/self/root/etc/shadow", "/proc/1/root/etc/shadow", "/proc/1/cwd/../../etc/shadow",
          "/proc/1/root/root/.ssh", "/proc/{target.server_pid}/environ", "/home", "/boot"):
    print(p, os.path.exists(p))
print(len([p for p in os.listdir("/proc") if p.isdigit()]))
"""
    result = await target.run(code)
    out = lines(result)
    assert out[0] == "True"
    assert all(line.endswith(" False") for line in out[1:8]), result
    assert int(out[8]) < 10  # a private pid namespace: bwrap's init, us, and little else
    await target.still_serving()


async def test_a_shell_sees_nothing_of_the_host(target: Target) -> None:
    code = """
import subprocess
done = subprocess.run("cat /etc/shadow; ls /home; id -u; hostname; ls /root",
                      shell=True, capture_output=True, text=True)
print(done.stdout)
print(done.stderr)
"""
    result = await target.run(code)
    out = result["stdout"]
    assert "No such file" in out
    assert "root:" not in out
    assert "sandbox" in out  # the hostname
    assert ".ssh" not in out
    await target.still_serving()


async def test_ctypes_syscalls_are_refused(target: Target) -> None:
    code = f"""
import ctypes, json, socket
libc = ctypes.CDLL(None, use_errno=True)
def call(fn, *args):
    return [getattr(libc, fn)(*args), ctypes.get_errno()]
results = {{
    "mount": call("mount", b"none", b"/usr", b"tmpfs", 0, None),
    "umount": call("umount2", b"/usr", 2),
    "unshare_user": call("unshare", 0x10000000),
    "unshare_net": call("unshare", 0x40000000),
    "unshare_mount": call("unshare", 0x00020000),
    "ptrace_server": call("ptrace", 16, {target.server_pid}, None, None),
    "chroot": call("chroot", b"/tmp"),
    "setuid0": call("setuid", 0),
    "sethostname": call("sethostname", b"pwned", 5),
    "reboot_cad_off": call("reboot", 0),
}}
print(json.dumps(results))
"""
    before = socket.gethostname()
    result = await target.run(code)
    results = json.loads(lines(result)[0])
    assert all(ret == -1 for ret, _ in results.values()), results
    assert socket.gethostname() == before
    await target.still_serving()


# ------------------------------------------------------------------ hostile paths


async def test_symlink_escapes(target: Target) -> None:
    ws = target.workspace
    (ws / "etc_link").symlink_to("/etc")
    (ws / "shadow_link").symlink_to("/etc/shadow")
    for path in ("etc_link/passwd", "shadow_link", "etc_link"):
        assert "symbolic link" in await target.refused("read_file", path=path)
    assert "symbolic link" in await target.refused("list_directory", path="etc_link")
    found = await target.call("search_files", pattern="**/passwd")
    assert found.structured_content is not None
    assert found.structured_content["matches"] == []
    # Through the sandbox, the link leads to the sandbox's own minimal /etc.
    code = """
import os
print(os.path.exists("etc_link/shadow"))
print("daemon:" in open("etc_link/passwd").read())
os.symlink("/etc/hostname", "made_link")
os.symlink("/", "root_link")
"""
    result = await target.run(code)
    assert lines(result) == ["False", "False"], result
    for path in ("made_link", "root_link/etc/hostname"):
        assert "outside the workspace" in await target.refused("read_file", path=path)
    await target.still_serving()


async def test_writing_through_a_symlink_to_outside(target: Target) -> None:
    victim = target.tmp / "victim.txt"
    victim.write_text("original\n")
    (target.workspace / "out_link").symlink_to(victim)
    await target.refused("write_file", path="out_link", content="pwned")
    await target.refused("edit_file", path="out_link", old_text="original", new_text="pwned")
    assert victim.read_text() == "original\n"
    await target.still_serving()


async def test_swapping_a_directory_for_a_symlink_during_reads(target: Target) -> None:
    # Sandboxed code flips race/ between a real directory and a symlink to the host's /etc
    # (the link target is only the sandbox's /etc inside, but read_file runs on the host).
    ws = target.workspace
    (ws / "race").mkdir()
    (ws / "race" / "passwd").write_text("inside\n")
    code = """
import os, time
os.rename("race", "race_dir")
end = time.monotonic() + 2.5
while time.monotonic() < end:
    os.symlink("/etc", "race_tmp")
    os.replace("race_tmp", "race")
    os.unlink("race")
    os.rename("race_dir", "race")
    os.rename("race", "race_dir")
os.rename("race_dir", "race")
"""
    runner = asyncio.create_task(target.run(code))
    outcomes: list[str] = []
    while not runner.done():
        result = await target.call("read_file", path="race/passwd")
        body = text(result)
        assert "root:" not in body, body
        assert "daemon:" not in body, body
        if result.is_error:
            outcomes.append("refused")
        else:
            assert result.structured_content is not None
            outcomes.append(result.structured_content["content"])
    await runner
    assert len(outcomes) > 10  # the race really ran
    assert set(outcomes) <= {"refused", "inside\n"}
    await target.still_serving()


async def test_a_fifo_cannot_hang_the_file_tools(target: Target) -> None:
    # Opening a FIFO blocks until the other end shows up; the file tools must not wait.
    made = await target.run("import os\nos.mkfifo('pipe')\nos.mkfifo('sub.txt')")
    assert made["exit_code"] == 0, made
    for tool, arguments in (
        ("read_file", {"path": "pipe"}),
        ("write_file", {"path": "pipe", "content": "x"}),
        ("edit_file", {"path": "pipe", "old_text": "a", "new_text": "b"}),
    ):
        message = await asyncio.wait_for(target.refused(tool, **arguments), 30)
        assert "not a regular file" in message
    searched = await asyncio.wait_for(target.call("search_files", text="anything"), 30)
    assert not searched.is_error
    await target.still_serving()


async def test_nul_bytes_in_paths(target: Target) -> None:
    for tool, arguments in (
        ("read_file", {"path": "README.md\x00../../etc/passwd"}),
        ("write_file", {"path": "x\x00y", "content": "z"}),
        ("edit_file", {"path": "README.md\x00", "old_text": "n", "new_text": "m"}),
        ("list_directory", {"path": "\x00"}),
        ("search_files", {"path": ".\x00/etc"}),
        ("search_files", {"pattern": "*\x00"}),
    ):
        message = await target.refused(tool, **arguments)
        assert "NUL" in message or "relative" in message, message
    assert sorted(os.listdir(target.workspace)) == ["README.md"]
    await target.still_serving()


# ------------------------------------------------------------------ without bubblewrap


async def test_without_bwrap_limits_and_timeout_still_apply(tmp_path: Path) -> None:
    async with serve(tmp_path, bwrap=str(tmp_path / "missing" / "bwrap")) as target:
        result = await target.run("print('hi')")
        assert result["isolated"] is False
        assert "isolation unavailable" in result["notes"][0]
        assert result["stdout"] == "hi\n"
        memory = await target.run("x = bytearray(2 * 1024 ** 3)")
        assert "MemoryError" in memory["stderr"]
        slow = await target.run("import time; time.sleep(60)", timeout_seconds=1)
        assert slow["timed_out"] is True
        env = await target.run("import os; print('OPENAI_API_KEY' in os.environ)")
        assert env["stdout"] == "False\n"
        os.kill(target.server_pid, 0)
        assert await no_sandbox_processes(target.workspace)
