"""The ``octopussy`` command: parse arguments, build a ``Runtime``, run one mode.

    octopussy [--config FILE] [--log-level L] [--verbose] [--debug] [COMMAND]
      chat                  the coordinator REPL (the default)
      ask TEXT...           one answer on stdout, for scripts ("-" reads stdin); waits for
                            the tasks it creates and prints their results (--no-wait: ids)
      tasks [ID] [--json]   recent tasks, or one task in full
      cancel ID             stop a queued or running task (also in a running chat/serve)
      schedules [--json]    the active recurring tasks: id, schedule, next run, runs
      unschedule ID         stop a recurring task (also in a running chat/serve)
      serve [--json]        every agent headless; notifications one per line
      config check [FILE]   validate a config file
      config show           the effective config (defaults filled in, secrets masked)
      notify TEXT...        show a notification in a running chat/serve (same data dir)
      agenda [DAYS]         upcoming calendar events (the first run signs in to Google)
      tools [ACTION]        list tools (origin, version); show/disable/enable/rollback/remove
                            a generated tool (a running chat/serve picks it up live)
      doctor                what is configured and reachable, each with OK or a fix
      version

``main(argv) -> int`` is the whole CLI, testable without a subprocess (STYLE.md §12).
Exit codes: 0 success, 1 an unexpected internal error, 2 bad input (config, usage, a
model or server that failed) with one line on stderr, 3 a task ``ask`` waited for failed or
was cancelled; tracebacks only with ``--debug``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from octopussy import __version__
from octopussy.config import LoadedConfig, load_config, parse_config
from octopussy.errors import ConfigError, OctopussyError
from octopussy.logs import setup_logging

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2
EXIT_TASK_FAILED = 3

log = logging.getLogger("octopussy.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="octopussy",
        description="Octopussy Light: a local-first multi-agent assistant.",
    )
    parser.add_argument("--config", metavar="FILE", help="config file (default: ./config.yaml)")
    parser.add_argument(
        "--log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        type=str.upper,
        help="log level (default: from config, INFO)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="also print logs on stderr (colored)"
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks; DEBUG logging")
    parser.add_argument("--version", action="version", version=f"octopussy {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    sub.add_parser("chat", help="chat with the coordinator (default)")

    ask = sub.add_parser("ask", help="one answer on stdout, for scripts")
    ask.add_argument("text", nargs="+", help='the question ("-" reads it from stdin)')
    ask.add_argument("--no-stream", action="store_true", help="print the answer at the end")
    ask.add_argument(
        "--no-wait", action="store_true", help="print the ids of created tasks and return"
    )

    tasks = sub.add_parser("tasks", help="recent tasks, or one task in full")
    tasks.add_argument("task_id", nargs="?", metavar="ID", help="show this task in full")
    tasks.add_argument("--json", action="store_true", help="machine-readable")
    tasks.add_argument("--limit", type=int, default=20, help="how many tasks (default 20)")

    cancel = sub.add_parser("cancel", help="stop a queued or running task")
    cancel.add_argument("task_id", metavar="ID")

    schedules = sub.add_parser("schedules", help="the active recurring tasks")
    schedules.add_argument("--json", action="store_true", help="machine-readable")
    unschedule = sub.add_parser("unschedule", help="stop a recurring task")
    unschedule.add_argument("schedule_id", metavar="ID")

    serve = sub.add_parser("serve", help="run every agent headless (for systemd)")
    serve.add_argument("--json", action="store_true", help="JSON lines: type, time, payload")

    config = sub.add_parser("config", help="validate or show the configuration")
    config_sub = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = config_sub.add_parser("check", help="validate a config file")
    check.add_argument("file", nargs="?", help="default: --config, then ./config.yaml")
    config_sub.add_parser("show", help="print the effective config (secrets masked)")

    mcp = sub.add_parser("mcp", help="MCP servers: serve the built-in tools, list, call")
    mcp_sub = mcp.add_subparsers(dest="mcp_command", metavar="ACTION", required=True)
    builtin = mcp_sub.add_parser("builtin", help="serve the built-in tools (stdio by default)")
    builtin.add_argument("--http", metavar="HOST:PORT", help="serve Streamable HTTP at /mcp")
    builtin.add_argument("--workspace", metavar="DIR", help="default: from config, else cwd")
    mcp_list = mcp_sub.add_parser("list", help="connect every server; show state and tools")
    mcp_list.add_argument("--json", action="store_true", help="machine-readable")
    call = mcp_sub.add_parser("call", help="call one tool by hand: SERVER.TOOL key=value ...")
    call.add_argument("tool", help="TOOL or SERVER.TOOL")
    call.add_argument("arguments", nargs="*", metavar="key=value", help="JSON values allowed")
    call.add_argument("--json", dest="json_args", metavar="OBJECT", help="arguments as JSON")

    notify = sub.add_parser("notify", help="show a notification in a running octopussy")
    notify.add_argument("text", nargs="+", help="the notification text")
    notify.add_argument("--label", default="NOTICE", help="the [LABEL] shown (default NOTICE)")

    agenda = sub.add_parser("agenda", help="upcoming calendar events (signs in to Google once)")
    agenda.add_argument("days", nargs="?", type=int, default=None, help="days ahead (default 7)")
    from octopussy.toolcli import add_parser as add_tools_parser

    add_tools_parser(sub)

    sub.add_parser("doctor", help="check model, sandbox, MCP servers; print fixes")
    sub.add_parser("version", help="print the version")
    return parser


def _error(message: str) -> None:
    print(f"octopussy: error: {message}", file=sys.stderr)


def _setup_logging(args: argparse.Namespace, loaded: LoadedConfig, *, stderr: bool) -> None:
    settings = loaded.config.logging
    level = "DEBUG" if args.debug else (args.log_level or settings.level)
    try:
        setup_logging(
            level=level,
            file=loaded.paths.log_file,
            stderr=stderr or args.verbose or settings.stderr,
        )
    except OSError as exc:
        # A read-only home must not stop the chat: log to stderr only, and say so once.
        setup_logging(level=level, file=None, stderr=True)
        log.warning("cannot write the log file %s (%s)", loaded.paths.log_file, exc)


def _pin_blas_threads() -> None:
    """One BLAS thread for numpy (the memory encoder), unless the user chose otherwise.

    Measured on a busy 2-core machine: OpenBLAS's second thread spin-waits and one
    embedding took 94-137 ms instead of 16-23 ms. It must be set before numpy loads.
    """
    for name in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # not OMP: llama.cpp uses it
        os.environ.setdefault(name, "1")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    _pin_blas_threads()
    parser = build_parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # argparse already printed usage and the problem
        return int(exc.code or 0) and EXIT_BAD_INPUT
    command = args.command or "chat"
    try:
        if command == "version":
            print(f"octopussy {__version__}")
            return EXIT_OK
        if command == "config" and args.config_command == "check":
            return _config_check(args)
        loaded = load_config(args.config)
        if command == "config":
            return _config_show(loaded)
        if command == "notify":
            from octopussy.agents.spool import write_spool_file

            write_spool_file(loaded.paths.spool, " ".join(args.text), label=args.label)
            return EXIT_OK
        if command == "mcp":
            return _mcp(args, loaded)
        _setup_logging(args, loaded, stderr=False)
        if command == "doctor":
            from octopussy.doctor import run_doctor

            return asyncio.run(run_doctor(loaded))
        if command == "ask":
            return asyncio.run(_ask(loaded, args))
        if command in ("tasks", "cancel"):
            from octopussy import taskcli

            run = taskcli.show_tasks if command == "tasks" else taskcli.cancel_task
            return asyncio.run(run(loaded, args))
        if command in ("schedules", "unschedule"):
            return asyncio.run(_schedules(loaded, args))
        if command == "agenda":
            return asyncio.run(_agenda(loaded, args.days))
        if command == "tools":
            from octopussy.toolcli import run_tools

            return asyncio.run(run_tools(loaded, args))
        if command == "serve":
            from octopussy.serve import run_serve

            return asyncio.run(run_serve(loaded, json_lines=args.json))
        from octopussy.repl import run_chat

        return asyncio.run(run_chat(loaded))
    except OctopussyError as exc:
        if args.debug:
            raise
        _error(str(exc))
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return EXIT_OK
    except Exception as exc:
        if args.debug:
            raise
        log.exception("internal error")
        _error(f"internal error: {type(exc).__name__}: {exc} (run with --debug for details)")
        return EXIT_INTERNAL


def _mcp(args: argparse.Namespace, loaded: LoadedConfig) -> int:
    from pathlib import Path

    from octopussy.mcp import builtin

    if args.mcp_command == "builtin":
        # stdout is the MCP wire in stdio mode: logs go to the file only.
        setup_logging(
            level="DEBUG" if args.debug else (args.log_level or loaded.config.logging.level),
            file=loaded.paths.log_file,
            stderr=args.verbose,
        )
        workspace = (
            Path(args.workspace).expanduser().resolve()
            if args.workspace
            else (loaded.paths.workspace)
        )
        if not workspace.is_dir():
            raise ConfigError(f"workspace {workspace} is not a directory", hint="--workspace DIR")
        settings = (loaded.config.sandbox, loaded.config.mcp)
        # Served even with the tool agent off: tools made earlier stay (`tools disable`).
        generated = loaded.paths.generated_tools
        if args.http:
            try:
                host, port = builtin.parse_host_port(args.http)
            except ValueError as exc:
                raise ConfigError(
                    str(exc), path="--http", hint="e.g. --http 127.0.0.1:8765"
                ) from exc
            if host not in ("127.0.0.1", "localhost", "::1"):
                log.warning("serving the built-in tools on %s without authentication", host)
                print(
                    f"warning: {host} is not loopback and this server has no authentication",
                    file=sys.stderr,
                )
            builtin.main_http(host, port, workspace, *settings, generated_tools=generated)
        else:
            builtin.main_stdio(workspace, *settings, generated_tools=generated)
        return EXIT_OK
    _setup_logging(args, loaded, stderr=False)
    return asyncio.run(_mcp_client(args, loaded))


async def _mcp_client(args: argparse.Namespace, loaded: LoadedConfig) -> int:
    from octopussy.mcp.registry import MCPRegistry
    from octopussy.mcp.report import format_result, format_status, parse_arguments, status_json
    from octopussy.mcp.servers import server_specs
    from octopussy.runtime import builtin_command

    arguments: dict[str, object] = {}
    if args.mcp_command == "call":
        try:
            arguments = parse_arguments(args.arguments, args.json_args)
        except ValueError as exc:
            raise ConfigError(
                str(exc), hint="e.g. octopussy mcp call builtin.read_file path=a.txt"
            ) from exc
    registry = MCPRegistry(
        server_specs(loaded, builtin_command=builtin_command(loaded)),
        call_timeout=loaded.config.mcp.call_timeout,
        connect_timeout=loaded.config.mcp.connect_timeout,
    )
    async with registry:
        if args.mcp_command == "list":
            print(status_json(registry) if args.json else format_status(registry))
            return EXIT_OK if all(s.state == "ready" for s in registry.status()) else 1
        result = await registry.call(args.tool, arguments)
        print(format_result(result))
        return EXIT_BAD_INPUT if result.is_error else EXIT_OK


async def _agenda(loaded: LoadedConfig, days: int | None) -> int:
    """``agenda [DAYS]``: read every configured calendar now and list what is coming."""
    from datetime import timedelta

    from octopussy.calendar.factory import build_watcher
    from octopussy.calendar.text import agenda_lines
    from octopussy.store.sqlite import SqliteStore

    settings = loaded.config.calendar_agent
    if settings is None:
        raise ConfigError(
            "no calendar configured", hint="add a calendar_agent: section (see the README)"
        )
    days = days or settings.agenda_days
    if not 1 <= days <= 366:
        raise ConfigError(f"cannot list {days} days", hint="give 1 to 366")
    loaded.paths.ensure()
    store = SqliteStore(loaded.paths.store)
    await store.open()
    watcher = build_watcher(settings, store, home=loaded.paths.home, env_tz=loaded.env.get("TZ"))
    try:
        now = watcher.clock()
        agenda = await watcher.agenda(now, now + timedelta(days=days))
    finally:
        await watcher.close()
        await store.close()
    lines = agenda_lines(agenda.occurrences, watcher.zone, now)
    for line in lines or [f"nothing in the next {days} day(s)"]:
        print(line)
    for warning in agenda.skipped:
        print(f"octopussy: warning: {warning}", file=sys.stderr)
    for problem in agenda.unreadable:
        _error(problem)
    return EXIT_BAD_INPUT if agenda.unreadable else EXIT_OK


async def _schedules(loaded: LoadedConfig, args: argparse.Namespace) -> int:
    """``schedules`` / ``unschedule ID`` on the store directly (a running chat/serve reads
    the same store, so an unscheduled task never fires there again)."""
    from dataclasses import asdict

    from octopussy.orchestration.scheduler import (
        active_schedules,
        format_schedule,
        stop_schedule,
    )
    from octopussy.store.sqlite import SqliteStore

    loaded.paths.ensure()
    store = SqliteStore(loaded.paths.store)
    await store.open()
    try:
        if args.command == "unschedule":
            if not await stop_schedule(store, args.schedule_id):
                raise ConfigError(
                    f"no active schedule {args.schedule_id!r}",
                    hint="`octopussy schedules` lists them",
                )
            print(f"schedule {args.schedule_id} stopped")
            return EXIT_OK
        found = await active_schedules(store)
        if args.json:
            print(json.dumps([asdict(s) for s in found], ensure_ascii=False, indent=2))
        elif found:
            print("\n".join(format_schedule(s) for s in found))
        else:
            print("no schedules", file=sys.stderr)
        return EXIT_OK
    finally:
        await store.close()


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


def _config_check(args: argparse.Namespace) -> int:
    file = args.file or args.config
    if file is None:
        loaded = load_config(None)
    else:
        from pathlib import Path

        path = Path(file)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read: {exc.strerror or exc}", source=str(path)) from exc
        parse_config(text, source=str(path))
        loaded = load_config(path)
    print(f"{loaded.source}: OK")
    for key in loaded.plain_secrets:
        print(f"warning: {loaded.source}: {key} is written in plain text (use ${{ENV_VAR}})")
    return EXIT_OK


def _mask(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {
            k: ("***" if k in ("api_key", "password", "imap_password") and v else _mask(v))
            for k, v in tree.items()
        }
    if isinstance(tree, list):
        return [_mask(v) for v in tree]
    return tree


def _config_show(loaded: LoadedConfig) -> int:
    import yaml

    data = _mask(loaded.config.model_dump(mode="json", exclude_none=True))
    print(f"# source: {loaded.source}")
    print(f"# data dir: {loaded.paths.home}")
    print(f"# workspace: {loaded.paths.workspace}")
    print(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), end="")
    return EXIT_OK


async def _ask(loaded: LoadedConfig, args: argparse.Namespace) -> int:
    from octopussy.display import assembly_progress
    from octopussy.runtime import Runtime
    from octopussy.taskcli import AskWaiter, print_outcomes

    text = " ".join(args.text)
    if text == "-":
        text = sys.stdin.read()
    text = text.strip()
    if not text:
        raise ConfigError("nothing to ask", hint='give the question: octopussy ask "..."')

    def to_stderr(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    waiter = AskWaiter(to_stderr)
    progress = assembly_progress(to_stderr)
    async with Runtime(
        loaded, presenter=waiter, background_agents=False, progress=progress
    ) as runtime:
        runtime.hand_over_tasks = args.no_wait
        started = time.perf_counter()
        await runtime.warm_up(tools=False)  # tools connect when a task needs them
        log.info("models ready in %.3fs", time.perf_counter() - started)
        coordinator = runtime.coordinator
        if args.no_stream:
            print(await coordinator.chat(text))
        else:
            async for delta in coordinator.chat_stream(text):
                sys.stdout.write(delta)
                sys.stdout.flush()
            sys.stdout.write("\n")
        sys.stdout.flush()
        task_ids = coordinator.last_turn.task_ids if coordinator.last_turn else []
        code = EXIT_OK
        if task_ids and args.no_wait:
            to_stderr("the task runs in a running `octopussy chat`/`serve` or the next one")
        elif task_ids:
            try:
                finished = await waiter.wait(runtime.store, task_ids)
            except asyncio.CancelledError:
                to_stderr(f"interrupted; unfinished tasks resume on the next start: {task_ids}")
                raise
            code = await print_outcomes(runtime.store, finished)
        usage = {agent: u.as_dict() for agent, u in runtime.meter.snapshot().items()}
        log.info("ask answered: %s", json.dumps(usage))
    return code
