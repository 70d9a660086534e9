-- An alert starts firing, at most once (gateway/alerts/evaluate.py): unless it fires
-- already, or fired last less than the cool-down ago, it is added to the firing hash and
-- its event is appended to the alert stream for delivery, in one step, so that of two
-- nodes evaluating at once (a change of leader) only one reports it.
--
-- KEYS[1] firing hash, KEYS[2] fired-at hash, KEYS[3] alert event stream
-- ARGV[1] the alert's key (<rule>:<subject>), ARGV[2] its firing-hash value (JSON),
-- ARGV[3] now (ms), ARGV[4] cool-down (ms), ARGV[5] the stream's approximate cap,
-- ARGV[6] the event's kind, ARGV[7] its key, ARGV[8] its data (JSON), ARGV[9] its time
-- Returns 1 (fired), 0 (fires already) or -1 (cooling down).
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  return 0
end
local now = tonumber(ARGV[3])
local last = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '')
if last and now - last < tonumber(ARGV[4]) then
  return -1
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*',
  'kind', ARGV[6], 'key', ARGV[7], 'data', ARGV[8], 'at', ARGV[9])
return 1
