"""Capping a session's event stream: the oldest events go to the SQL archive, then away.

The session actor runs this on a `trim` message (the leader's trim job sends it, see
`gateway/jobs/trim.py`), so one session's trims run one at a time, under its partition's
lease. One turn:

1. reads the oldest entries beyond the newest `session_stream_max_events`, a page at most;
2. archives them to SQL. `Store.archive_events` skips ids it already has, so a turn that
   is handled again (a lost lease, a failed commit) archives nothing twice;
3. commits, in one transaction with the mailbox ack: the session's `trimmedTo` set to the
   last entry removed, and XTRIM MINID just past that entry.

Readers rely on that order (`gateway/history.py`): every event up to `trimmedTo` is in the
archive, every event after it is still in the stream. `trimmedTo` is the last id removed,
not the first one kept, so that a client whose lastEventId is exactly that entry may still
resume: it has every event up to it, and the stream holds every event after it.
"""

from __future__ import annotations

from typing import Any

from actors import streams
from actors.actor import ActorEnv
from actors.turn import CommitResult, Turn
from orchestra import keys, metrics
from orchestra.codec import from_json

TRIMMED_TO = "trimmedTo"  # the session state field
#: entries archived per turn: a large backlog is many small turns, not one giant. Each
#: turn holds the event loop while it reads its page from the stream (the rows go to the
#: database as the stream holds them), so pages stay small enough not to stall the node.
PAGE = 500


async def trim_stream(env: ActorEnv, turn: Turn, session_id: str) -> int:
    """Archive and remove the oldest page beyond the cap; how many entries go."""
    stream = keys.session_events(session_id, env.settings.partitions)
    excess = int(await env.redis.xlen(stream)) - env.settings.session_stream_max_events
    if excess <= 0:
        return 0
    entries = await streams.xrange(env.redis, stream, count=min(excess, PAGE))
    if not entries:
        return 0
    await archive_and_cut(env, turn, session_id, entries)
    if excess > len(entries):
        turn.tell(turn.address, "trim")  # the rest in later turns, behind other mail
    trimmed = len(entries)

    async def counted(result: CommitResult) -> None:  # once the trim is written
        metrics.STREAM_TRIMS.inc()
        metrics.STREAM_TRIMMED_EVENTS.inc(trimmed)

    turn.after_commit(counted)
    return trimmed


async def archive_and_cut(
    env: ActorEnv, turn: Turn, session_id: str, entries: list[streams.Entry]
) -> None:
    """Steps 2 and 3 for `entries`, the stream's oldest, in order: archive them now, and
    have the turn's commit set `trimmedTo` and remove them (and nothing newer) from the
    stream. Also used to retire the stream of a session long ended (`retention.py`)."""
    await env.store.archive_events(
        session_id,
        [
            (entry_id, fields.get("event", ""), _payload(fields.get("data")))
            for entry_id, fields in entries
        ],
    )
    stream = keys.session_events(session_id, env.settings.partitions)
    last = entries[-1][0]
    keep_from = streams.next_id(last)
    turn.set(**{TRIMMED_TO: last})
    # Exact, not "~": readers take everything after `trimmedTo` from the stream and
    # everything up to it from the archive, so the two must meet exactly there.
    turn.write(lambda pipe: pipe.xtrim(stream, minid=keep_from, approximate=False))


def _payload(raw: str | None) -> dict[str, Any] | str:
    """The event's data as the stream holds it (the JSON text of an object, stored as it
    is); `eventId` is added by whoever reads it."""
    text = raw or "{}"
    if text.startswith("{"):
        return text
    data = from_json(text)
    return data if isinstance(data, dict) else {"value": data}
