-- Commit actor turns, fenced on the partition's lease: their state, session events,
-- agent commands, outgoing mail, extra writes, timers, replies and mailbox acks, all in
-- one atomic call, or nothing at all when this node no longer holds the lease with the
-- same fencing token (the entries then stay pending for the partition's next holder).
-- One call commits one turn or several turns of the partition, in order.
-- Every key written is declared in KEYS; writes name their key by its index there.
-- KEYS[1] lease key, KEYS[2] mailbox stream, KEYS[3..] the keys the writes touch
-- ARGV[1] holder value "<node>:<fence>", ARGV[2] group,
-- ARGV[3] index in KEYS of a hash to read back after the writes (0: none),
-- ARGV[4] the writes, a JSON array of arrays of strings, each [kind, key index, ...]:
--   ['C', k, command, arg...] a command on KEYS[k] with its arguments after the key
--       (HSET, XADD, ZADD, ZREM, RPUSH, PEXPIRE...)
--   ['O', k, outbox, event, data] an agent command, KEYS[k] being the agent's hash and
--       KEYS[outbox] its outbox stream: it gets the next commandId (the hash's
--       `commandSeq`) and the outbox entry id 0-<commandId>
-- (One JSON argument rather than many: a client packs and sends it far more cheaply.)
-- ARGV[5] index in KEYS of the commit's memo (see below)
-- ARGV[6..] the mailbox entries the turns handled, acknowledged together
-- Returns {0} when the lease is not ours; else {1, commandIds, readBack, errors}:
-- readBack the hash's fields and values (flat, empty when none was asked for), errors
-- the messages of writes Redis refused (the others and the ack are done all the same,
-- as with MULTI/EXEC, so a bad write cannot keep a message pending for ever).
--
-- The memo makes a call run twice commit once: a client that lost its connection after
-- sending the call sends it again (redis-py retries on a connection error), and the
-- second run must neither write again nor report the lease lost. The first run keeps
-- its holder and its answer under the memo (named after the first entry, whose id is
-- unique) for MEMO_MS; a second run by the same holder gets that answer and changes
-- nothing, one by any other holder gets {0}.
local MEMO_MS = 60000
local memo = KEYS[tonumber(ARGV[5])]
local done = redis.call('GET', memo)
if done then
  local kept = cjson.decode(done)
  if kept[1] ~= ARGV[1] then
    return {0}
  end
  return kept[2]
end
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return {0}
end
local ids = {}
local errors = {}
for _, write in ipairs(cjson.decode(ARGV[4])) do
  local key = KEYS[tonumber(write[2])]
  local reply
  if write[1] == 'O' then
    reply = redis.pcall('HINCRBY', key, 'commandSeq', 1)
    if type(reply) == 'number' then
      ids[#ids + 1] = reply
      reply = redis.pcall('XADD', KEYS[tonumber(write[3])], '0-' .. reply,
        'event', write[4], 'data', write[5])
    else
      ids[#ids + 1] = 0
    end
  else
    reply = redis.pcall(write[3], key, unpack(write, 4))
  end
  if type(reply) == 'table' and reply.err then
    errors[#errors + 1] = reply.err
  end
end
redis.call('XACK', KEYS[2], ARGV[2], unpack(ARGV, 6))
local read_back = {}
local wanted = tonumber(ARGV[3])
if wanted > 0 then
  read_back = redis.call('HGETALL', KEYS[wanted])
end
local answer = {1, ids, read_back, errors}
redis.call('SET', memo, cjson.encode({ARGV[1], answer}), 'PX', MEMO_MS)
return answer
