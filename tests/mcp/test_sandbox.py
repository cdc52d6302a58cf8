"""``Sandbox``: what the code sees (workspace as cwd, empty env, no network), the limits and
the timeout, output capture and truncation, and the fallback without bubblewrap.

Hostile code is ``test_redteam.py``'s business; this file checks the mechanics.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from octopussy.config import SandboxSettings
from octopussy.errors import ToolError
from octopussy.mcp.sandbox import Sandbox, SandboxResult
from proctable import no_sandbox_processes, sandbox_pids

needs_bwrap = pytest.mark.skipif(
    shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed"
)

_INTERPRETER = Path(os.path.realpath(sys.executable))


def settings(**overrides: object) -> SandboxSettings:
    base: dict[str, object] = {"timeout_seconds": 10.0, "max_output_chars": 5000}
    base.update(overrides)
    return SandboxSettings.model_validate(base)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


@pytest.fixture
def sandbox(workspace: Path) -> Sandbox:
    return Sandbox(settings(), workspace)


def host_has(path: str) -> bool:
    return os.path.exists(path)


@needs_bwrap
async def test_hello_world_is_isolated(sandbox: Sandbox) -> None:
    result = await sandbox.run_python("print('hello', 6 * 7)")
    assert result == SandboxResult(
        stdout="hello 42\n",
        stderr="",
        exit_code=0,
        isolated=True,
        duration_seconds=result.duration_seconds,
    )
    assert result.ok
    assert 0 < result.duration_seconds < 10
    available, reason = sandbox.isolation_available()
    assert available
    assert "bubblewrap" in reason


@needs_bwrap
async def test_errors_are_results_not_exceptions(sandbox: Sandbox) -> None:
    result = await sandbox.run_python("import sys\nprint('before')\nraise ValueError('boom')")
    assert result.exit_code == 1
    assert result.stdout == "before\n"
    assert "ValueError: boom" in result.stderr
    assert not result.ok
    exited = await sandbox.run_python("import sys; sys.exit(3)")
    assert exited.exit_code == 3
    assert exited.killed_by_signal is None


@needs_bwrap
async def test_stdin_reaches_the_code(sandbox: Sandbox) -> None:
    result = await sandbox.run_python("import sys; print(sys.stdin.read().upper())", stdin="abc")
    assert result.stdout == "ABC\n"
    ignored = await sandbox.run_python("print('no read')", stdin="x" * 1_000_000)
    assert ignored.stdout == "no read\n"


@needs_bwrap
async def test_the_workspace_is_the_cwd_read_write_and_importable(
    sandbox: Sandbox, workspace: Path
) -> None:
    (workspace / "helper.py").write_text("VALUE = 'from the workspace'\n")
    code = (
        "import os, helper\n"
        "print(os.getcwd())\n"
        "print(helper.VALUE)\n"
        "open('made.txt', 'w').write('by the sandbox')\n"
    )
    result = await sandbox.run_python(code)
    assert result.stdout.splitlines() == [str(workspace), "from the workspace"], result
    assert (workspace / "made.txt").read_text() == "by the sandbox"


@needs_bwrap
async def test_the_environment_is_minimal(
    sandbox: Sandbox, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-sandbox-test")
    result = await sandbox.run_python("import os, json; print(json.dumps(dict(os.environ)))")
    env = json.loads(result.stdout)
    assert env.pop("PWD", str(workspace)) == str(workspace)
    env.pop("LC_CTYPE", None)  # Python's C-locale coercion may add it
    assert env == {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(workspace),
    }


@needs_bwrap
async def test_private_tmp_and_read_only_system(
    sandbox: Sandbox, workspace: Path, tmp_path: Path
) -> None:
    host_file = tmp_path / "host-only.txt"
    host_file.write_text("host")
    code = (
        "import os\n"
        "import json\n"
        "print(json.dumps(sorted(os.listdir('/tmp'))))\n"
        f"print(os.path.exists({str(host_file)!r}))\n"
        "open('/tmp/scratch', 'w').write('ok')\n"
        "for p in ('/usr/x', '/etc/x', '/x', '/run/sandbox/x', '/dev/x'):\n"
        "    try:\n"
        "        open(p, 'w')\n"
        "        print('WROTE', p)\n"
        "    except OSError as e:\n"
        "        print('refused', p, e.errno)\n"
    )
    result = await sandbox.run_python(code)
    lines = result.stdout.splitlines()
    # /tmp is a fresh tmpfs: only the mount points of the workspace and of the interpreter
    # (a checkout cloned under /tmp has its venv there) may show.
    visible = {
        path.parts[2]
        for path in (workspace, Path(sys.prefix), _INTERPRETER)
        if len(path.parts) > 2 and path.parts[1] == "tmp"
    }
    assert set(json.loads(lines[0])) <= visible, result
    assert lines[1] == "False"
    assert [line.split()[0] for line in lines[2:]] == ["refused"] * 5, result
    assert not host_has("/tmp/scratch")


@needs_bwrap
async def test_timeout_kills_everything_the_code_started(
    workspace: Path,
) -> None:
    sandbox = Sandbox(settings(timeout_seconds=1.5), workspace)
    code = (
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'],\n"
        "                 start_new_session=True)\n"
        "print('started', flush=True)\n"
        "time.sleep(300)\n"
    )
    started = time.monotonic()
    result = await sandbox.run_python(code)
    assert time.monotonic() - started < 8
    assert result.timed_out
    assert result.exit_code is None
    assert result.killed_by_signal == "SIGKILL"
    assert result.stdout == "started\n"
    assert any("wall-clock timeout" in note for note in result.notes)
    assert await no_sandbox_processes(workspace)


@needs_bwrap
async def test_timeout_per_call(sandbox: Sandbox) -> None:
    result = await sandbox.run_python("import time; time.sleep(30)", timeout_seconds=0.5)
    assert result.timed_out
    assert "0.5 s" in result.notes[0]


@needs_bwrap
async def test_cpu_limit(workspace: Path) -> None:
    sandbox = Sandbox(settings(cpu_seconds=1, timeout_seconds=20), workspace)
    result = await sandbox.run_python("while True: pass")
    assert not result.timed_out
    assert result.killed_by_signal in ("SIGXCPU", "SIGKILL")
    assert any("CPU time limit" in note for note in result.notes)


@needs_bwrap
async def test_memory_limit(workspace: Path) -> None:
    sandbox = Sandbox(settings(memory_mb=128), workspace)
    result = await sandbox.run_python("x = bytearray(400 * 1024 * 1024)\nprint('allocated')")
    assert "MemoryError" in result.stderr
    assert "allocated" not in result.stdout
    assert any("memory limit" in note for note in result.notes)


@needs_bwrap
async def test_file_size_limit(workspace: Path) -> None:
    sandbox = Sandbox(settings(max_file_mb=1), workspace)
    code = "with open('big.bin', 'wb') as f:\n    f.write(b'x' * (3 * 1024 * 1024))"
    result = await sandbox.run_python(code)
    assert "File too large" in result.stderr
    assert (workspace / "big.bin").stat().st_size <= 1024 * 1024
    assert any("file size limit" in note for note in result.notes)


@needs_bwrap
async def test_output_is_truncated_but_drained_on_both_streams(workspace: Path) -> None:
    sandbox = Sandbox(settings(max_output_chars=1000), workspace)
    # 2 MB on each stream, interleaved: a pipe left undrained would block the child forever.
    code = (
        "import sys\n"
        "for i in range(2000):\n"
        "    sys.stdout.write('o' * 1000)\n"
        "    sys.stderr.write('e' * 1000)\n"
        "print('END')\n"
    )
    result = await sandbox.run_python(code)
    assert result.exit_code == 0
    assert result.truncated
    assert result.stdout.startswith("o" * 1000 + "\n[output truncated: ")
    assert result.stdout.endswith(f"[output truncated: {2000 * 1000 - 1000 + 4} more characters]")
    assert "[output truncated: " in result.stderr
    assert any("truncated to 1000 characters" in note for note in result.notes)


@needs_bwrap
async def test_utf8_output_split_across_reads(sandbox: Sandbox) -> None:
    result = await sandbox.run_python("print('é' * 3000 + '🐙')")
    assert result.stdout == "é" * 3000 + "🐙\n"


@needs_bwrap
async def test_cancelling_a_run_kills_it(sandbox: Sandbox, workspace: Path) -> None:
    task = asyncio.create_task(
        sandbox.run_python("import time; print('up', flush=True); time.sleep(60)")
    )
    deadline = time.monotonic() + 10
    while not sandbox_pids(workspace):
        assert time.monotonic() < deadline, "the sandboxed code never started"
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await no_sandbox_processes(workspace)


@needs_bwrap
async def test_concurrent_runs_are_independent(sandbox: Sandbox) -> None:
    results = await asyncio.gather(
        *(sandbox.run_python(f"import time; time.sleep(0.2); print({i})") for i in range(4))
    )
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(4)]


# ------------------------------------------------------------------ without bubblewrap


async def test_missing_bwrap_falls_back_with_limits_and_a_note(workspace: Path) -> None:
    sandbox = Sandbox(
        settings(memory_mb=128, timeout_seconds=1.0),
        workspace,
        bwrap_path=workspace / "no-such-bwrap",
    )
    available, reason = sandbox.isolation_available()
    assert not available
    assert "not found" in reason
    code = (
        "import os, resource, json\n"
        "print(json.dumps([os.getcwd(), sorted(os.environ), resource.getrlimit(resource.RLIMIT_AS),"
        " resource.getrlimit(resource.RLIMIT_CPU)[0]]))\n"
    )
    result = await sandbox.run_python(code)
    assert not result.isolated
    assert "isolation unavailable" in result.notes[0]
    assert "WITHOUT a sandbox" in result.notes[0]
    cwd, env_keys, as_limit, cpu = json.loads(result.stdout)
    assert cwd == str(workspace)
    assert "OPENAI_API_KEY" not in env_keys
    assert set(env_keys) <= {
        "PATH",
        "HOME",
        "TMPDIR",
        "LANG",
        "LC_CTYPE",
        "PWD",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONUNBUFFERED",
        "PYTHONPATH",
    }
    assert as_limit == [128 * 1024 * 1024, 128 * 1024 * 1024]
    assert cpu == sandbox.settings.cpu_seconds
    memory = await sandbox.run_python("x = bytearray(400 * 1024 * 1024)")
    assert "MemoryError" in memory.stderr
    slow = await sandbox.run_python("import time; time.sleep(30)")
    assert slow.timed_out
    assert not slow.isolated
    assert await no_sandbox_processes(workspace)


async def test_missing_bwrap_with_required_isolation_is_a_tool_error(workspace: Path) -> None:
    sandbox = Sandbox(
        settings(require_isolation=True), workspace, bwrap_path=workspace / "no-such-bwrap"
    )
    with pytest.raises(ToolError, match="isolation is required"):
        await sandbox.run_python("print(1)")


async def test_bwrap_that_cannot_start_falls_back(workspace: Path, tmp_path: Path) -> None:
    # What a kernel without user namespaces looks like: bwrap exits 1 with a message.
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    sandbox = Sandbox(settings(), workspace, bwrap_path=fake)
    available, reason = sandbox.isolation_available()
    assert not available
    assert "No permissions to create new namespace" in reason
    result = await sandbox.run_python("print('still runs')")
    assert result.stdout == "still runs\n"
    assert not result.isolated
    assert "No permissions to create new namespace" in result.notes[0]


@needs_bwrap
async def test_an_older_bwrap_is_used_with_its_weaknesses_named(
    workspace: Path, tmp_path: Path
) -> None:
    # bubblewrap < 0.8 has neither --size nor --disable-userns: simulate one by hiding them.
    real = shutil.which("bwrap")
    fake = tmp_path / "old-bwrap"
    fake.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = --help ]; then {real} --help | grep -v -e --size -e --disable-userns; '
        "exit 0; fi\n"
        f'exec {real} "$@"\n'
    )
    fake.chmod(0o755)
    sandbox = Sandbox(settings(), workspace, bwrap_path=fake)
    available, reason = sandbox.isolation_available()
    assert available
    assert "not size-limited" in reason
    result = await sandbox.run_python("print('old but isolated')")
    assert result.isolated
    assert result.stdout == "old but isolated\n"
    assert any("nested user namespaces" in note for note in result.notes)
    assert any("not size-limited" in note for note in result.notes)


@needs_bwrap
async def test_the_interpreter_stays_read_only_inside_the_workspace() -> None:
    # A workspace that contains the venv (octopussy started from its own checkout): the
    # code must not plant a .pth file that the next, unsandboxed, start would execute.
    venv = Path(sys.prefix)
    planted = venv / "octopussy-planted.pth"
    sandbox = Sandbox(settings(), venv.parent)
    code = f"""
try:
    open({str(planted)!r}, "w").write("import os")
    print("PLANTED")
except OSError as exc:
    print("refused", exc.errno)
"""
    try:
        result = await sandbox.run_python(code)
        assert result.stdout == "refused 30\n", result  # EROFS
    finally:
        if planted.exists():
            planted.unlink()


async def test_a_system_directory_is_never_the_workspace() -> None:
    with pytest.raises(ToolError, match="refusing"):
        Sandbox(settings(), Path("/"))
    with pytest.raises(ToolError, match="refusing"):
        Sandbox(settings(), Path("/usr"))


def test_no_side_effects_at_construction(workspace: Path) -> None:
    before = set(os.listdir(workspace))
    Sandbox(settings(), workspace, python=sys.executable)
    assert set(os.listdir(workspace)) == before
