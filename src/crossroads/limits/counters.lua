-- One limit-counter Operation, atomically (crossroads.limits.redis_counters).
-- KEYS: the counters (nc); per hold set (nh) its expiries (sorted set: ticket, score =
-- expires) and its amounts (hash: ticket -> amount, field "" -> the total of the amounts);
-- then the claims set when ARGV[2] is not "".
-- ARGV: now, claim, nc, nh, prune limit, a seed per counter, then the checks (count; per
-- check: k, k counter indexes, cap, amount, hold set index or 0), adds (count; index, amount,
-- ttl or 0), floors (count; index, minimum, ttl or 0), holds (count; index, ticket, amount,
-- expires), releases (count; index, ticket).
-- Reply: {status (1 passed, 0 failed, -1 claimed before), failed check (0-based) or -1,
-- {index, value, ...} before the op, {counter index, value, pttl, ...} after it}.
-- Every step is O(log n) in a hold set's size: dead holds are pruned oldest first, at most
-- `prune limit` per hold set (the rest on later runs), and its total is kept in the hash.
local now, claim = ARGV[1], ARGV[2]
local nc, nh, limit = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local B = 1000000000
local p = 6
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
local function positive(hi, lo)
  hi, lo = norm(hi, lo)
  return hi > 0 or (hi == 0 and lo > 0)
end
local function state()
  local out = {}
  for i = 1, nc do
    local v = redis.call('GET', KEYS[i])
    if v then out[#out + 1] = i; out[#out + 1] = v; out[#out + 1] = redis.call('PTTL', KEYS[i]) end
  end
  return out
end
if claim ~= '' then
  local key = KEYS[nc + 2 * nh + 1]
  if redis.call('ZADD', key, 'NX', claim, claim) == 0 then return {-1, -1, {}, state()} end
  redis.call('ZREMRANGEBYRANK', key, 0, -1025)
  redis.call('EXPIRE', key, 86400)
end
-- hold sets: totals as limbs (hhi, hlo), changed ones saved at the end
local vals, hhi, hlo, dirty = {}, {}, {}, {}
local function zkey(h) return KEYS[nc + 2 * h - 1] end
local function akey(h) return KEYS[nc + 2 * h] end
local function count(h, amount, sign)
  local a, b = split(amount)
  hhi[h] = hhi[h] + sign * a; hlo[h] = hlo[h] + sign * b
  hhi[h], hlo[h] = norm(hhi[h], hlo[h])
end
local function save(h)
  local z, a = zkey(h), akey(h)
  if redis.call('ZCARD', z) == 0 then
    redis.call('DEL', z, a)
    return
  end
  redis.call('HSET', a, '', fmt(hhi[h], hlo[h]))
  local top = redis.call('ZRANGE', z, -1, -1, 'WITHSCORES')
  local ms = math.ceil((tonumber(top[2]) - tonumber(now)) * 1000) + 60000
  if ms > 0 then
    ms = string.format('%.0f', ms)
    redis.call('PEXPIRE', z, ms); redis.call('PEXPIRE', a, ms)
  end
end
for h = 1, nh do
  hhi[h], hlo[h] = split(redis.call('HGET', akey(h), '') or '0')
  local dead = redis.call('ZRANGEBYSCORE', zkey(h), '-inf', '(' .. now, 'LIMIT', 0, limit)
  if #dead > 0 then
    local amounts = redis.call('HMGET', akey(h), unpack(dead))
    for j = 1, #dead do
      if amounts[j] then count(h, amounts[j], -1) end
    end
    redis.call('ZREM', zkey(h), unpack(dead))
    redis.call('HDEL', akey(h), unpack(dead))
    dirty[h] = true
  end
  vals[#vals + 1] = nc + h; vals[#vals + 1] = fmt(hhi[h], hlo[h])
end
local function finish(status, failed)
  for h = 1, nh do
    if dirty[h] then save(h) end
  end
  return {status, failed, vals, state()}
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
  if failed < 0 and positive(hi, lo) then failed = c end
end
if failed >= 0 then return finish(0, failed) end
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
for _ = 1, n do
  local i, minimum, ttl = tonumber(ARGV[p]), ARGV[p + 1], tonumber(ARGV[p + 2]); p = p + 3
  local v = redis.call('GET', KEYS[i])
  local a, b = split(minimum)
  local d, e = split(v or seed[i])
  if positive(a - d, b - e) then
    redis.call('SET', KEYS[i], minimum, 'KEEPTTL')
  elseif not v then
    redis.call('SET', KEYS[i], seed[i])
  end
  if ttl > 0 then redis.call('EXPIRE', KEYS[i], ttl) end
end
n = tonumber(ARGV[p]); p = p + 1
for _ = 1, n do
  local h, ticket, amount = tonumber(ARGV[p]), ARGV[p + 1], ARGV[p + 2]
  local old = redis.call('HGET', akey(h), ticket)
  if old then count(h, old, -1) end
  redis.call('HSET', akey(h), ticket, amount)
  count(h, amount, 1)
  redis.call('ZADD', zkey(h), ARGV[p + 3], ticket)
  dirty[h] = true; p = p + 4
end
n = tonumber(ARGV[p]); p = p + 1
for _ = 1, n do
  local h, ticket = tonumber(ARGV[p]), ARGV[p + 1]; p = p + 2
  local old = redis.call('HGET', akey(h), ticket)
  if old then
    count(h, old, -1)
    redis.call('HDEL', akey(h), ticket)
    dirty[h] = true
  end
  if redis.call('ZREM', zkey(h), ticket) == 1 then dirty[h] = true end
end
return finish(1, -1)
