"""Run a server module with tracemalloc on, taking snapshots when asked: where a
server's memory goes, without changing the server.

    python -m benchmarks._traced FOLDER MODULE [ARGS...]

runs `python -m MODULE ARGS...` (`orchestra gateway ...`, `benchmarks._relay serve ...`),
and a thread that watches FOLDER. A file `take-start` there starts tracemalloc, keeping
`TRACED_FRAMES` frames (an environment variable, default 16) of each allocation; for
each other file `take-NAME` it writes the snapshot `NAME.snapshot` (tracemalloc's own
format, `tracemalloc.Snapshot.load`), starting tracemalloc first if need be. Each request
done, it writes `NAME.done`. Tracing starts only when asked, once the server is up:
traced from its first line, a gateway starts so slowly that it loses the leases of its
actor partitions. Tracing makes the process slower and larger: use it to see what costs
what, not for the figures themselves.
"""

from __future__ import annotations

import os
import runpy
import sys
import threading
import time
import tracemalloc
from pathlib import Path


def watch(folder: Path) -> None:
    frames = int(os.environ.get("TRACED_FRAMES", "16"))
    while True:
        for request in sorted(folder.glob("take-*")):
            name = request.name.removeprefix("take-")
            request.unlink()
            if not tracemalloc.is_tracing():
                tracemalloc.start(frames)
            if name != "start":
                tracemalloc.take_snapshot().dump(str(folder / f"{name}.snapshot"))
            (folder / f"{name}.done").write_text("")
        time.sleep(0.2)


def main() -> None:
    folder, module, *rest = sys.argv[1:]
    Path(folder).mkdir(parents=True, exist_ok=True)
    threading.Thread(target=watch, args=(Path(folder),), daemon=True).start()
    sys.argv = [module, *rest]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
