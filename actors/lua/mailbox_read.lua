-- Take new mail from a partition's mailbox, only while holding the partition's lease.
-- (Mail this consumer already took and did not acknowledge comes back first: see below.)
-- A node that lost its lease must not take new entries: they would be pending under it,
-- and the next holder, reading on, would handle later mail before them.
-- The partition's due timers are moved into the mailbox first (as timers_due.lua does),
-- so one call both fires them and takes them with the rest of the mail.
-- KEYS[1] lease key, KEYS[2] mailbox stream, KEYS[3] timers sorted set
-- ARGV[1] holder value, ARGV[2] group, ARGV[3] consumer, ARGV[4] count, ARGV[5] now in ms
-- Returns {0} when the lease is not ours, {1, entries} with new entries, or
-- {2, lastId} when there are none (wait for entries after lastId, then call again).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return {0}
end
local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[5], 'LIMIT', 0,
  tonumber(ARGV[4]))
for _, member in ipairs(due) do
  local fields = cjson.decode(member)
  local args = {}
  for key, value in pairs(fields) do
    args[#args + 1] = key
    args[#args + 1] = value
  end
  redis.call('XADD', KEYS[2], '*', unpack(args))
  redis.call('ZREM', KEYS[3], member)
end
-- Entries this consumer took and never acknowledged go first: a call whose answer was
-- lost with the connection and that the client sent again (redis-py retries on a
-- connection error) took them, and they must not wait behind newer mail.
local mine = redis.call('XREADGROUP', 'GROUP', ARGV[2], ARGV[3], 'COUNT', ARGV[4],
  'STREAMS', KEYS[2], '0')
if mine and mine[1] and #mine[1][2] > 0 then
  return {1, mine[1][2]}
end
local read = redis.call('XREADGROUP', 'GROUP', ARGV[2], ARGV[3], 'COUNT', ARGV[4],
  'STREAMS', KEYS[2], '>')
if read then
  return {1, read[1][2]}
end
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if last[1] then
  return {2, last[1][1]}
end
return {2, '0-0'}
