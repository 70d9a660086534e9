-- Store output items of a task in its session's event stream, each seq once: one item
-- (a 1.0 frame) or a batch of consecutive ones (1.1), in one call, one round trip.
-- The hot path of DESIGN.md §2, duplicates dropped by seq.
-- An agent numbers an attempt's output from 1; watchers see one numbering for the whole
-- task, continued across attempts: the stored seq is the attempt's `seqBase` plus the
-- agent's seq, and the agent is answered in its own numbering.
-- Reports name their attempt (1.1): output of an earlier attempt is stale and changes
-- nothing; it is answered with what that attempt had stored, in its own numbering.
-- A stored item may also carry what the task keeps of it: a turn's usage (added to the
-- task's `usage`) and the tool's session id (the task's `workerSessionId`).
-- The items carry seq, seq+1, ...: those already stored are skipped, the rest stored, one
-- stream entry each. Items starting past the first unstored seq would leave a hole:
-- nothing of them is stored, and persistedSeq, unchanged, makes the agent send again
-- from there. So a batch is stored whole, or from its first unstored seq on, or not at all.
-- A stored `result` item (the end of a turn: the worker now waits for the user's next
-- message) also sends an `input.requested` notification (actors/notifications.py) to the
-- notifications stream, once per stored seq: by the outgoing stream of the session's
-- partition, whose holder moves it on (actors/forwarder.py), so that every key here is in
-- the session's partition's slot.
-- KEYS[1] task hash, KEYS[2] session event stream, KEYS[3] the partition's outgoing stream
-- ARGV[1] the agent's seq of the first item, ARGV[2] the event name, ARGV[3] the agent id
-- (JSON-encoded, as task hash fields are), ARGV[4] the attempt ('' when the agent did not
-- say: the current one), ARGV[5] the fields every item's event data shares (JSON object
-- members without the braces: `"sessionId":…,"taskId":…,"agentId":…`), ARGV[6] the
-- notification's time (ISO-8601), ARGV[7] the notifications stream's cap and ARGV[8] its
-- name, then three per
-- item: its own fields (a JSON object, at least one member), usage to add (a JSON object,
-- '{}' for a result without usage, '' for any other item), the workerSessionId
-- (JSON-encoded, or '').
-- Returns {persistedSeq, items stored}, or {-1} for an unknown task, {-2} for a task that
-- is not this agent's, {-3, persistedSeq} for a stale attempt.
local fields = redis.call('HMGET', KEYS[1], 'agentId', 'attempts', 'seqBase', 'lastSeq')
local agent = fields[1]
if not agent then
  return {-1}
end
local current = tonumber(fields[2] or '0')
local attempt = tonumber(ARGV[4])
if attempt and attempt ~= current then
  local holders = cjson.decode(redis.call('HGET', KEYS[1], 'attemptAgents') or '[]')
  if holders[attempt] ~= cjson.decode(ARGV[3]) then
    return {-2}
  end
  local bases = cjson.decode(redis.call('HGET', KEYS[1], 'seqBases') or '[]')
  local stored = 0
  if attempt < current and bases[attempt] and bases[attempt + 1] then
    stored = bases[attempt + 1] - bases[attempt]
  end
  return {-3, stored}
end
if agent ~= ARGV[3] then
  return {-2}
end
local base = tonumber(fields[3] or '0')
local last = tonumber(fields[4] or '0')
local first = base + tonumber(ARGV[1])
local count = (#ARGV - 8) / 3
if first > last + 1 or first + count - 1 <= last then
  -- A gap (the agent resends everything above persistedSeq), or nothing new.
  return {last - base, 0}
end
local event, head = ARGV[2], ARGV[5] .. ','
local usage = nil
local session = nil
local turn_ended = nil
for i = last + 1 - first, count - 1 do
  local at = 9 + 3 * i
  local data = '{"seq":' .. (first + i) .. ',' .. head .. string.sub(ARGV[at], 2)
  redis.call('XADD', KEYS[2], '*', 'event', event, 'data', data)
  if ARGV[at + 1] ~= '' then
    turn_ended = first + i
    local add = cjson.decode(ARGV[at + 1])
    if next(add) then
      usage = usage or cjson.decode(redis.call('HGET', KEYS[1], 'usage') or '{}')
      for _, name in ipairs({'inputTokens', 'outputTokens', 'cacheReadTokens',
                             'cacheWriteTokens', 'costUsd'}) do
        if type(add[name]) == 'number' then
          usage[name] = (usage[name] or 0) + add[name]
        end
      end
    end
  end
  if ARGV[at + 2] ~= '' then
    session = ARGV[at + 2]
  end
end
local stored = first + count - 1
redis.call('HSET', KEYS[1], 'lastSeq', stored)
if usage then
  redis.call('HSET', KEYS[1], 'usage', cjson.encode(usage))
end
if session then
  redis.call('HSET', KEYS[1], 'workerSessionId', session)
end
local task = turn_ended and redis.call('HMGET', KEYS[1], 'id', 'ownerId', 'tool')
if task and task[1] and task[2] and task[3] then
  local shared = cjson.decode('{' .. ARGV[5] .. '}')
  local data = cjson.encode({sessionId = shared.sessionId, taskId = shared.taskId,
                             agentId = shared.agentId, tool = cjson.decode(task[3]),
                             seq = turn_ended})
  local write = {'C', ARGV[8], 'XADD', 'MAXLEN', '~', ARGV[7], '*', 'kind', 'input.requested',
                 'userId', cjson.decode(task[2]), 'key',
                 cjson.decode(task[1]) .. ':' .. turn_ended .. ':input.requested',
                 'data', data, 'at', ARGV[6]}
  redis.call('XADD', KEYS[3], '*', 'to', ARGV[8], 'w', cjson.encode(write))
end
return {stored - base, stored - last}
