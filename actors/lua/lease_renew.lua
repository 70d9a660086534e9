-- Renew a partition lease only if this holder still has it.
-- KEYS[1] lease key; ARGV[1] holder value "<node>:<fence>"; ARGV[2] ttl ms
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
