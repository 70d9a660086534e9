"""The probe actor: proves the actor system handles messages, once each and in order.

`probe:<id>` counts the `ping`s it gets and remembers, per sender, the last sequence number
seen, counting any that arrive out of order. The health check asks one for a round trip
through the mailboxes; the chaos tests hammer many of them while nodes are killed and
compare the counts with what was sent.
"""

from __future__ import annotations

from typing import Any

from actors.actor import Actor
from actors.turn import Turn


class ProbeActor(Actor):
    kind = "probe"

    async def on_ping(self, turn: Turn) -> dict[str, Any]:
        body = turn.message.body
        sender = str(body.get("sender", ""))
        n = int(body.get("n", 0))
        last = dict(turn.state.get("last") or {})
        changes: dict[str, Any] = {"count": int(turn.state.get("count", 0)) + 1}
        if sender:
            if n != int(last.get(sender, 0)) + 1:
                changes["outOfOrder"] = int(turn.state.get("outOfOrder", 0)) + 1
            last[sender] = n
            changes["last"] = last
        turn.set(**changes)
        return {"count": changes["count"]}
