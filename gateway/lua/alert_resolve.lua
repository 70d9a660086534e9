-- A firing alert is resolved, at most once (gateway/alerts/evaluate.py): only while the
-- firing hash still holds the very value the evaluator read (not a newer firing of the
-- same alert), it is removed and its event appended to the alert stream, in one step.
--
-- KEYS[1] firing hash, KEYS[2] alert event stream
-- ARGV[1] the alert's key, ARGV[2] the firing-hash value read, ARGV[3] the stream's
-- approximate cap, ARGV[4] the event's kind, ARGV[5] its key, ARGV[6] its data (JSON),
-- ARGV[7] its time
-- Returns 1 (resolved) or 0 (resolved already, or firing anew).
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then
  return 0
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*',
  'kind', ARGV[4], 'key', ARGV[5], 'data', ARGV[6], 'at', ARGV[7])
return 1
