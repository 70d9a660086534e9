-- Count one more event in a fixed window: INCR, and the key's expiry (re)set, in one
-- call on one key (no MULTI: on Redis Cluster redis-py runs a transaction's commands
-- through threads, about 2.5 ms a request). Not EXPIRE NX: the embedded Redis of
-- `orchestra up` is 6.2; renewing only keeps a window's key a second past its end.
-- KEYS[1] the window's counter, ARGV[1] its time to live in s. Returns the count.
local count = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[1])
return count
