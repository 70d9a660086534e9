"""Small asyncio helpers used across the parts."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel `task` and wait until it has finished.

    Unlike `task.cancel(); with suppress(CancelledError): await task`, this never swallows
    a cancellation of the *calling* task: asyncio.wait does not raise the waited task's
    CancelledError, so one arriving here is our own and propagates. A task that swallowed
    the cancellation somewhere deep (a library catching it mid-request) is cancelled again.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=1.0)
