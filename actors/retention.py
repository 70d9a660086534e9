"""Retiring the event stream of a session ended long ago: all of it to the archive, then away.

The leader's cleanup job (`gateway/jobs/retention.py`) tells `retire` to each session
ended longer than `session_stream_retention_s` ago whose stream is still in Redis. The
session actor then, one page a turn, does what trimming does (`actors/trim.py`) with no
cap: archive the oldest entries to SQL, then, in the turn's commit, set `trimmedTo` to the
last of them and remove them and nothing newer. When a turn finds nothing left, the
stream is deleted by a script that deletes it only while it is empty. So an event
appended meanwhile (a late report of an agent) is never lost: it stays in the stream, and
the next retirement archives it. History reads go on working throughout, and afterwards
come from the archive (`gateway/history.py`: everything up to `trimmedTo` is there).

Run twice, a retirement archives nothing twice (the archive skips ids it has) and
removes nothing more.
"""

from __future__ import annotations

import logging
from typing import Any

from actors import streams
from actors.actor import ActorEnv
from actors.trim import PAGE, archive_and_cut
from actors.turn import Turn
from orchestra import keys

log = logging.getLogger(__name__)


async def retire_stream(env: ActorEnv, turn: Turn, session_id: str) -> int:
    """Archive and remove the stream's oldest page (a session that has ended); how many
    entries go. When none is left, the empty stream is deleted once the turn commits."""
    if turn.state.get("status") != "ended":
        return 0  # not ended (or gone): not ours to retire
    stream = keys.session_events(session_id, env.settings.partitions)
    entries = await streams.xrange(env.redis, stream, count=PAGE)
    if entries:
        await archive_and_cut(env, turn, session_id, entries)
        if len(entries) == PAGE:
            turn.tell(turn.address, "retire")  # the rest in later turns, behind other mail
            return len(entries)

    async def drop(_: Any) -> None:
        if await env.scripts.stream_drop_empty(keys=[stream]):
            log.info(
                "session %s ended long ago: its events are archived, its stream removed",
                session_id,
            )

    turn.after_commit(drop)
    return len(entries)
