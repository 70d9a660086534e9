"""The Socket.IO packet our clients (`orchestra.client`, the agent daemon) read and write.

python-socketio's own parses and writes JSON with the standard library, which for a
stream of output events costs the client more than everything else it does per event.
This one uses orjson: what the gateway sends is strict JSON already, so it is parsed as
it comes, and only text orjson refuses is handed to `orchestra.strict_json`, which says
what is wrong with it. It is passed as the client's `serializer`, so no other client of
the process changes.
"""

from __future__ import annotations

from typing import Any

import orjson
from socketio import packet

from orchestra import strict_json


def _loads(text: str | bytes) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return strict_json.loads(text)


class _JSON:
    loads = staticmethod(_loads)
    dumps = staticmethod(strict_json.dumps)


class FastPacket(packet.Packet):
    json = _JSON
