-- KEYS[1]: the user's connection set; KEYS[2]: the index of the user's
-- partition. ARGV[1]: connection id; ARGV[2]: user id.
-- Removes the connection (if Redis still has it) and returns 1 when the
-- user has no live connection left, else 0. A user with none leaves the
-- index, so no sweep announces them again.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) > 0 then return 0 end
redis.call('ZREM', KEYS[2], ARGV[2])
return 1
