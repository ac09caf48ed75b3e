-- KEYS[1]: the index of one partition (user id scored by the latest expiry
-- of their connections); KEYS[2...]: the connection sets of users of that
-- partition, in the order of ARGV. ARGV: those users' ids.
-- Returns those of the users whose index entry is due and whose every
-- connection has expired (their node died without cleanup), removing them
-- from the index: each is returned to exactly one caller, which announces
-- that they went offline. A user with a live connection gets its latest
-- expiry as score again.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local gone = {}
for i, user in ipairs(ARGV) do
  local score = redis.call('ZSCORE', KEYS[1], user)
  if score and tonumber(score) <= now then
    local key = KEYS[i + 1]
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    local latest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
    if #latest == 0 then
      redis.call('ZREM', KEYS[1], user)
      table.insert(gone, user)
    else
      redis.call('ZADD', KEYS[1], latest[2], user)
    end
  end
end
return gone
