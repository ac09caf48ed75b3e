-- KEYS[1]: the user's connection set; KEYS[2]: the index of the user's
-- partition. ARGV[1]: connection id; ARGV[2]: TTL ms; ARGV[3]: user id;
-- ARGV[4]: the most live connections the user may have (0: no limit).
-- Returns -1 when the user has that many already (nothing is recorded),
-- 1 when the user had no live connection before this one, else 0.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expires = now + tonumber(ARGV[2])
local limit = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local before = redis.call('ZCARD', KEYS[1])
if limit > 0 and before >= limit then return -1 end
redis.call('ZADD', KEYS[1], expires, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], 'GT', expires, ARGV[3])
if before == 0 then return 1 end
return 0
