-- Take a free partition lease with a new fencing token.
-- KEYS[1] lease key, KEYS[2] fence counter, KEYS[3] the mark a clean release leaves;
-- ARGV[1] node id; ARGV[2] ttl ms
-- Returns {holder value "<node>:<fence>", 1 when this takes over a lease that expired
-- (an earlier holder neither renewed nor released it) else 0}, or false when another
-- node holds it.
if redis.call('EXISTS', KEYS[1]) == 1 then
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
return {value, expired}
