"""The permission requests a worker's tool is waiting on, each answered exactly once.

An adapter hands each request its tool makes to `PendingRequests.ask`, which reports it to
the gateway (`worker:permission`) and keeps it until one of these ends it:

- `decide`: the user's answer, passed to the adapter's `answer` function;
- `withdraw`: the tool gave up on it (or its turn ended), reported as
  `worker:permission:cancelled`, after which an answer is dropped;
- the gateway refusing to show it: the tool is answered deny at once;
- no answer reaching the agent long after the gateway's own deadline (the agent was cut
  off meanwhile): the tool is answered deny, and the request reported withdrawn.

"Allow for the session" is remembered here: later requests for that tool are answered
allow at once, without asking anyone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent_client.workers.base import PermissionDecision, WorkerHost
from agent_client.workers.items import cut

__all__ = ["Asked", "PendingRequests"]

log = logging.getLogger(__name__)

# Beyond the gateway's deadline, before the agent denies a request by itself.
UNANSWERED_GRACE_S = 120.0
NO_ANSWER = "no answer reached the agent in time"


@dataclass(frozen=True)
class Asked:
    """A request of the tool: which tool it wants to use, with what input."""

    tool: str
    input: Any


Answer = Callable[[str, Asked, PermissionDecision], None]
"""Writes one answer to the tool: (request id, the request, the decision)."""


class PendingRequests:
    def __init__(
        self,
        host: WorkerHost,
        task_id: str,
        *,
        limit: int,
        timeout_s: float,
        answer: Answer,
        grace_s: float = UNANSWERED_GRACE_S,
    ) -> None:
        """`timeout_s` is the gateway's deadline; the agent answers deny by itself
        `grace_s` after it."""
        self._host = host
        self._task_id = task_id
        self._limit = limit
        self._timeout_s = timeout_s + grace_s
        self._answer = answer
        self._asked: dict[str, Asked] = {}
        self._allowed_tools: set[str] = set()  # allowed "for the session" by a user

    def ask(
        self, request_id: str, asked: Asked, title: str | None = None, suggestions: Any = None
    ) -> None:
        """A new request of the tool: answered at once if its tool is allowed for the
        session, else reported and kept until it is answered or withdrawn."""
        if asked.tool in self._allowed_tools:
            self._answer(request_id, asked, PermissionDecision(request_id, "allow"))
            return
        self._asked[request_id] = asked
        asyncio.get_running_loop().call_later(self._timeout_s, self._unanswered, request_id)
        shown, truncated = cut(asked.input, self._limit)
        report: dict[str, Any] = {"permissionId": request_id, "tool": asked.tool, "input": shown}
        if title:
            report["title"] = title[:4000]
        if suggestions:
            report["suggestions"] = suggestions
        if truncated:
            report["inputTruncated"] = True

        def refused(code: str, message: str) -> None:
            if self._asked.pop(request_id, None) is not None:
                why = f"the request could not be shown ({code})"
                self._answer(request_id, asked, PermissionDecision(request_id, "deny", message=why))

        self._host.control("worker:permission", report, on_refused=refused)

    def decide(self, decision: PermissionDecision) -> None:
        """The user's answer, passed on once; one to a request no longer open is dropped."""
        asked = self._asked.pop(decision.permission_id, None)
        if asked is None:
            log.info(
                "task %s: an answer to permission %s, which the tool no longer waits for, "
                "was dropped",
                self._task_id,
                decision.permission_id,
            )
            return
        if decision.decision == "allow" and decision.scope == "session":
            self._allowed_tools.add(asked.tool)
        self._answer(decision.permission_id, asked, decision)

    def withdraw(self, request_id: str, reason: str) -> None:
        """The tool gave up on a request: no one shows it any more, no answer goes out."""
        if self._asked.pop(request_id, None) is not None:
            self._host.control(
                "worker:permission:cancelled", {"permissionId": request_id, "reason": reason}
            )

    def withdraw_all(self, reason: str) -> None:
        for request_id in list(self._asked):
            self.withdraw(request_id, reason)

    def _unanswered(self, request_id: str) -> None:
        asked = self._asked.get(request_id)
        if asked is not None:
            self._answer(
                request_id, asked, PermissionDecision(request_id, "deny", message=NO_ANSWER)
            )
            self.withdraw(request_id, NO_ANSWER)
