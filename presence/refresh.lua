-- KEYS[1]: the user's connection set; KEYS[2]: the index of the user's
-- partition. ARGV[1]: TTL ms; ARGV[2]: user id; ARGV[3...]: ids of the
-- user's live connections on the calling node.
-- Re-asserts each connection until TTL from now, adding those Redis lost,
-- and the user's index entry; no cap applies (they are counted already).
-- Returns 1 when the user had no live connection before (their entries
-- were lost or expired), else 0.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expires = now + tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local before = redis.call('ZCARD', KEYS[1])
for i = 3, #ARGV do
  redis.call('ZADD', KEYS[1], expires, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], 'GT', expires, ARGV[2])
if before == 0 and #ARGV > 2 then return 1 end
return 0
