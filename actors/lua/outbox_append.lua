-- Append a command to an agent's outbox under the next commandId.
-- (A turn's commands are appended the same way by turn_commit.lua, in its commit.)
-- commandIds strictly increase per agent; the stream entry ID is 0-<commandId> so that the
-- commands after an agent's lastCommandId are one XRANGE away.
-- KEYS[1] agent hash, KEYS[2] agent outbox stream
-- ARGV[1] event name, ARGV[2] payload (JSON without commandId)
-- Returns the commandId.
local n = redis.call('HINCRBY', KEYS[1], 'commandSeq', 1)
redis.call('XADD', KEYS[2], '0-' .. n, 'event', ARGV[1], 'data', ARGV[2])
return n
