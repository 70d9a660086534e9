-- Store one output item of a task in its session's event stream, once.
-- The hot path of DESIGN.md §2: one round trip per line, duplicates dropped by seq.
-- An agent numbers an attempt's output from 1; watchers see one numbering for the whole
-- task, continued across attempts: the stored seq is the attempt's `seqBase` plus the
-- agent's seq, and the agent is answered in its own numbering.
-- KEYS[1] task hash, KEYS[2] session event stream
-- ARGV[1] the agent's seq, ARGV[2] event name, ARGV[3] event data (a JSON object without
-- `seq`), ARGV[4] the agent id (JSON-encoded, as task hash fields are)
-- Returns {persistedSeq, eventId or false}, or {-1} for an unknown task, {-2} for a task
-- that belongs to another agent.
local agent = redis.call('HGET', KEYS[1], 'agentId')
if not agent then
  return {-1}
end
if agent ~= ARGV[4] then
  return {-2}
end
local base = tonumber(redis.call('HGET', KEYS[1], 'seqBase') or '0')
local last = tonumber(redis.call('HGET', KEYS[1], 'lastSeq') or '0')
local seq = base + tonumber(ARGV[1])
if seq ~= last + 1 then
  -- Already stored, or a gap: the agent resends everything above persistedSeq.
  return {last - base, false}
end
local data = '{"seq":' .. seq .. ',' .. string.sub(ARGV[3], 2)
local id = redis.call('XADD', KEYS[2], '*', 'event', ARGV[2], 'data', data)
redis.call('HSET', KEYS[1], 'lastSeq', seq)
return {seq - base, id}
