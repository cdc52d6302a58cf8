"""``octopussy serve``: every agent headless, as under systemd.

Each notification or result the coordinator receives is printed as one line on stdout
(``--json``: one JSON object per line with type, time, sender, task id and payload) and is
stored by the coordinator. SIGTERM and SIGINT stop it cleanly: every task cancelled and
awaited, models and store closed, exit code 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys

from octopussy.bus.messages import Message
from octopussy.config import LoadedConfig
from octopussy.display import assembly_progress, format_line, message_json
from octopussy.runtime import Runtime

log = logging.getLogger("octopussy.serve")


class LinePresenter:
    """One line per message on stdout, flushed at once (journald and pipes see it live)."""

    def __init__(self, *, json_lines: bool) -> None:
        self.json_lines = json_lines

    async def show(self, message: Message) -> None:
        line = message_json(message) if self.json_lines else format_line(message)
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


async def run_serve(loaded: LoadedConfig, *, json_lines: bool) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    try:
        progress = assembly_progress(lambda line: print(line, file=sys.stderr, flush=True))
        runtime = Runtime(loaded, presenter=LinePresenter(json_lines=json_lines), progress=progress)
        async with runtime:
            await runtime.warm_up()
            agents = ", ".join(runtime.agents)
            print(
                f"octopussy serve: running ({agents}); stop with SIGTERM or Ctrl-C",
                file=sys.stderr,
                flush=True,
            )
            log.info("serving: %s", agents)
            await stop.wait()
            log.info("stop requested")
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signum)
    return 0
