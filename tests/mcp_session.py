"""An MCP client session held open by a task of its own, for tests.

anyio's cancel scopes require a ``Client`` to be entered and exited in the same task, but a
pytest fixture's setup and teardown run in different tasks; this helper owns the session
in one task and hands the client out.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from mcp import Client


@asynccontextmanager
async def held_client(target: Any, *, timeout: float = 30, **options: Any) -> AsyncIterator[Client]:
    """``Client(target, **options)`` entered in its own task; ``timeout`` bounds connecting."""
    ready: asyncio.Future[Client] = asyncio.get_running_loop().create_future()
    done = asyncio.Event()

    async def hold() -> None:
        try:
            async with Client(target, **options) as client:
                ready.set_result(client)
                await done.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise

    task = asyncio.create_task(hold())
    try:
        yield await asyncio.wait_for(asyncio.shield(ready), timeout)
    finally:
        done.set()
        await asyncio.wait_for(task, 30)
