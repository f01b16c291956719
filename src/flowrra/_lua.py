"""The Lua scripts of the Redis broker and result backend: one script per transition.

Broker scripts all receive the fixed keys of one queue
(:meth:`flowrra.redis_keys.QueueKeys.fixed`, in that order) and these common arguments::

    ARGV[1] ready-zset prefix   ARGV[2] wake-up-list prefix   ARGV[3] event channel
    ARGV[4] queue name          ARGV[5] dead-letter bound

Lane keys (ready zset, wake-up list) are the given prefixes plus an executor name; they
carry the queue's hash tag, so they live in the same slot as the fixed keys. Times are
Redis server time in milliseconds, so producers' and workers' clocks never disagree
about a lease or a due time. Each script works on a batch of items and returns one result
per item, so one round trip serves many tasks.

Ready score: ``(1000 - priority) * 2**41 + 2**40 +/- sequence``: lower runs first, so a
higher priority wins and, within a priority, a larger sequence runs later (FIFO); tasks
handed back (release, reaped lease) take ``- sequence`` and go before every task of their
priority. Priorities are clamped to -1000..1000 by the broker; every score is an integer
below 2**53, exact in a double.
"""

from __future__ import annotations

_BROKER_COMMON = r"""
local K_MSG, K_META, K_DELAYED, K_LEASES = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local K_TOKENS, K_DELIV, K_DEAD, K_DEADR = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local K_DEADB, K_SEQ, K_FULL = KEYS[9], KEYS[10], KEYS[11]
local READY, NOTIFY, CHANNEL, QUEUE = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local MAX_DEAD = tonumber(ARGV[5])
local NOTIFY_CAP = 64

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function parse_meta(m)
  if not m then return 'io', 0 end
  local ex, p = string.match(m, '^(.*)|(-?%d+)$')
  if not ex then return 'io', 0 end
  return ex, tonumber(p)
end

local function lane_of(id)
  return parse_meta(redis.call('HGET', K_META, id))
end

local function score(p, seq, front)
  local base = (1000 - p) * 2199023255552 + 1099511627776
  if front then return string.format('%.0f', base - seq) end
  return string.format('%.0f', base + seq)
end

local function wake(ex)
  local key = NOTIFY .. ex
  if redis.call('LLEN', key) < NOTIFY_CAP then redis.call('RPUSH', key, '1') end
end

local function make_ready(id, front)
  local ex, p = lane_of(id)
  redis.call('ZADD', READY .. ex, score(p, redis.call('INCR', K_SEQ), front), id)
  wake(ex)
end

local function delay(id, due)
  local head = redis.call('ZRANGE', K_DELAYED, 0, 0, 'WITHSCORES')
  redis.call('ZADD', K_DELAYED, string.format('%.0f', due), id)
  if #head == 0 or due < tonumber(head[2]) then
    redis.call('PUBLISH', CHANNEL, 'delayed:' .. QUEUE)
  end
end

local function forget(id)
  redis.call('HDEL', K_MSG, id)
  redis.call('HDEL', K_META, id)
  redis.call('HDEL', K_TOKENS, id)
  redis.call('HDEL', K_DELIV, id)
  redis.call('ZREM', K_LEASES, id)
end

local function unlease(id)
  redis.call('HDEL', K_TOKENS, id)
  redis.call('ZREM', K_LEASES, id)
end

local function if_idle()
  if redis.call('HLEN', K_MSG) == 0 then redis.call('PUBLISH', CHANNEL, 'idle:' .. QUEUE) end
end

local function room()
  if redis.call('EXISTS', K_FULL) == 1 then
    redis.call('DEL', K_FULL)
    redis.call('PUBLISH', CHANNEL, 'room:' .. QUEUE)
  end
end

local function bury(id, reason, now)
  local body = redis.call('HGET', K_MSG, id) or ''
  forget(id)
  redis.call('ZADD', K_DEAD, now, id)
  redis.call('HSET', K_DEADR, id, reason)
  redis.call('HSET', K_DEADB, id, body)
  local extra = redis.call('ZCARD', K_DEAD) - MAX_DEAD
  if extra > 0 then
    local old = redis.call('ZPOPMIN', K_DEAD, extra)
    for i = 1, #old, 2 do
      redis.call('HDEL', K_DEADR, old[i])
      redis.call('HDEL', K_DEADB, old[i])
    end
  end
end
"""

# ARGV[6] max waiting tasks (0: no bound); then per task: id, message, "<exec>|<prio>", eta ms
# (0: now). Returns per task 1 (queued), 0 (id already known) or -1 (queue full).
# Batched: one HMGET finds the ids already known, one INCRBY reserves the batch's sequence
# numbers, one HSET per hash, one ZADD and one wake-up per lane.
ENQUEUE = (
    _BROKER_COMMON
    + r"""
local max_size = tonumber(ARGV[6])
local now = now_ms()
local count = (#ARGV - 6) / 4
local seq = redis.call('INCRBY', K_SEQ, count) - count
local ids = {}
for i = 7, #ARGV, 4 do ids[#ids + 1] = ARGV[i] end
local known = redis.call('HMGET', K_MSG, unpack(ids))
local waiting = 0
if max_size > 0 then waiting = redis.call('HLEN', K_MSG) - redis.call('ZCARD', K_LEASES) end
local out, lanes, order, bodies, metas, added = {}, {}, {}, {}, {}, {}
for k = 1, count do
  local i = 3 + 4 * k
  local id = ids[k]
  local result = 1
  if known[k] or added[id] then
    result = 0
  elseif max_size > 0 and waiting >= max_size then
    redis.call('SET', K_FULL, '1')
    result = -1
  end
  if result == 1 then
    added[id] = true
    waiting = waiting + 1
    local meta = ARGV[i + 2]
    bodies[#bodies + 1] = id
    bodies[#bodies + 1] = ARGV[i + 1]
    metas[#metas + 1] = id
    metas[#metas + 1] = meta
    local eta = tonumber(ARGV[i + 3])
    if eta > now then
      delay(id, eta)
    else
      local ex, p = parse_meta(meta)
      seq = seq + 1
      local lane = lanes[ex]
      if not lane then
        lane = {}
        lanes[ex] = lane
        order[#order + 1] = ex
      end
      lane[#lane + 1] = score(p, seq, false)
      lane[#lane + 1] = id
    end
  end
  out[#out + 1] = result
end
if #bodies > 0 then
  redis.call('HSET', K_MSG, unpack(bodies))
  redis.call('HSET', K_META, unpack(metas))
end
for _, ex in ipairs(order) do
  redis.call('ZADD', READY .. ex, unpack(lanes[ex]))
  wake(ex)
end
return out
"""
)

# ARGV[6] lease ms, ARGV[7] how many to claim, ARGV[8..] executors (lanes) in preference
# order. Returns flat groups of id, executor, token, deliveries, message. Per lane: one
# ZPOPMIN, two HMGET (messages, delivery counts), one INCRBY (the tokens), two HSET and one
# ZADD, however many tasks it claims.
CLAIM = (
    _BROKER_COMMON
    + r"""
local want = tonumber(ARGV[7])
local deadline = now_ms() + tonumber(ARGV[6])
local out = {}
for j = 8, #ARGV do
  if want <= 0 then break end
  local ex = ARGV[j]
  local popped = redis.call('ZPOPMIN', READY .. ex, want)
  if #popped > 0 then
    local ids = {}
    for i = 1, #popped, 2 do ids[#ids + 1] = popped[i] end
    local bodies = redis.call('HMGET', K_MSG, unpack(ids))
    local counts = redis.call('HMGET', K_DELIV, unpack(ids))
    local token = redis.call('INCRBY', K_SEQ, #ids) - #ids
    local tokens, leases, deliveries = {}, {}, {}
    for k, id in ipairs(ids) do
      local body = bodies[k]
      if body then
        token = token + 1
        local text = string.format('%.0f', token)
        local delivered = (tonumber(counts[k]) or 0) + 1
        tokens[#tokens + 1] = id
        tokens[#tokens + 1] = text
        leases[#leases + 1] = deadline
        leases[#leases + 1] = id
        deliveries[#deliveries + 1] = id
        deliveries[#deliveries + 1] = delivered
        out[#out + 1] = id
        out[#out + 1] = ex
        out[#out + 1] = text
        out[#out + 1] = delivered
        out[#out + 1] = body
        want = want - 1
      end
    end
    if #tokens > 0 then
      redis.call('HSET', K_TOKENS, unpack(tokens))
      redis.call('HSET', K_DELIV, unpack(deliveries))
      redis.call('ZADD', K_LEASES, unpack(leases))
    end
  end
  if redis.call('EXISTS', READY .. ex) == 1 then wake(ex) end
end
if #out > 0 then room() end
return out
"""
)

# Per item: op, id, token, a, b, c. ops: ack; retry (a message, b meta, c delay ms);
# release; unclaim (hand back a prefetched claim without counting a delivery);
# bury (a reason). Returns per item 1, or 0 when the token no longer owns the task.
SETTLE = (
    _BROKER_COMMON
    + r"""
local now = now_ms()
local ids = {}
for i = 6, #ARGV, 6 do ids[#ids + 1] = ARGV[i + 1] end
local current = redis.call('HMGET', K_TOKENS, unpack(ids))
local out, acked, touched = {}, {}, {}
local removed = false
for k = 1, #ids do
  local i = 6 * k
  local op, id = ARGV[i], ARGV[i + 1]
  local owner = current[k]
  if touched[id] == 'acked' then
    owner = false
  elseif touched[id] then
    owner = redis.call('HGET', K_TOKENS, id)
  end
  touched[id] = true
  local ok = 0
  if owner == ARGV[i + 2] then
    ok = 1
    if op == 'ack' then
      acked[#acked + 1] = id
      touched[id] = 'acked'
    elseif op == 'retry' then
      unlease(id)
      redis.call('HDEL', K_DELIV, id)
      redis.call('HSET', K_MSG, id, ARGV[i + 3])
      redis.call('HSET', K_META, id, ARGV[i + 4])
      local wait = tonumber(ARGV[i + 5])
      if wait > 0 then delay(id, now + wait) else make_ready(id, false) end
    elseif op == 'release' then
      unlease(id)
      make_ready(id, true)
    elseif op == 'unclaim' then
      unlease(id)
      if redis.call('HINCRBY', K_DELIV, id, -1) <= 0 then redis.call('HDEL', K_DELIV, id) end
      make_ready(id, true)
    else
      bury(id, ARGV[i + 3], now)
      removed = true
    end
  end
  out[#out + 1] = ok
end
if #acked > 0 then
  redis.call('HDEL', K_MSG, unpack(acked))
  redis.call('HDEL', K_META, unpack(acked))
  redis.call('HDEL', K_TOKENS, unpack(acked))
  redis.call('HDEL', K_DELIV, unpack(acked))
  redis.call('ZREM', K_LEASES, unpack(acked))
  removed = true
end
if removed then if_idle() end
return out
"""
)

# ARGV[6] lease ms; then id, token pairs. Returns per pair 1 (extended) or 0 (lost).
EXTEND = (
    _BROKER_COMMON
    + r"""
local deadline = now_ms() + tonumber(ARGV[6])
local out = {}
for i = 7, #ARGV, 2 do
  local id = ARGV[i]
  if redis.call('HGET', K_TOKENS, id) == ARGV[i + 1] then
    redis.call('ZADD', K_LEASES, 'XX', deadline, id)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
"""
)

# ARGV[6] max deliveries, ARGV[7] most leases to reap. Returns {reaped, {id, reason,
# message, deliveries, token of the expired claim, ...}} (the tasks it dead-lettered).
REAP = (
    _BROKER_COMMON
    + r"""
local max_deliveries = tonumber(ARGV[6])
local now = now_ms()
local expired = redis.call('ZRANGEBYSCORE', K_LEASES, '-inf', now, 'LIMIT', 0, tonumber(ARGV[7]))
local buried = {}
for _, id in ipairs(expired) do
  local d = tonumber(redis.call('HGET', K_DELIV, id) or '0')
  local token = redis.call('HGET', K_TOKENS, id) or ''
  unlease(id)
  if d >= max_deliveries then
    local reason = string.format(
      'lease expired %d times (max_deliveries=%d): the worker running it died or stalled',
      d, max_deliveries)
    buried[#buried + 1] = id
    buried[#buried + 1] = reason
    buried[#buried + 1] = redis.call('HGET', K_MSG, id) or ''
    buried[#buried + 1] = d
    buried[#buried + 1] = token
    bury(id, reason, now)
  else
    make_ready(id, true)
  end
end
if #buried > 0 then if_idle() end
return {#expired, buried}
"""
)

# ARGV[6] most tasks to promote. Returns {promoted, next due ms or "-1", now ms}.
PROMOTE = (
    _BROKER_COMMON
    + r"""
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', K_DELAYED, '-inf', now, 'LIMIT', 0, tonumber(ARGV[6]))
for _, id in ipairs(due) do
  redis.call('ZREM', K_DELAYED, id)
  make_ready(id, false)
end
local head = redis.call('ZRANGE', K_DELAYED, 0, 0, 'WITHSCORES')
local following = '-1'
if #head > 0 then following = head[2] end
return {#due, following, tostring(now)}
"""
)

# ARGV[6] task id. Returns the message of a waiting or delayed task it removed, or nil.
CANCEL = (
    _BROKER_COMMON
    + r"""
local id = ARGV[6]
local body = redis.call('HGET', K_MSG, id)
if not body or redis.call('ZSCORE', K_LEASES, id) then return false end
local ex = lane_of(id)
redis.call('ZREM', READY .. ex, id)
redis.call('ZREM', K_DELAYED, id)
forget(id)
if_idle()
room()
return body
"""
)

# Backend. KEYS: the status indexes (every status). ARGV[1] record prefix, ARGV[2] state
# prefix, ARGV[3] status-index prefix, ARGV[4] completion channel, ARGV[5] updates channel
# ('' for none), ARGV[6] TTL ms of finished records (0: none), ARGV[7] '1' to publish even
# without subscribers on this server (a cluster: PUBSUB NUMSUB counts one node's
# subscribers, the others' are not seen), else '0'; then per record: id, JSON,
# status, fence ('' for none, 'new' to write only a record that does not exist yet, 'open'
# or 'open:<token>' to write only over an unfinished record), finished ('1'/'0'). The
# state key of a record holds "<fence>|<status>": the highest claim token that wrote it
# and the index it is in. A fenced write whose fence is below the stored one is refused
# (0); so is a write of the stored claim that takes it back to running (a write re-sent
# after a lost connection, landing after the claim's final record) or changes its finished
# outcome; so are a 'new' write of a record that exists and an 'open' write over a
# finished record. Unfinished
# records never expire (SET/MSET without PX drops any earlier TTL). Every stored record is
# published on the updates channel, finished ones also on the completion channel, each
# only while it has subscribers (or any pattern subscription exists, or ARGV[7] is '1'). Several
# writes of one id in a batch (a running and a final record) land as the last one, each
# published; the record's index entry moves once, from the status before the batch to the
# last one.
STORE = r"""
local REC, STATE, STATUS, DONE, UPDATES = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local ttl = tonumber(ARGV[6])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local keys = {}
for i = 8, #ARGV, 5 do keys[#keys + 1] = STATE .. ARGV[i] end
local states = redis.call('MGET', unpack(keys))
-- publish only to channels somebody listens to (a subscriber confirmed before this script
-- gets every message it sends)
local patterns = ARGV[7] == '1' or redis.call('PUBSUB', 'NUMPAT') > 0
if UPDATES ~= '' and not patterns and redis.call('PUBSUB', 'NUMSUB', UPDATES)[2] == 0 then
  UPDATES = ''
end
local notify = patterns or redis.call('PUBSUB', 'NUMSUB', DONE)[2] > 0
local FINISHED = {success = true, failed = true, cancelled = true}
-- latest: state after this batch's writes so far; origin: the indexed status before them;
-- index: the status to index; plain: id -> JSON written (with latest[id]) by one MSET at
-- the end, false once a later write with a TTL superseded it
local latest, origin, index, order, trim = {}, {}, {}, {}, {}
local plain, plain_order, state_key = {}, {}, {}
local out = {}
for k = 1, #keys do
  local i = 3 + 5 * k
  local id, json, status = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local fence, finished = ARGV[i + 3], ARGV[i + 4]
  local known = latest[id] or states[k]
  local old_fence, old_status = string.match(known or '|', '^(%d*)|(.*)$')
  local ok = 1
  if fence == 'new' then
    if known then ok = 0 end
    fence = ''
  else
    if string.sub(fence, 1, 4) == 'open' then
      -- only over an unfinished record ('open:<token>' is fenced as well)
      if FINISHED[old_status] then ok = 0 end
      fence = string.sub(fence, 6)
    end
    if ok == 1 and fence ~= '' and old_fence ~= '' then
      local stored, mine = tonumber(old_fence), tonumber(fence)
      -- a claim never goes back to running (a re-sent write landing late) and never
      -- changes a finished outcome (a stalled worker whose task was buried meanwhile)
      if stored > mine or (stored == mine and old_status ~= status
          and (status == 'running' or FINISHED[old_status])) then
        ok = 0
      end
    end
  end
  if ok == 1 then
    if fence == '' then fence = old_fence end
    local new_state = fence .. '|' .. status
    if not index[id] then
      order[#order + 1] = id
      origin[id] = old_status
      state_key[id] = keys[k]
    end
    latest[id] = new_state
    index[id] = status
    if ttl > 0 and finished == '1' then
      redis.call('SET', REC .. id, json, 'PX', ttl)
      redis.call('SET', keys[k], new_state, 'PX', ttl)
      if plain[id] then plain[id] = false end
      trim[status] = true
    else
      if plain[id] == nil then plain_order[#plain_order + 1] = id end
      plain[id] = json
    end
    if UPDATES ~= '' then redis.call('PUBLISH', UPDATES, json) end
    if notify and finished == '1' then
      redis.call('PUBLISH', DONE, string.len(id) .. ':' .. id .. json)
    end
  end
  out[#out + 1] = ok
end
local writes = {}
for _, id in ipairs(plain_order) do
  local json = plain[id]
  if json then
    writes[#writes + 1] = REC .. id
    writes[#writes + 1] = json
    writes[#writes + 1] = state_key[id]
    writes[#writes + 1] = latest[id]
  end
end
if #writes > 0 then redis.call('MSET', unpack(writes)) end
-- groups[key] gets the values; names lists the keys in the order they first came
local function add_to(groups, names, key, first, second)
  local list = groups[key]
  if not list then
    list = {}
    groups[key] = list
    names[#names + 1] = key
  end
  list[#list + 1] = first
  if second then list[#list + 1] = second end
end
local adds, statuses, leaving, left = {}, {}, {}, {}
for _, id in ipairs(order) do
  local status, from = index[id], origin[id]
  if from ~= '' and from ~= status then add_to(leaving, left, from, id) end
  add_to(adds, statuses, status, now, id)
end
for _, from in ipairs(left) do redis.call('ZREM', STATUS .. from, unpack(leaving[from])) end
for _, status in ipairs(statuses) do
  redis.call('ZADD', STATUS .. status, unpack(adds[status]))
  if trim[status] then redis.call('ZREMRANGEBYSCORE', STATUS .. status, '-inf', now - ttl) end
end
return out
"""

# KEYS: the status indexes. ARGV[1] record prefix, ARGV[2] state prefix, ARGV[3] task id.
# Returns 1 if a record was removed.
DELETE = r"""
local id = ARGV[3]
local removed = redis.call('DEL', ARGV[1] .. id)
redis.call('DEL', ARGV[2] .. id)
for k = 1, #KEYS do redis.call('ZREM', KEYS[k], id) end
return removed
"""
