"""Run untrusted Python (from a model) in a real sandbox, with limits and a timeout.

::

    run_python(code)
      │  spawn: new session, minimal env, stdin/stdout/stderr pipes + one status pipe
      ▼
    launcher "outer"   on the host: dies with us (PDEATHSIG); as root it also opens a pid
      │                namespace whose pid_max caps the number of processes (see below)
      ▼
    bwrap              --unshare-all (net, pid, ipc, uts, cgroup, user), no capabilities,
      │                no nested user namespaces; read-only /usr, /lib*, interpreter, a
      │                minimal /etc and a read-only /proc; size-limited tmpfs /tmp and
      │                /dev/shm; the workspace bound read-write as the cwd
      ▼
    launcher "inner"   setrlimit(CPU, AS, NPROC, FSIZE, NOFILE, CORE=0), reports "started"
      │                on the status pipe (no "started" = bwrap itself failed), then execs
      ▼
    python main.py     the model's code; stdout/stderr drained concurrently and truncated

Meanwhile we enforce the wall-clock timeout (SIGKILL to the whole process group; with bwrap
that takes the sandbox's pid namespace down, so nothing the code started survives) and a
memory watchdog that sums the memory (PSS) of the run's processes (RLIMIT_AS bounds one
process, not a few hundred of them).

Running as root needs two extra measures, both measured here. ``RLIMIT_NPROC`` is never
enforced for host uid 0, even inside a user namespace that maps it to another uid, so the
cgroup-free hard cap on processes is a pid namespace with a small ``pid_max`` (per
namespace since Linux 6.14, minimum 301; before that it is global and we leave it alone).
And the kernel's sysctl permission check looks only at that host uid, so ``/proc`` is
mounted read-only (``kernel.core_pattern`` would otherwise be writable from inside). As a
normal user, RLIMIT_NPROC inside bwrap's user namespace counts the sandbox's processes only.

Where bwrap is missing or cannot start (no user namespaces), the code still runs, with the
rlimits, the timeout, the watchdog, an empty environment and the workspace as cwd, and the
result says ``isolated=False`` (or a ``ToolError`` when ``require_isolation`` is set).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from octopussy.config import SandboxSettings
from octopussy.errors import ToolError

log = logging.getLogger("octopussy.mcp.sandbox")

#: Where the per-run directory (code, launcher, /etc files) appears inside the sandbox.
SANDBOX_RUN_DIR = "/run/sandbox"
#: The uid/gid the code runs as inside bwrap's user namespace (a plain user, no capabilities).
SANDBOX_UID = 1000
#: The smallest pid_max Linux accepts for a pid namespace (RESERVED_PIDS + 1).
_MIN_PID_MAX = 301
_READ_CHUNK = 65536
#: After the process is gone, how long to wait for a straggler holding the output pipes.
_DRAIN_GRACE = 2.0
#: How often the memory watchdog sums the memory of a run's processes.
_WATCH_INTERVAL = 0.25
#: Host directories bound read-only as they are (symlinks like /bin -> usr/bin are recreated).
_SYSTEM_BINDS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
#: Paths that must never become the read-write workspace.
_SYSTEM_DIRS = frozenset(
    {"/", "/usr", "/etc", "/bin", "/sbin", "/lib", "/lib64", "/proc", "/dev", "/sys", "/boot"}
)

_LAUNCHER = r"""
# Octopussy sandbox launcher: run with `python -I -S launcher.py outer|inner JSON`.
import ctypes, json, os, resource, signal, sys

def status(fd, **message):
    if fd is not None:
        try:
            os.write(fd, (json.dumps(message) + "\n").encode())
        except OSError:
            pass

def die_with_parent(libc, parent):
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if parent and os.getppid() != parent:
        os._exit(125)

def exit_like(code):
    if os.WIFSIGNALED(code):
        os._exit(128 + os.WTERMSIG(code))
    os._exit(os.WEXITSTATUS(code))

def outer(cfg):
    fd = cfg["status_fd"]
    libc = ctypes.CDLL(None, use_errno=True)
    die_with_parent(libc, cfg["parent_pid"])
    pid_max = cfg.get("pid_max")
    if pid_max:
        if libc.unshare(0x20000000) != 0:  # CLONE_NEWPID
            status(fd, note="could not open a pid namespace to cap processes: "
                   + os.strerror(ctypes.get_errno()))
        else:
            child = os.fork()
            if child == 0:
                # pid 1 of the new namespace: cap it, start the target, reap orphans, and
                # exit with the target's status (which takes the whole namespace down).
                die_with_parent(libc, 0)
                try:
                    with open("/proc/sys/kernel/pid_max", "w") as f:
                        f.write(str(pid_max))
                    status(fd, pid_max=pid_max)
                except OSError as exc:
                    status(fd, note="could not cap processes (pid_max): " + str(exc))
                main = os.fork()
                if main == 0:
                    os.execv(cfg["argv"][0], cfg["argv"])
                if fd is not None:
                    os.close(fd)
                while True:
                    try:
                        pid, code = os.wait()
                    except ChildProcessError:
                        os._exit(1)
                    if pid == main:
                        exit_like(code)
            if fd is not None:
                os.close(fd)
            _, code = os.waitpid(child, 0)
            exit_like(code)
    os.execv(cfg["argv"][0], cfg["argv"])

def count_processes(uid):
    count = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat("/proc/" + name).st_uid == uid:
                    count += 1
            except OSError:
                pass
    return count

def inner(cfg):
    fd = cfg["status_fd"]
    os.set_inheritable(fd, False)  # the model's code never sees the status pipe
    notes = []
    for name, value in cfg["limits"].items():
        which = getattr(resource, name)
        if name == "RLIMIT_NPROC":
            if value is None:
                continue
            if cfg.get("nproc_relative"):
                # Outside a user namespace RLIMIT_NPROC counts all of this user's processes.
                value += count_processes(os.getuid())
        try:
            soft = value
            hard = value + 1 if name == "RLIMIT_CPU" else value  # SIGXCPU first, then SIGKILL
            resource.setrlimit(which, (soft, hard))
        except (ValueError, OSError) as exc:
            notes.append("could not set %s: %s" % (name, exc))
    status(fd, started=True, notes=notes)
    os.close(fd)
    os.execve(cfg["argv"][0], cfg["argv"], cfg["env"])

cfg = json.loads(sys.argv[2])
{"outer": outer, "inner": inner}[sys.argv[1]](cfg)
"""


@dataclass(slots=True)
class SandboxResult:
    """What a run produced. ``exit_code`` is shell-style (128+N when killed by signal N)."""

    stdout: str
    stderr: str
    exit_code: int | None
    timed_out: bool = False
    killed_by_signal: str | None = None
    truncated: bool = False
    isolated: bool = False
    notes: list[str] = field(default_factory=list)
    duration_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """The code ran to the end and exited 0."""
        return self.exit_code == 0 and not self.timed_out


@dataclass(frozen=True, slots=True)
class _Variant:
    """One way of calling bwrap that this bwrap supports (and, once probed, that works)."""

    userns: bool  # --unshare-user with --uid/--gid (else: setuid bwrap, no user namespace)
    disable_userns: bool  # --disable-userns: no nested user namespaces (bwrap >= 0.8)
    sized_tmpfs: bool  # --size before --tmpfs (bwrap >= 0.8)

    def weaknesses(self) -> list[str]:
        """What this variant cannot do, for the notes of every run."""
        found: list[str] = []
        if not self.userns:
            found.append("no user namespace (setuid bubblewrap)")
        elif not self.disable_userns:
            found.append("code may create nested user namespaces (bubblewrap < 0.8)")
        if not self.sized_tmpfs:
            found.append("/tmp and /dev/shm are not size-limited (bubblewrap < 0.8)")
        return found


@dataclass(slots=True)
class _Capture:
    """One output stream: keeps the head, counts what it dropped, never stops draining."""

    limit: int
    parts: list[str] = field(default_factory=list)
    kept: int = 0
    dropped: int = 0
    decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace")
    )

    def feed(self, data: bytes, *, final: bool = False) -> None:
        text = self.decoder.decode(data, final)
        room = self.limit - self.kept
        if room > 0:
            head = text[:room]
            self.parts.append(head)
            self.kept += len(head)
            self.dropped += len(text) - len(head)
        else:
            self.dropped += len(text)

    def text(self) -> str:
        out = "".join(self.parts)
        if self.dropped:
            out += f"\n[output truncated: {self.dropped} more characters]"
        return out


@dataclass(slots=True)
class _Outcome:
    """What supervising one process produced."""

    out: _Capture
    err: _Capture
    timed_out: bool = False
    stragglers: bool = False
    memory_exceeded: int = 0  # bytes held when the watchdog killed it


def _tree_memory(root: int) -> int:
    """Bytes of memory held by ``root`` and all its descendants (from /proc; 0 if gone).

    Proportional set size where the kernel has it, so pages that forked processes still
    share are counted once in total rather than once per process (RSS would make 300
    freshly forked interpreters look like gigabytes).
    """
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: fields start after the last ")".
        fields = stat[stat.rfind(b")") + 2 :].split()
        with contextlib.suppress(IndexError, ValueError):
            children.setdefault(int(fields[1]), []).append(int(name))
    total = 0
    todo = [root]
    seen: set[int] = set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        todo.extend(children.get(pid, ()))
        total += _process_memory(pid)
    return total


def _process_memory(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:  # no smaps_rollup (old kernel, or not ours to read): resident set size
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _kernel_at_least(major: int, minor: int) -> bool:
    release = os.uname().release.split("-")[0].split(".")
    try:
        return (int(release[0]), int(release[1])) >= (major, minor)
    except (IndexError, ValueError):
        return False


def _pid_cap_possible() -> bool:
    """Whether we may cap processes with a pid namespace's own ``pid_max``.

    Only as root (creating a pid namespace needs CAP_SYS_ADMIN; a normal user has a working
    RLIMIT_NPROC instead), and only on Linux 6.14+: before that ``pid_max`` is global and
    writing it would cap the whole machine.
    """
    return os.geteuid() == 0 and _kernel_at_least(6, 14)


def _python_roots() -> list[str]:
    """Directories the current interpreter needs (venv and base install), outside /usr."""
    candidates = {
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        sys.base_exec_prefix,
        str(Path(os.path.realpath(sys.executable)).parent.parent),
    }
    roots: list[str] = []
    for candidate in sorted(os.path.realpath(c) for c in candidates):
        covered = [*_SYSTEM_BINDS, *roots]
        if candidate in ("/", "") or any(
            candidate == r or candidate.startswith(r + "/") for r in covered
        ):
            continue
        roots.append(candidate)
    return roots


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class Sandbox:
    """Runs Python code under bubblewrap with rlimits and a wall-clock timeout.

    ``bwrap_path``: the bubblewrap binary (default: ``bwrap`` on PATH, looked up when first
    needed). ``python``: the interpreter to run inside (default: this one, whose venv and
    base install are bound read-only).
    """

    def __init__(
        self,
        settings: SandboxSettings,
        workspace: Path,
        *,
        bwrap_path: str | Path | None = None,
        python: str | Path | None = None,
        max_concurrent: int = 4,
    ) -> None:
        self.settings = settings
        self.workspace = Path(os.path.realpath(workspace))
        if str(self.workspace) in _SYSTEM_DIRS:
            raise ToolError(
                f"refusing to use {self.workspace} as the sandbox workspace",
                hint="configure a project directory as the workspace",
            )
        self._bwrap_path = str(bwrap_path) if bwrap_path is not None else None
        self._python = str(python) if python is not None else sys.executable
        self._variant: _Variant | None = None
        self._unavailable: str | None = None
        self._variant_lock = asyncio.Lock()
        # Each run is limited on its own; this bounds how many hold those limits at once.
        self._slots = asyncio.Semaphore(max_concurrent)

    # ------------------------------------------------------------------ isolation probe

    def _bwrap(self) -> str | None:
        if self._bwrap_path is not None:
            path = self._bwrap_path
            return path if os.path.isfile(path) and os.access(path, os.X_OK) else None
        return shutil.which("bwrap")

    def isolation_available(self) -> tuple[bool, str]:
        """Whether bwrap can start a sandbox here, and a one-line reason. Blocks briefly.

        The answer is cached; ``run_python`` also learns it from its first run.
        """
        if self._variant is not None:
            return True, self._describe()
        if self._unavailable is not None:
            return False, self._unavailable
        bwrap = self._bwrap()
        if bwrap is None:
            self._unavailable = self._missing_reason()
            return False, self._unavailable
        errors: list[str] = []
        options = _bwrap_options(bwrap)
        disable, size = "--disable-userns" in options, "--size" in options
        candidates = (_Variant(True, disable, size), _Variant(False, False, size))
        with tempfile.TemporaryDirectory(prefix="octopussy-probe-") as run_dir:
            self._write_run_dir(Path(run_dir), "pass")
            for variant in candidates:
                argv = [
                    bwrap,
                    *self._bwrap_args(variant, Path(run_dir)),
                    "--",
                    self._python,
                    "-I",
                    "-S",
                    "-c",
                    "pass",
                ]
                try:
                    done = subprocess.run(
                        argv,
                        env=self._base_env(),
                        stdin=subprocess.DEVNULL,
                        capture_output=True,
                        timeout=30,
                        check=False,
                    )
                except (OSError, subprocess.TimeoutExpired) as exc:
                    errors.append(str(exc))
                    continue
                if done.returncode == 0:
                    self._variant = variant
                    return True, self._describe()
                errors.append(_first_line(done.stderr.decode(errors="replace")) or "exit 1")
        self._unavailable = f"bubblewrap at {bwrap} cannot start a sandbox here: {errors[0]}"
        return False, self._unavailable

    def _missing_reason(self) -> str:
        where = self._bwrap_path or "PATH"
        return f"bubblewrap (bwrap) not found at {where}"

    def _describe(self) -> str:
        assert self._variant is not None
        what = "no network, private /tmp, read-only system"
        weak = "; ".join(self._variant.weaknesses())
        return f"bubblewrap at {self._bwrap()} ({what}{'; but ' + weak if weak else ''})"

    # ------------------------------------------------------------------ running code

    async def run_python(
        self,
        code: str,
        *,
        stdin: str | None = None,
        timeout_seconds: float | None = None,
        network: bool = False,
    ) -> SandboxResult:
        """Run ``code`` as a script with the workspace as cwd; never raises for what the
        code does (errors, limits, timeouts are in the result). ``ToolError`` only when
        isolation is required and unavailable.

        ``network=True`` shares the host's network (a generated tool the user allowed to
        use it); everything else stays isolated."""
        timeout = timeout_seconds if timeout_seconds is not None else self.settings.timeout_seconds
        variant = await self._pick_variant()
        if variant is None and self.settings.require_isolation:
            raise ToolError(
                f"the sandbox is unavailable ({self._unavailable}) and isolation is required",
                hint="install bubblewrap and allow user namespaces, or set "
                "sandbox.require_isolation: false",
            )
        async with self._slots:
            result = await self._run_in_dir(
                code, variant, stdin=stdin, timeout=timeout, network=network
            )
        if not result.isolated:
            result.notes.insert(
                0,
                f"isolation unavailable ({self._unavailable}): the code ran WITHOUT a sandbox, "
                "with resource limits, a timeout and an empty environment only",
            )
        return result

    async def _run_in_dir(
        self,
        code: str,
        variant: _Variant | None,
        *,
        stdin: str | None,
        timeout: float,
        network: bool = False,
    ) -> SandboxResult:
        with tempfile.TemporaryDirectory(prefix="octopussy-run-") as tmp:
            run_dir = Path(tmp)
            self._write_run_dir(run_dir, code, network=network)
            result = await self._run(
                run_dir, variant, stdin=stdin, timeout=timeout, network=network
            )
            if result is None:
                # bwrap itself failed to set up (e.g. user namespaces went away): remember,
                # then run unisolated or refuse, as for a missing bwrap.
                if self.settings.require_isolation:
                    raise ToolError(
                        f"the sandbox failed to start ({self._unavailable}) and isolation is "
                        "required",
                        hint="check bubblewrap and user namespaces (`octopussy doctor`)",
                    )
                result = await self._run(run_dir, None, stdin=stdin, timeout=timeout)
                assert result is not None
        return result

    async def _pick_variant(self) -> _Variant | None:
        async with self._variant_lock:
            if self._variant is None and self._unavailable is None:
                # The probe blocks for tens of milliseconds, once; keep the loop free.
                await asyncio.to_thread(self.isolation_available)
            return self._variant

    async def _run(
        self,
        run_dir: Path,
        variant: _Variant | None,
        *,
        stdin: str | None,
        timeout: float,
        network: bool = False,
    ) -> SandboxResult | None:
        settings = self.settings
        as_root = os.geteuid() == 0
        pid_max = max(_MIN_PID_MAX, settings.max_processes + 4) if _pid_cap_possible() else None
        isolated = variant is not None
        in_run_dir = SANDBOX_RUN_DIR if isolated else str(run_dir)
        status_read, status_write = os.pipe()
        env = self._code_env(in_run_dir)
        limits: dict[str, int | None] = {
            "RLIMIT_CPU": settings.cpu_seconds,
            "RLIMIT_AS": settings.memory_mb * 1024 * 1024,
            "RLIMIT_FSIZE": settings.max_file_mb * 1024 * 1024,
            "RLIMIT_NOFILE": 1024,
            "RLIMIT_CORE": 0,
            # Useless for uid 0 outside a user namespace (never enforced): the pid
            # namespace cap covers root; a normal user gets an exact cap.
            "RLIMIT_NPROC": None if (as_root and not isolated) else settings.max_processes,
        }
        inner_cfg = {
            "status_fd": status_write,
            "limits": limits,
            "nproc_relative": not (variant is not None and variant.userns),
            "env": env,
            "argv": [self._python, f"{in_run_dir}/main.py"],
        }
        inner = [self._python, "-I", "-S", f"{in_run_dir}/launcher.py", "inner"]
        inner.append(json.dumps(inner_cfg))
        if isolated:
            assert variant is not None
            bwrap = self._bwrap()
            assert bwrap is not None
            target = [bwrap, *self._bwrap_args(variant, run_dir, network=network), "--", *inner]
        else:
            target = inner
        outer_cfg = {
            "status_fd": status_write,
            "parent_pid": os.getpid(),
            "pid_max": pid_max,
            "argv": target,
        }
        argv = [self._python, "-I", "-S", str(run_dir / "launcher.py"), "outer"]
        argv.append(json.dumps(outer_cfg))
        started = time.monotonic()
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self._base_env(),
                cwd=self.workspace,
                pass_fds=(status_write,),
                start_new_session=True,
            )
        except OSError as exc:
            os.close(status_read)
            os.close(status_write)
            raise ToolError(f"could not start the sandbox: {exc}") from exc
        os.close(status_write)
        try:
            outcome = await self._supervise(process, stdin=stdin, timeout=timeout)
        finally:
            status = _read_status(status_read)
        out, err, timed_out = outcome.out, outcome.err, outcome.timed_out
        duration = time.monotonic() - started
        if isolated and not status.get("started"):
            # No "started" line: bwrap never reached our code, so this is a setup failure.
            reason = _first_line(err.text()) or f"exit status {process.returncode}"
            self._variant = None
            self._unavailable = f"bubblewrap failed to start: {reason}"
            log.warning("sandbox: %s; falling back", self._unavailable)
            return None
        returncode = process.returncode
        signame: str | None = None
        exit_code: int | None = returncode
        if returncode is not None and returncode < 0:
            signame = _signal_name(-returncode)
            exit_code = 128 - returncode
        elif returncode is not None and returncode > 128 and (isolated or pid_max):
            # bwrap and the pid-namespace launcher report a death by signal N as 128+N.
            signame = _signal_name(returncode - 128)
        if timed_out:
            signame = "SIGKILL"
            exit_code = None
        result = SandboxResult(
            stdout=out.text(),
            stderr=err.text(),
            exit_code=exit_code,
            timed_out=timed_out,
            killed_by_signal=signame,
            truncated=bool(out.dropped or err.dropped),
            isolated=isolated,
            notes=[],
            duration_seconds=round(duration, 3),
        )
        if variant is not None:
            result.notes.extend(f"sandbox weakness: {w}" for w in variant.weaknesses())
        result.notes.extend(status.get("notes", []))
        result.notes.extend(self._explain(result, timeout, outcome))
        return result

    async def _supervise(
        self, process: asyncio.subprocess.Process, *, stdin: str | None, timeout: float
    ) -> _Outcome:
        limit = self.settings.max_output_chars
        outcome = _Outcome(out=_Capture(limit), err=_Capture(limit))
        assert process.stdout is not None
        assert process.stderr is not None
        readers = [
            asyncio.create_task(_drain(process.stdout, outcome.out)),
            asyncio.create_task(_drain(process.stderr, outcome.err)),
        ]
        if stdin is not None and process.stdin is not None:
            readers.append(asyncio.create_task(_feed(process.stdin, stdin)))
        watchdog = asyncio.create_task(self._watch_memory(process.pid, outcome))
        try:
            try:
                await asyncio.wait_for(process.wait(), timeout)
            except TimeoutError:
                outcome.timed_out = True
                _kill_group(process.pid)
                await process.wait()
            # With bwrap the pid namespace is gone now; unisolated, a process that left
            # our session can still hold the pipes: give it a moment, then stop reading.
            _, pending = await asyncio.wait(readers, timeout=_DRAIN_GRACE)
            if pending:
                outcome.stragglers = True
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        except BaseException:
            # Cancelled (the client gave up) or crashed: leave nothing running.
            _kill_group(process.pid)
            for task in readers:
                task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(process.wait(), 5)
            raise
        finally:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
        return outcome

    async def _watch_memory(self, pid: int, outcome: _Outcome) -> None:
        """Kill the run when all its processes together hold too much memory.

        RLIMIT_AS bounds each process, not their sum: a few hundred forked processes could
        still exhaust the host. Without cgroups the honest substitute is to look: every
        quarter second, sum the memory of the process tree (bwrap's pid namespace is inside
        it) and kill the group when it passes twice ``memory_mb``. A burst between two
        looks can overshoot by what the code allocates in a quarter second.
        """
        budget = 2 * self.settings.memory_mb * 1024 * 1024
        while True:
            await asyncio.sleep(_WATCH_INTERVAL)
            resident = await asyncio.to_thread(_tree_memory, pid)
            if resident > budget:
                outcome.memory_exceeded = resident
                _kill_group(pid)
                return

    def _explain(self, result: SandboxResult, timeout: float, outcome: _Outcome) -> list[str]:
        """Notes that tell a model which limit it hit and what to do about it."""
        s = self.settings
        notes: list[str] = []
        if outcome.memory_exceeded:
            notes.append(
                "memory limit for the whole run reached: its processes held "
                f"{outcome.memory_exceeded // (1024 * 1024)} MB together (at most "
                f"{2 * s.memory_mb} MB); it was killed"
            )
        if result.timed_out:
            notes.append(
                f"wall-clock timeout: the code ran longer than {timeout:g} s and was killed "
                "with every process it started; make it faster or do less per call"
            )
        elif result.killed_by_signal == "SIGXCPU" or (
            result.killed_by_signal == "SIGKILL" and result.duration_seconds >= s.cpu_seconds
        ):
            notes.append(f"CPU time limit reached ({s.cpu_seconds} s of CPU per process)")
        if "MemoryError" in result.stderr or "Cannot allocate memory" in result.stderr:
            notes.append(f"memory limit reached ({s.memory_mb} MB of address space per process)")
        if "File too large" in result.stderr:
            notes.append(f"file size limit reached ({s.max_file_mb} MB per file)")
        if "No space left on device" in result.stderr:
            notes.append(f"disk full: /tmp and /dev/shm hold at most {s.tmp_size_mb} MB each")
        if "Resource temporarily unavailable" in result.stderr:
            notes.append(f"process limit reached (at most {s.max_processes} processes)")
        if result.truncated:
            notes.append(
                f"output was truncated to {s.max_output_chars} characters per stream; "
                "print less, or write large results to a file and read it in pages"
            )
        if outcome.stragglers:
            notes.append("a background process kept the output open after the code ended")
        return notes

    # ------------------------------------------------------------------ building blocks

    def _base_env(self) -> dict[str, str]:
        """The environment of every process we start: nothing inherited from the server."""
        return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}

    def _code_env(self, run_dir: str) -> dict[str, str]:
        home = "/tmp" if run_dir == SANDBOX_RUN_DIR else run_dir
        return {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": home,
            "TMPDIR": home,
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            # The script lives in the run dir; make the workspace importable like a cwd.
            "PYTHONPATH": str(self.workspace),
        }

    def _write_run_dir(self, run_dir: Path, code: str, *, network: bool = False) -> None:
        (run_dir / "launcher.py").write_text(_LAUNCHER, encoding="utf-8")
        (run_dir / "main.py").write_text(code, encoding="utf-8")
        uid = SANDBOX_UID
        (run_dir / "passwd").write_text(
            f"root:x:0:0:root:/root:/bin/sh\nsandbox:x:{uid}:{uid}:sandbox:/tmp:/bin/sh\n"
            "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
            encoding="utf-8",
        )
        (run_dir / "group").write_text(
            f"root:x:0:\nsandbox:x:{uid}:\nnogroup:x:65534:\n", encoding="utf-8"
        )
        (run_dir / "hosts").write_text(
            "127.0.0.1 localhost sandbox\n::1 localhost\n", encoding="utf-8"
        )
        hosts = "files dns" if network else "files"
        (run_dir / "nsswitch.conf").write_text(
            f"passwd: files\ngroup: files\nhosts: {hosts}\n", encoding="utf-8"
        )
        # Read and executable for the sandbox user, whatever uid it maps to.
        for path in (run_dir, *run_dir.iterdir()):
            path.chmod(0o755 if path.is_dir() else 0o644)

    def _bwrap_args(self, variant: _Variant, run_dir: Path, *, network: bool = False) -> list[str]:
        s = self.settings
        tmp_bytes = str(s.tmp_size_mb * 1024 * 1024)
        args = ["--unshare-all", "--die-with-parent", "--new-session", "--hostname", "sandbox"]
        if network:
            args += ["--share-net"]
        if variant.userns:
            uid = str(SANDBOX_UID)
            args += ["--unshare-user", "--uid", uid, "--gid", uid]
            if variant.disable_userns:
                args += ["--disable-userns"]
        args += ["--cap-drop", "ALL", "--clearenv"]
        for key, value in self._code_env(SANDBOX_RUN_DIR).items():
            args += ["--setenv", key, value]
        for name in _SYSTEM_BINDS:
            path = Path(name)
            if path.is_symlink():
                args += ["--symlink", os.readlink(path), str(path)]
            elif path.is_dir():
                args += ["--ro-bind", str(path), str(path)]
        # A minimal /etc: the dynamic loader's cache, time zone and alternatives links from
        # the host; users, groups, hosts and name service config written by us.
        host_etc = ["ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "alternatives"]
        if network:
            host_etc += ["resolv.conf", "ssl", "ca-certificates", "gai.conf"]
        for etc in host_etc:
            args += ["--ro-bind-try", f"/etc/{etc}", f"/etc/{etc}"]
        for etc in ("passwd", "group", "hosts", "nsswitch.conf"):
            args += ["--ro-bind", str(run_dir / etc), f"/etc/{etc}"]
        # A read-only /proc: bwrap covers /proc/sysrq-trigger but not the files under
        # /proc/sys, and run as root (host uid 0 mapped into the sandbox) the kernel's
        # sysctl permission check only looks at that uid: global knobs such as
        # kernel.core_pattern would be writable. Nothing a script needs writes /proc.
        args += ["--proc", "/proc", "--remount-ro", "/proc", "--dev", "/dev"]
        size = ["--size", tmp_bytes] if variant.sized_tmpfs else []
        args += [*size, "--tmpfs", "/dev/shm", "--remount-ro", "/dev"]
        args += [*size, "--tmpfs", "/tmp"]
        args += ["--ro-bind", str(run_dir), SANDBOX_RUN_DIR]
        ws = str(self.workspace)
        args += ["--bind", ws, ws]
        # The interpreter last, over /tmp and the workspace: a venv that lives inside the
        # workspace (or under /tmp) stays visible and read-only, so code cannot plant a
        # .pth file that the next unsandboxed start of this interpreter would run.
        for root in _python_roots():
            args += ["--ro-bind", root, root]
        args += ["--chdir", ws, "--remount-ro", "/"]
        return args


async def _drain(stream: asyncio.StreamReader, capture: _Capture) -> None:
    while True:
        data = await stream.read(_READ_CHUNK)
        if not data:
            capture.feed(b"", final=True)
            return
        capture.feed(data)


async def _feed(writer: asyncio.StreamWriter, text: str) -> None:
    # The code may never read its stdin, or exit early: neither is an error.
    with contextlib.suppress(OSError, ConnectionError):
        writer.write(text.encode("utf-8"))
        await writer.drain()
    with contextlib.suppress(OSError, ConnectionError):
        writer.close()


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _read_status(fd: int) -> dict[str, Any]:
    """Collect the launchers' JSON lines (all written before the code started)."""
    os.set_blocking(fd, False)
    chunks: list[bytes] = []
    try:
        while True:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(fd)
    status: dict[str, Any] = {"notes": []}
    for line in b"".join(chunks).decode(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            message = json.loads(line)
            if isinstance(message, dict):
                status["notes"].extend(_strings(message.pop("notes", [])))
                if "note" in message:
                    status["notes"].append(str(message.pop("note")))
                status.update(message)
    return status


def _strings(value: Any) -> Iterable[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _bwrap_options(bwrap: str) -> str:
    """``bwrap --help`` (its option list), or "" when it cannot even print that."""
    try:
        done = subprocess.run(
            [bwrap, "--help"],
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")


def _first_line(text: str) -> str:
    for line in text.strip().splitlines():
        if line.strip():
            return line.strip()
    return ""
