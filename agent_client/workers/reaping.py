"""How a worker's child process is reaped, and what it cost (`ResourceUsage`).

The child is reaped with `wait4`, which gives the CPU time and the peak resident memory of
the process and of every descendant it waited for (what `time -v` shows): from the event
loop through a pidfd where the kernel has them, else from a thread of its own.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
from dataclasses import dataclass
from typing import Any

__all__ = ["ResourceUsage", "reap_later"]


@dataclass(frozen=True)
class ResourceUsage:
    """What a finished process cost: CPU seconds and the peak resident memory."""

    cpu_user_s: float
    cpu_system_s: float
    max_rss_bytes: int

    def wire(self) -> dict[str, Any]:
        """As `task:result.resourceUsage` carries it."""
        return {
            "cpuTimeS": round(self.cpu_user_s + self.cpu_system_s, 3),
            "cpuUserS": round(self.cpu_user_s, 3),
            "cpuSystemS": round(self.cpu_system_s, 3),
            "maxRssBytes": self.max_rss_bytes,
        }


def reap_later(
    loop: asyncio.AbstractEventLoop,
    popen: subprocess.Popen[bytes],
    ended: asyncio.Future[tuple[int, ResourceUsage]],
) -> None:
    """Reap the child with wait4 when it ends: from the loop through a pidfd where the
    kernel has them, else from a thread of its own."""

    def reaped(status: int, rusage: Any) -> None:
        code = os.waitstatus_to_exitcode(status)
        popen.returncode = code  # Popen must never reap it again
        usage = ResourceUsage(
            cpu_user_s=float(rusage.ru_utime),
            cpu_system_s=float(rusage.ru_stime),
            max_rss_bytes=int(rusage.ru_maxrss) * 1024,  # Linux reports KiB
        )
        if not ended.done():
            ended.set_result((code, usage))

    try:
        pidfd = os.pidfd_open(popen.pid)
    except (AttributeError, OSError):
        pidfd = None
    if pidfd is not None:

        def readable() -> None:
            try:
                pid, status, rusage = os.wait4(popen.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status, rusage = popen.pid, 0, _zero_rusage()
            if pid == 0:
                return  # woken early: not ended yet
            loop.remove_reader(pidfd)
            os.close(pidfd)
            reaped(status, rusage)

        loop.add_reader(pidfd, readable)
        return

    def wait_in_thread() -> None:
        try:
            _, status, rusage = os.wait4(popen.pid, 0)
        except ChildProcessError:
            status, rusage = 0, _zero_rusage()
        loop.call_soon_threadsafe(reaped, status, rusage)

    threading.Thread(target=wait_in_thread, name=f"reap-{popen.pid}", daemon=True).start()


def _zero_rusage() -> Any:
    class Zero:
        ru_utime = 0.0
        ru_stime = 0.0
        ru_maxrss = 0

    return Zero()
