-- Release a lease only if this holder still has it.
-- KEYS[1] lease key, KEYS[2] (optional) a mark for the next holder that the lease was
-- released, not left to expire; ARGV[1] holder value
if redis.call('GET', KEYS[1]) == ARGV[1] then
  if KEYS[2] then
    redis.call('SET', KEYS[2], '1')
  end
  return redis.call('DEL', KEYS[1])
end
return 0
