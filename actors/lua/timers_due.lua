-- Move the due timers of one partition into its mailbox, atomically.
-- A timer is a message scheduled for later; it lives in the partition's sorted set (score:
-- due time in ms) until the partition's holder moves it, so it survives the node that set it.
-- KEYS[1] timers sorted set, KEYS[2] mailbox stream; ARGV[1] now in ms, ARGV[2] batch size
-- Returns how many timers were moved.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  local fields = cjson.decode(member)
  local args = {}
  for key, value in pairs(fields) do
    args[#args + 1] = key
    args[#args + 1] = value
  end
  redis.call('XADD', KEYS[2], '*', unpack(args))
  redis.call('ZREM', KEYS[1], member)
end
return #due
