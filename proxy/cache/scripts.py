"""The Lua scripts the Redis store runs: each write that could race an invalidation is one
script, so Redis applies it atomically against the order's generation (see redis.py)."""

from __future__ import annotations

from proxy.cache.epoch import EPOCH_LUA

# Note the order's generation, creating it if there is none, and this primary's epoch (read
# in the same atomic step: see epoch.py), and the last webhook's lower bound if one is set.
# KEYS: gen, floor; ARGV: fresh, ttl s. Returns {gen, epoch, floor or nil}.
NOTE = (
    EPOCH_LUA
    + """
local g = redis.call('GET', KEYS[1])
if not g then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  g = ARGV[1]
end
return {g, epoch(), redis.call('GET', KEYS[2])}
"""
)
# Take the miss lock for a key and note the generation. A lock held by a read of an older
# generation is taken over: its answer predates an invalidation and must not be shared now.
# A follower whose leader failed (ARGV[5] = '1') takes an answer another leader of this
# generation shared meanwhile rather than lead a call of its own.
# KEYS: lock, answer, gen, floor; ARGV: token, lock ttl ms, fresh gen, gen ttl s, rejoining.
# Returns {LEAD | FOLLOW | SHARED, generation, epoch, the webhook floor or nil}.
LOCK = (
    EPOCH_LUA
    + """
local g = redis.call('GET', KEYS[3])
if not g then
  redis.call('SET', KEYS[3], ARGV[3], 'EX', ARGV[4])
  g = ARGV[3]
end
local floor = redis.call('GET', KEYS[4])
local held = redis.call('GET', KEYS[1])
if held and string.sub(held, 34) == g then return {0, g, epoch(), floor} end
if ARGV[5] == '1' and not held then
  local shared = redis.call('GET', KEYS[2])
  if shared and string.sub(shared, 1, #g + 1) == g .. '|' then return {2, g, epoch(), floor} end
end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. g, 'PX', ARGV[2])
redis.call('DEL', KEYS[2])
return {1, g, epoch(), floor}
"""
)
# Store an entry if the order's generation is still the one its read noted.
# KEYS: entry, variants, gen; ARGV: value, ttl s, noted gen, state|etag. 1 stored, 0 fenced.
SAVE = """
if redis.call('GET', KEYS[3]) ~= ARGV[3] then return 0 end
local ttl = tonumber(ARGV[2])
redis.call('SET', KEYS[1], ARGV[1], 'EX', ttl)
redis.call('HSET', KEYS[2], KEYS[1], ARGV[4])
if redis.call('TTL', KEYS[2]) < ttl then redis.call('EXPIRE', KEYS[2], ttl) end
if redis.call('TTL', KEYS[3]) < ttl then redis.call('EXPIRE', KEYS[3], ttl) end
return 1
"""
# The save of a read that must reflect Juspay now (no-cache, verification). Fenced like a
# save; if any stored variant of the order disagrees with this read (the same variant with
# other bytes, or another variant of the whole order with another state: status, refunds...;
# a payment attempt's answer (`:t:` keys) is compared with itself only), every variant is
# dropped and every replica told first; storing also moves the generation on, so older reads
# still in flight cannot overwrite this answer. Variants are indexed as "<state>|<etag>".
# KEYS: entry, variants, gen; ARGV: value ('' = nothing to store), ttl s, noted gen,
# state|etag, fresh gen, gen ttl s, channel, message, state.
# 0 fenced, 1 stored, 2 changed, 3 unchanged.
REPLACE = """
if redis.call('GET', KEYS[3]) ~= ARGV[3] then return 0 end
local result = 3
local known = redis.call('HGETALL', KEYS[2])
local attempt = string.find(KEYS[1], ':t:', 1, true)
for i = 1, #known, 2 do
  local k, v = known[i], known[i + 1]
  if k == KEYS[1] then
    if v ~= ARGV[4] then result = 2 end
  elseif not attempt and not string.find(k, ':t:', 1, true) then
    if string.match(v, '^[^|]*') ~= ARGV[9] then result = 2 end
  end
  if result == 2 then break end
end
if result == 2 then
  for i = 1, #known, 2 do redis.call('DEL', known[i]) end
  redis.call('DEL', KEYS[2])
  redis.call('PUBLISH', ARGV[7], ARGV[8])
end
if ARGV[1] == '' then
  if result == 2 then redis.call('SET', KEYS[3], ARGV[5], 'EX', ARGV[6]) end
  return result
end
local ttl = tonumber(ARGV[2])
redis.call('SET', KEYS[3], ARGV[5], 'EX', math.max(ttl, tonumber(ARGV[6])))
redis.call('SET', KEYS[1], ARGV[1], 'EX', ttl)
redis.call('HSET', KEYS[2], KEYS[1], ARGV[4])
if redis.call('TTL', KEYS[2]) < ttl then redis.call('EXPIRE', KEYS[2], ttl) end
if result == 3 then result = 1 end
return result
"""
# Invalidate one order: a new generation, every variant dropped, every replica told; a
# webhook also leaves its lower bound for the reads that follow (see core/lowerbound.py).
# KEYS: gen, variants, floor; ARGV: fresh gen, gen ttl s, channel, message, floor ('' none),
# floor ttl s. The count dropped.
INVALIDATE = """
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
if ARGV[5] ~= '' then redis.call('SET', KEYS[3], ARGV[5], 'EX', ARGV[6]) end
local n = 0
for _, k in ipairs(redis.call('HKEYS', KEYS[2])) do n = n + redis.call('DEL', k) end
redis.call('DEL', KEYS[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return n
"""
# The leader's answer for followers on other replicas, and the lock released, in one round
# trip; only while this leader still holds the lock (an invalidation may have let a newer
# read take it over). The answer is shared (and announced) only if a follower said it is
# waiting; it is stored as "<generation>|<entry>". KEYS: answer, lock, followers;
# ARGV: answer, ttl ms, lock value, channel, message.
SHARE = """
if redis.call('GET', KEYS[2]) ~= ARGV[3] then return 0 end
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  redis.call('PUBLISH', ARGV[4], ARGV[5])
end
redis.call('DEL', KEYS[2])
return 1
"""
# Hold (take or extend) a lease. KEYS[1] lease key; ARGV: token, ttl ms. 1 if ours now.
HOLD = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""
# Release a lock only if this token holds it (whatever generation it was taken for).
# KEYS[1] lock key; ARGV[1] token.
UNLOCK = """
local held = redis.call('GET', KEYS[1])
if held and string.sub(held, 1, 32) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
