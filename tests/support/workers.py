"""Worker commands for tests: small programs whose output a test can predict."""

from __future__ import annotations

import sys


def printer(lines: int, interval_s: float = 0.1) -> list[str]:
    """A command printing `line 1` .. `line N`, one every `interval_s`."""
    program = (
        "import time\n"
        f"for n in range(1, {lines} + 1):\n"
        "    print(f'line {n}', flush=True)\n"
        f"    time.sleep({interval_s})\n"
    )
    return [sys.executable, "-c", program]
