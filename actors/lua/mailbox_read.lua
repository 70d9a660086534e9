-- Take new mail from a partition's mailbox, only while holding the partition's lease.
-- A node that lost its lease must not take new entries: they would be pending under it,
-- and the next holder, reading on, would handle later mail before them.
-- KEYS[1] lease key, KEYS[2] mailbox stream
-- ARGV[1] holder value, ARGV[2] group, ARGV[3] consumer, ARGV[4] count
-- Returns {0} when the lease is not ours, {1, entries} with new entries, or
-- {2, lastId} when there are none (wait for entries after lastId, then call again).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return {0}
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
