"""The worker of the end-to-end tests: prints lines of its own and echoes its stdin."""

import sys

print("worker: started", flush=True)
print("worker: waiting for 2 lines", flush=True)
for number in (1, 2):
    line = sys.stdin.readline().rstrip("\n")
    print(f"echo {number}: {line}", flush=True)
print("worker: done", file=sys.stderr, flush=True)
print("worker: bye", flush=True)
