-- KEYS[1]: the user's connection set; KEYS[2]: the index of users with
-- connections. ARGV[1]: connection id; ARGV[2]: user id.
-- Returns 1 when this removed the user's last live connection.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[2])
  if removed == 1 then return 1 end
end
return 0
