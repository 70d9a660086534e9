"""Giving a task to an agent: a new attempt, and the `task:assign` command that starts it.

Each assignment is a new attempt (PROTOCOL.md §5, 1.1): `attempts` grows by one, the
command carries it, and from then on a report about any other attempt changes nothing.
The new attempt's output is numbered on from what the earlier ones stored (no output is
stored while the task waits without an agent, so this is exact); `seqBases` keeps where
each attempt began, so that a late report of an earlier one can be answered in its own
numbering.

An AI config's API key travels sealed for the one agent that runs the task (§8): it is
decrypted from SQL and sealed under the agent's secret here, in the turn, so Redis (the
agent's outbox) and the logs only ever hold ciphertext.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from actors.actor import ActorEnv
from actors.addresses import agent_address
from actors.task_lifecycle import move
from actors.turn import AfterCommit, CommitResult, Turn
from orchestra import metrics
from orchestra.codec import parse_timestamp
from orchestra.crypto import decrypt_field, seal_for_agent

__all__ = ["SecretsUnavailable", "assign"]

log = logging.getLogger(__name__)


class SecretsUnavailable(Exception):
    """The task's AI config or its agent's secret is gone: the task cannot start."""


async def assign(env: ActorEnv, turn: Turn, agent_id: str) -> None:
    """Give the task to `agent_id` as a new attempt; an error ends the task instead when
    its AI config's key cannot be sealed for that agent."""
    task = turn.state
    attempt = int(task.get("attempts", 0)) + 1
    base = int(task.get("lastSeq") or 0)
    turn.set(
        agentId=agent_id,
        attempts=attempt,
        seqBase=base,
        seqBases=[*(task.get("seqBases") or []), base],
        attemptAgents=[*(task.get("attemptAgents") or []), agent_id],
    )
    cap = env.settings.webhook_stream_max_len
    move(turn, "assigned", webhook_cap=cap)
    parameters = dict(task["parameters"])
    parameters.update(
        sessionId=task["sessionId"],
        userId=task["ownerId"],
        permissionTimeoutS=env.settings.permission_timeout_s,
    )
    try:
        sealed = await _sealed_secrets(env, task, agent_id)
    except SecretsUnavailable as exc:
        message = f"the task cannot start: {exc}"
        move(turn, "error", message=message, webhook_cap=cap, error=message)
        return
    if sealed is not None:
        parameters["secrets"] = {"sealed": sealed}
    turn.command(
        agent_id,
        "task:assign",
        {
            "taskId": task["id"],
            "agentId": agent_id,
            "attempt": attempt,
            "task": {
                "taskId": task["id"],
                "type": task["type"],
                "tool": task["tool"],
                "parameters": parameters,
                "priority": task["priority"],
            },
        },
    )
    turn.tell(agent_address(agent_id), "task:assigned", {"taskId": task["id"]})
    turn.after_commit(_log_assigned(task["id"], agent_id, attempt))
    if attempt == 1:
        _time_the_wait(turn, task.get("createdAt"))


def _time_the_wait(turn: Turn, created_at: Any) -> None:
    """The dispatch wait, from the task's creation to its first assignment, once the
    assignment is written."""
    try:
        created_s = parse_timestamp(created_at).timestamp()
    except (TypeError, ValueError, AttributeError):
        return

    async def observe(result: CommitResult) -> None:
        metrics.QUEUE_WAIT.observe(max(0.0, time.time() - created_s))

    turn.after_commit(observe)


def _log_assigned(task_id: str, agent_id: str, attempt: int) -> AfterCommit:
    """One line once the assignment is written (under the turn's trace id)."""

    async def logged(result: CommitResult) -> None:
        log.info("task %s: assigned to agent %s, attempt %d", task_id, agent_id, attempt)

    return logged


async def _sealed_secrets(env: ActorEnv, task: dict[str, Any], agent_id: str) -> str | None:
    config_id = task["parameters"].get("aiConfigId")
    if not config_id:
        return None
    config = await env.store.get_ai_config(config_id)
    if config is None:
        raise SecretsUnavailable("its AI config was deleted")
    if not config.api_key_encrypted:
        return None
    agent_secret = await env.store.agent_secret(agent_id)
    if agent_secret is None:
        raise SecretsUnavailable("its agent was revoked")
    try:
        api_key = decrypt_field(env.settings.secrets_key, config.id, config.api_key_encrypted)
    except ValueError as exc:
        log.error("the API key of AI config %s cannot be decrypted: %s", config.id, exc)
        raise SecretsUnavailable("its AI config's key cannot be decrypted") from None
    return seal_for_agent(agent_secret, task["id"], {"apiKey": api_key})
