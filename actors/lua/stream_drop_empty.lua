-- Remove a stream only if it holds no entry: the event stream of a session whose events
-- were all archived (actors/retention.py). An entry appended since the archiving turn
-- read the stream keeps it (the next retirement archives that entry too).
-- KEYS[1] the stream. Returns 1 when it was removed, else 0.
if redis.call('EXISTS', KEYS[1]) == 1 and redis.call('XLEN', KEYS[1]) == 0 then
  return redis.call('DEL', KEYS[1])
end
return 0
