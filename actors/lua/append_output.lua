-- Store one output item of a task in its session's event stream, once.
-- The hot path of DESIGN.md §2: one round trip per line, duplicates dropped by seq.
-- An agent numbers an attempt's output from 1; watchers see one numbering for the whole
-- task, continued across attempts: the stored seq is the attempt's `seqBase` plus the
-- agent's seq, and the agent is answered in its own numbering.
-- Reports name their attempt (1.1): output of an earlier attempt is stale and changes
-- nothing; it is answered with what that attempt had stored, in its own numbering.
-- A stored item may also carry what the task keeps of it: a turn's usage (added to the
-- task's `usage`) and the tool's session id (the task's `workerSessionId`).
-- KEYS[1] task hash, KEYS[2] session event stream
-- ARGV[1] the agent's seq, ARGV[2] event name, ARGV[3] event data (a JSON object without
-- `seq`), ARGV[4] the agent id (JSON-encoded, as task hash fields are), ARGV[5] the
-- attempt ('' when the agent did not say: the current one), ARGV[6] usage to add (a JSON
-- object, or ''), ARGV[7] the workerSessionId (JSON-encoded, or '')
-- Returns {persistedSeq, eventId or false}, or {-1} for an unknown task, {-2} for a task
-- that is not this agent's, {-3, persistedSeq} for a stale attempt.
local fields = redis.call('HMGET', KEYS[1], 'agentId', 'attempts', 'seqBase', 'lastSeq')
local agent = fields[1]
if not agent then
  return {-1}
end
local current = tonumber(fields[2] or '0')
local attempt = tonumber(ARGV[5])
if attempt and attempt ~= current then
  local holders = cjson.decode(redis.call('HGET', KEYS[1], 'attemptAgents') or '[]')
  if holders[attempt] ~= cjson.decode(ARGV[4]) then
    return {-2}
  end
  local bases = cjson.decode(redis.call('HGET', KEYS[1], 'seqBases') or '[]')
  local stored = 0
  if attempt < current and bases[attempt] and bases[attempt + 1] then
    stored = bases[attempt + 1] - bases[attempt]
  end
  return {-3, stored}
end
if agent ~= ARGV[4] then
  return {-2}
end
local base = tonumber(fields[3] or '0')
local last = tonumber(fields[4] or '0')
local seq = base + tonumber(ARGV[1])
if seq ~= last + 1 then
  -- Already stored, or a gap: the agent resends everything above persistedSeq.
  return {last - base, false}
end
local data = '{"seq":' .. seq .. ',' .. string.sub(ARGV[3], 2)
local id = redis.call('XADD', KEYS[2], '*', 'event', ARGV[2], 'data', data)
redis.call('HSET', KEYS[1], 'lastSeq', seq)
if ARGV[6] ~= '' then
  local add = cjson.decode(ARGV[6])
  local usage = cjson.decode(redis.call('HGET', KEYS[1], 'usage') or '{}')
  for _, name in ipairs({'inputTokens', 'outputTokens', 'cacheReadTokens', 'cacheWriteTokens',
                         'costUsd'}) do
    if type(add[name]) == 'number' then
      usage[name] = (usage[name] or 0) + add[name]
    end
  end
  redis.call('HSET', KEYS[1], 'usage', cjson.encode(usage))
end
if ARGV[7] ~= '' then
  redis.call('HSET', KEYS[1], 'workerSessionId', ARGV[7])
end
return {seq - base, id}
