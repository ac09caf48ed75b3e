-- May a login for one name go ahead now? Atomically, for one key.
--
-- KEYS[1]  the name's failure record: hash {f: failures in a row,
--          u: Redis ms before which no attempt goes ahead}
-- ARGV[1]  free: failures in a row before waits start
-- ARGV[2]  base wait in ms (after the free-th failure); it doubles after each
--          further one
-- ARGV[3]  longest wait in ms
-- ARGV[4]  how long the record outlives its wait, in ms
--
-- Returns 0 when the attempt may go ahead, else the ms to wait. An attempt
-- that goes ahead while waits apply reserves the wait its own failure would
-- bring, so that concurrent attempts for the name are refused instead of
-- all reaching the password check.

local free, base, longest, forget = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local f = tonumber(redis.call("HGET", KEYS[1], "f") or "0")
local u = tonumber(redis.call("HGET", KEYS[1], "u") or "0")
if now < u then
  return u - now
end
if f >= free then
  local wait = math.min(base * 2 ^ (f + 1 - free), longest)
  redis.call("HSET", KEYS[1], "u", now + wait)
  redis.call("PEXPIRE", KEYS[1], wait + forget)
end
return 0
