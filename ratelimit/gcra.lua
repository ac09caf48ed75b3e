-- GCRA (generic cell rate algorithm) for one key, atomically.
--
-- KEYS[1]  the key holding the theoretical arrival time (TAT) of the next
--          request, in seconds since the script's epoch
-- ARGV[1]  emission interval: seconds between requests at the sustained rate
-- ARGV[2]  burst: requests allowed at once with a full budget
--
-- Returns {allowed (0|1), remaining, retry_after, reset_after}, the last two
-- in seconds as strings (Lua numbers would be truncated to integers).
--
-- The time is Redis's own (TIME), so nodes with skewed clocks agree. Since
-- Redis 5 scripts replicate their effects, not the script, so calling TIME
-- before a write is allowed.

local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])

-- Seconds since 2023-11-14: small enough that a double keeps microseconds.
local t = redis.call("TIME")
local now = (tonumber(t[1]) - 1700000000) + tonumber(t[2]) / 1000000

local tat = tonumber(redis.call("GET", KEYS[1]) or "")
if tat == nil or tat < now then
  tat = now
end

local burst_offset = interval * burst
local new_tat = tat + interval
local allow_at = new_tat - burst_offset
local diff = now - allow_at

if diff < 0 then
  -- Refused: the budget is empty; one more request fits in -diff seconds.
  return {0, 0, tostring(-diff), tostring(tat - now)}
end

-- The epsilon absorbs rounding: 19 intervals divided by one interval must
-- not floor to 18.
local remaining = math.floor(diff / interval + 1e-6)
local reset_after = new_tat - now
redis.call("SET", KEYS[1], tostring(new_tat), "PX", math.ceil(reset_after * 1000))
return {1, remaining, "0", tostring(reset_after)}
