-- One limit-counter Operation, atomically (crossroads.limits.redis_counters).
-- KEYS: the counters (nc), the hold sets (nh), then the claims set when ARGV[2] is not "".
-- ARGV: now, claim, nc, nh, a seed per counter, then the checks (count; per check: k,
-- k counter indexes, cap, amount, hold set index or 0), adds (count; index, amount, ttl or
-- 0), holds (count; index, ticket, amount, expires), releases (count; index, ticket).
-- Reply: {status (1 passed, 0 failed, -1 claimed before), failed check (0-based) or -1,
-- {index, value, ...} before the op, {counter index, value, pttl, ...} after it}.
local now, claim = ARGV[1], ARGV[2]
local nc, nh = tonumber(ARGV[3]), tonumber(ARGV[4])
local B = 1000000000
local p = 5
local seed = {}
for i = 1, nc do seed[i] = ARGV[p]; p = p + 1 end
local function split(s)
  local neg = string.sub(s, 1, 1) == '-'
  if neg then s = string.sub(s, 2) end
  local n, hi, lo = #s, 0, 0
  if n > 9 then
    hi = tonumber(string.sub(s, 1, n - 9)); lo = tonumber(string.sub(s, n - 8))
  else
    lo = tonumber(s)
  end
  if neg then return -hi, -lo end
  return hi, lo
end
local function norm(hi, lo)
  local carry = math.floor(lo / B)
  return hi + carry, lo - carry * B
end
local function fmt(hi, lo)
  hi, lo = norm(hi, lo)
  local sign = ''
  if hi < 0 then
    sign = '-'
    if lo > 0 then hi, lo = -hi - 1, B - lo else hi = -hi end
  end
  if hi > 0 then return sign .. string.format('%.0f%09.0f', hi, lo) end
  if lo == 0 then return '0' end
  return sign .. string.format('%.0f', lo)
end
local function state()
  local out = {}
  for i = 1, nc do
    local v = redis.call('GET', KEYS[i])
    if v then out[#out + 1] = i; out[#out + 1] = v; out[#out + 1] = redis.call('PTTL', KEYS[i]) end
  end
  return out
end
local function drop(key, ticket)
  local prefix = ticket .. ':'
  local n = #prefix
  for _, m in ipairs(redis.call('ZRANGE', key, 0, -1)) do
    if string.sub(m, 1, n) == prefix and string.match(string.sub(m, n + 1), '^%-?%d+$') then
      redis.call('ZREM', key, m)
    end
  end
end
if claim ~= '' then
  local key = KEYS[nc + nh + 1]
  if redis.call('ZADD', key, 'NX', claim, claim) == 0 then return {-1, -1, {}, state()} end
  redis.call('ZREMRANGEBYRANK', key, 0, -1025)
  redis.call('EXPIRE', key, 86400)
end
local vals, hhi, hlo = {}, {}, {}
for h = 1, nh do
  local key = KEYS[nc + h]
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. now)
  local hi, lo = 0, 0
  for _, m in ipairs(redis.call('ZRANGE', key, 0, -1)) do
    local a, b = split(string.match(m, ':(%-?%d+)$'))
    hi = hi + a; lo = lo + b
  end
  hhi[h], hlo[h] = hi, lo
  vals[#vals + 1] = nc + h; vals[#vals + 1] = fmt(hi, lo)
end
local cur = {}
local failed = -1
local n = tonumber(ARGV[p]); p = p + 1
for c = 0, n - 1 do
  local k = tonumber(ARGV[p]); p = p + 1
  local hi, lo = 0, 0
  for _ = 1, k do
    local i = tonumber(ARGV[p]); p = p + 1
    local v = cur[i]
    if v == nil then
      v = redis.call('GET', KEYS[i]) or seed[i]
      cur[i] = v
      vals[#vals + 1] = i; vals[#vals + 1] = v
    end
    local a, b = split(v)
    hi = hi + a; lo = lo + b
  end
  local a, b = split(ARGV[p + 1])
  local d, e = split(ARGV[p])
  hi = hi + a - d; lo = lo + b - e
  local h = tonumber(ARGV[p + 2]); p = p + 3
  if h > 0 then hi = hi + hhi[h]; lo = lo + hlo[h] end
  hi, lo = norm(hi, lo)
  if failed < 0 and (hi > 0 or (hi == 0 and lo > 0)) then failed = c end
end
if failed >= 0 then return {0, failed, vals, state()} end
n = tonumber(ARGV[p]); p = p + 1
for _ = 1, n do
  local i, amount, ttl = tonumber(ARGV[p]), ARGV[p + 1], tonumber(ARGV[p + 2]); p = p + 3
  if seed[i] ~= '0' and redis.call('EXISTS', KEYS[i]) == 0 then
    redis.call('SET', KEYS[i], seed[i])
  end
  redis.call('INCRBY', KEYS[i], amount)
  if ttl > 0 then redis.call('EXPIRE', KEYS[i], ttl) end
end
n = tonumber(ARGV[p]); p = p + 1
local held = {}
for _ = 1, n do
  local h, ticket = tonumber(ARGV[p]), ARGV[p + 1]
  drop(KEYS[nc + h], ticket)
  redis.call('ZADD', KEYS[nc + h], ARGV[p + 3], ticket .. ':' .. ARGV[p + 2])
  held[#held + 1] = h; p = p + 4
end
for _, h in ipairs(held) do
  local top = redis.call('ZRANGE', KEYS[nc + h], -1, -1, 'WITHSCORES')
  if top[2] then
    local ms = math.ceil((tonumber(top[2]) - tonumber(now)) * 1000) + 60000
    if ms > 0 then redis.call('PEXPIRE', KEYS[nc + h], string.format('%.0f', ms)) end
  end
end
n = tonumber(ARGV[p]); p = p + 1
for _ = 1, n do
  drop(KEYS[nc + tonumber(ARGV[p])], ARGV[p + 1]); p = p + 2
end
return {1, -1, vals, state()}
