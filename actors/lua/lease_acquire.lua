-- Take a free partition lease with a new fencing token.
-- KEYS[1] lease key, KEYS[2] fence counter; ARGV[1] node id; ARGV[2] ttl ms
-- Returns the holder value "<node>:<fence>", or false when another node holds it.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return false
end
local fence = redis.call('INCR', KEYS[2])
local value = ARGV[1] .. ':' .. fence
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
return value
