-- Records one failed login for a name. Arguments as backoff_check.lua.
-- Returns the failures in a row so far.

local free, base, longest, forget = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local f = redis.call("HINCRBY", KEYS[1], "f", 1)
local wait = 0
if f >= free then
  wait = math.min(base * 2 ^ (f - free), longest)
  redis.call("HSET", KEYS[1], "u", now + wait)
end
redis.call("PEXPIRE", KEYS[1], wait + forget)
return f
