-- Claim a slot for one socket in the slot set of its user or agent, unless that set is
-- full (gateway/socket_caps.py). Members that expired (their node stopped refreshing
-- them) are forgotten first; only when the set is full are the members of nodes that are
-- not alive looked for and forgotten too, so that a node that died without cleaning up
-- holds no slot for long, while a claim under the cap stays O(log n).
-- KEYS[1] the slot set (members `<node>:<sid>`, scored by their expiry in ms)
-- ARGV[1] the member, ARGV[2] now (ms), ARGV[3] the member's expiry (ms), ARGV[4] the cap,
-- ARGV[5] the set's own time to live (ms), ARGV[6..] the live nodes (none given: not checked)
-- Returns 1 when the member holds a slot (a new one, or the one it held), 0 when full.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
local cap = tonumber(ARGV[4])
if not redis.call('ZSCORE', KEYS[1], ARGV[1])
    and redis.call('ZCARD', KEYS[1]) >= cap and #ARGV > 5 then
  local live = {}
  for i = 6, #ARGV do
    live[ARGV[i]] = true
  end
  for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    local node = string.match(member, '^(.*):[^:]*$')
    if not (node and live[node]) then
      redis.call('ZREM', KEYS[1], member)
    end
  end
end
if not redis.call('ZSCORE', KEYS[1], ARGV[1])
    and redis.call('ZCARD', KEYS[1]) >= cap then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
