-- Deliver entries of one partition's outgoing stream to the keys of one slot: each entry
-- once, in the order they were sent (docs/redis-cluster.md §3).
-- The receiver keeps, per sender, the id of the last entry it took (KEYS[1], a hash in the
-- receiver's slot): an entry at or below it was delivered before (by this holder, or by a
-- previous holder of the sender's partition, or by one that lost its lease meanwhile) and
-- is skipped. So any number of forwarders delivering prefixes of one outgoing stream, in
-- order, deliver each entry once.
-- KEYS[1] the receiver's inbound hash, KEYS[2..] the keys the writes touch
-- ARGV[1] the sender (its partition's tag), ARGV[2] a time to live for the inbound hash in
-- ms (0: none; a reply inbox's marks go with the inbox),
-- ARGV[3] the entries, a JSON array of [entry id, write], in stream order; a write is
-- ['C', k, command, arg...] or ['O', k, outbox, event, data, agentId] as in turn_commit.lua
-- (key indexes into KEYS).
-- Returns {last id delivered, commands, errors}: commands the {entry id, commandId} of each
-- agent command delivered now, and of each one skipped as delivered before that is still
-- in its outbox (unacknowledged: the forwarder that delivered it may have died before its
-- push, so it is pushed again; the agent takes a commandId once), errors the messages of
-- writes Redis refused (the entry counts as delivered all the same, as in a commit).
local function before_or_at(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am < bm or (am == bm and as <= bs)
end

-- The commandId of an agent command still waiting in `outbox` (among its newest entries;
-- an older one is left to the gateway's resend sweep), or nil.
local function waiting(outbox, event, data)
  for _, item in ipairs(redis.call('XREVRANGE', outbox, '+', '-', 'COUNT', 100)) do
    local fields, found_event, found_data = item[2], nil, nil
    for i = 1, #fields, 2 do
      if fields[i] == 'event' then
        found_event = fields[i + 1]
      elseif fields[i] == 'data' then
        found_data = fields[i + 1]
      end
    end
    if found_event == event and found_data == data then
      return tonumber(string.match(item[1], '^0%-(%d+)$'))
    end
  end
  return nil
end

local mark = redis.call('HGET', KEYS[1], ARGV[1]) or '0-0'
local commands = {}
local errors = {}
for _, entry in ipairs(cjson.decode(ARGV[3])) do
  local id, write = entry[1], entry[2]
  if not before_or_at(id, mark) then
    local key = KEYS[tonumber(write[2])]
    local reply
    if write[1] == 'O' then
      reply = redis.pcall('HINCRBY', key, 'commandSeq', 1)
      if type(reply) == 'number' then
        commands[#commands + 1] = {id, reply}
        reply = redis.pcall('XADD', KEYS[tonumber(write[3])], '0-' .. reply,
          'event', write[4], 'data', write[5])
      end
    else
      reply = redis.pcall(write[3], key, unpack(write, 4))
    end
    if type(reply) == 'table' and reply.err then
      errors[#errors + 1] = reply.err
    end
    mark = id
  elseif write[1] == 'O' then
    local command_id = waiting(KEYS[tonumber(write[3])], write[4], write[5])
    if command_id then
      commands[#commands + 1] = {id, command_id}
    end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], mark)
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return {mark, commands, errors}
