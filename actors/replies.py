"""Where the answers to a node's `ask`s arrive: one list per node, read by one blocking pop.

An `ask` names this node's inbox in its message (`reply_to`); the turn that handles the
message pushes the answer, tagged with the message id, onto that list in the same script
call that commits the turn (`actors/turn_commit.py`), and refreshes the list's expiry.
One reader task waits on the list with BLPOP for every ask in flight at once, so an ask
costs the one round trip that sends it, and nothing polls: the reader blocks in Redis
until an answer comes, and runs only while some ask waits.

As before, an answer is written by whichever node commits the turn: if the node handling
the message dies first, the partition's next holder handles it again and answers the
same inbox. An answer that comes after its ask gave up is dropped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from actors.turn import encode_field
from actors.values import text
from orchestra import keys
from orchestra.aio import cancel_and_wait

log = logging.getLogger(__name__)

REPLY_TTL_MS = 60_000  # an inbox whose node is gone expires this long after its last answer
_WAIT_S = 1  # the reader's longest block: it stops this long after the last ask is done
_BATCH = 100


def encode_reply(message_id: str, reply: dict[str, Any]) -> str:
    """The list entry for the answer to message `message_id`."""
    return encode_field({"id": message_id, **reply})


class ReplyInbox:
    """This node's inbox and the asks waiting on it."""

    def __init__(self, redis: Redis, node_id: str) -> None:
        self.redis = redis
        # Unique per process: a node started again under the same id has its own inbox.
        self.name = f"{node_id}:{secrets.token_hex(6)}"
        self.key = keys.replies(self.name)
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None

    def expect(self, message_id: str) -> asyncio.Future[dict[str, Any]]:
        """A future for the answer to `message_id`; call `forget` when done with it."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[message_id] = future
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read(), name="ask-replies")
        return future

    def forget(self, message_id: str) -> None:
        self._waiting.pop(message_id, None)

    async def close(self) -> None:
        if self._reader is not None:
            await cancel_and_wait(self._reader)
            self._reader = None

    async def _read(self) -> None:
        delay_s = 0.05
        while self._waiting:
            try:
                # BLPOP, then what else came, in one round trip (BLMPOP would do, but
                # the embedded Redis is 6.2).
                async with self.redis.pipeline(transaction=False) as pipe:
                    pipe.blpop([self.key], timeout=_WAIT_S)
                    pipe.lpop(self.key, _BATCH)
                    first, rest = await pipe.execute()
                delay_s = 0.05
            except RedisError as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
                log.warning("reading ask replies failed, retrying: %s", exc)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 1.0)
                continue
            except Exception:  # a bug must not leave every ask of this node unanswered
                log.exception("reading ask replies failed, retrying")
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 1.0)
                continue
            for raw in ([first[1]] if first else []) + list(rest or []):
                self._deliver(text(raw))

    def _deliver(self, raw: str) -> None:
        try:
            reply = json.loads(raw)
            future = self._waiting.pop(str(reply.pop("id")), None)
        except (ValueError, KeyError, AttributeError):
            log.warning("dropping a malformed ask reply: %.200s", raw)
            return
        if future is not None and not future.done():
            future.set_result(reply)
