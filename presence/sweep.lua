-- KEYS[1]: the index of users with connections (user id scored by the
-- latest expiry of their connections). ARGV[1]: the prefix of the users'
-- connection sets; ARGV[2]: the most users to look at.
-- Returns the users whose every connection has expired (their node died
-- without cleanup). Each is returned to exactly one caller, which announces
-- that they went offline.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local gone = {}
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, user in ipairs(due) do
  local key = ARGV[1] .. user
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  local latest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if #latest == 0 then
    redis.call('ZREM', KEYS[1], user)
    table.insert(gone, user)
  else
    redis.call('ZADD', KEYS[1], latest[2], user)
  end
end
return gone
