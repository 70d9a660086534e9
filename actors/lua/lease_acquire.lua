-- Take a free partition lease with a new fencing token.
-- KEYS[1] lease key, KEYS[2] fence counter, KEYS[3] the mark a clean release leaves,
-- KEYS[4] what the last acquire took (a hash: its call's token, the holder value, whether
-- it was a takeover; it lives as long as the lease it took)
-- ARGV[1] node id; ARGV[2] ttl ms; ARGV[3] a token unique to this call
-- Returns {holder value "<node>:<fence>", 1 when this takes over a lease that expired
-- (an earlier holder neither renewed nor released it) else 0}, or false when another
-- node holds it.
-- The same call run again (a client that lost the answer sends it again: redis-py retries
-- on a connection error) gets the lease its first run took, as long as that still holds,
-- instead of finding it held and waiting a lease time for a lease it has.
if redis.call('EXISTS', KEYS[1]) == 1 then
  local taken = redis.call('HMGET', KEYS[4], 'token', 'value', 'expired')
  if taken[1] == ARGV[3] and redis.call('GET', KEYS[1]) == taken[2] then
    return {taken[2], tonumber(taken[3])}
  end
  return false
end
local fence = redis.call('INCR', KEYS[2])
local released = redis.call('DEL', KEYS[3])
local value = ARGV[1] .. ':' .. fence
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
local expired = 0
if fence > 1 and released == 0 then
  expired = 1
end
redis.call('HSET', KEYS[4], 'token', ARGV[3], 'value', value, 'expired', expired)
redis.call('PEXPIRE', KEYS[4], ARGV[2])
return {value, expired}
