"""The Lua scripts that make each multi-key step atomic and one round trip.

Keys of one task are derived from the app prefix inside the scripts (a claim cannot
know its uuids in advance); QTasks therefore targets a single Redis/Valkey node or a
primary with replicas, not Redis Cluster.
"""

from __future__ import annotations

from typing import Final

# Shared helper: queue a task again, FIFO behind its own priority.
_REQUEUE: Final = """
local SCALE = 1099511627776
local function requeue(prefix, queue, seq, counts, uuid, from_status, now_s)
  local tkey = prefix .. 'task:' .. uuid
  local pr = redis.call('HGET', tkey, 'priority')
  if not pr then return false end
  local n = redis.call('INCR', seq) % SCALE
  redis.call('ZADD', queue, string.format('%d', tonumber(pr) * SCALE + n), uuid)
  redis.call('HSET', tkey, 'status', 'new', 'updated_at', now_s)
  redis.call('HINCRBY', counts, from_status, -1)
  redis.call('HINCRBY', counts, 'new', 1)
  return true
end
"""

# Shared helper: write one new task (record, queue entry, one wake-up) from the record's
# fields given as field, value, ... in `fields` from index `from`; returns the length of
# the wake-up list, which the caller trims once it is long.
_ADD: Final = """
local SCALE = 1099511627776
local function add(prefix, uuid, priority, fields, from)
  local n = redis.call('INCR', prefix .. 'seq') % SCALE
  redis.call('HSET', prefix .. 'task:' .. uuid, unpack(fields, from))
  redis.call('ZADD', prefix .. 'queue', string.format('%d', priority * SCALE + n), uuid)
  return redis.call('RPUSH', prefix .. 'wake', '1')
end
local function added(prefix, count, woken)
  if woken > 1000 then
    redis.call('LTRIM', prefix .. 'wake', -1000, -1)
  end
  redis.call('HINCRBY', prefix .. 'counts', 'new', count)
  return count
end
"""

# ARGV: prefix, tasks (a JSON array of [uuid, priority, {field: value}])
# Many tasks per call: concurrent enqueues are coalesced into one script run, and the
# short argument list keeps the client's command encoding (the bound on a batch) cheap.
ENQUEUE: Final = (
    _ADD
    + """
local prefix = ARGV[1]
local tasks = cjson.decode(ARGV[2])
local woken = 0
for _, task in ipairs(tasks) do
  local flat = {}
  for field, value in pairs(task[3]) do
    flat[#flat + 1] = field
    flat[#flat + 1] = value
  end
  woken = add(prefix, task[1], task[2], flat, 1)
end
return added(prefix, #tasks, woken)
"""
)

# ARGV: prefix, uuid, priority, then the record as field, value, field, value, ...
# ENQUEUE for one task, the common case of a caller adding tasks one at a time: flat
# arguments spare the JSON decoding and table building (about a quarter of the
# server's time per enqueue).
ENQUEUE_ONE: Final = (
    _ADD
    + """
local woken = add(ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV, 4)
return added(ARGV[1], 1, woken)
"""
)

# Shared helper: keep the clock of "a worker reached Redis". Heartbeats renew leases
# every lease/6, so a gap longer than lease/3 means an outage (or no worker at all):
# leases could not be renewed, so every lease is granted one full lease from now before
# its task can count as abandoned. Run first by every script that touches leases, so
# that whichever worker returns first cannot take the others' tasks.
_OBSERVE: Final = """
local function observe(clock, running, now, lease)
  local last = tonumber(redis.call('GET', clock) or '0') or 0
  redis.call('SET', clock, now)
  if now - last > lease / 3 then
    local soon = redis.call('ZRANGEBYSCORE', running, '-inf', now + lease)
    for _, uuid in ipairs(soon) do
      redis.call('ZADD', running, now + lease, uuid)
    end
  end
end
"""

# KEYS: queue, running, scheduled, wake, counts, seq, dead, clock
# ARGV: prefix, n, now_ms, lease_ms, worker_id, max_attempts
CLAIM: Final = (
    _REQUEUE
    + _OBSERVE
    + """
local prefix, n, now = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local lease, wid, maxatt = tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])
local now_s = string.format('%.3f', now / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 1000)
for _, uuid in ipairs(due) do
  redis.call('ZREM', KEYS[3], uuid)
  requeue(prefix, KEYS[1], KEYS[6], KEYS[5], uuid, 'retry', now_s)
end
local recovered, dead = {}, {}
observe(KEYS[8], KEYS[2], now, lease)
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 1000)
for _, uuid in ipairs(expired) do
  redis.call('ZREM', KEYS[2], uuid)
  local tkey = prefix .. 'task:' .. uuid
  local att = tonumber(redis.call('HGET', tkey, 'attempts') or '0') or 0
  if maxatt > 0 and att >= maxatt then
    local reason = 'set aside after ' .. att .. ' deliveries: its worker died each time'
    redis.call('HSET', tkey, 'status', 'error', 'traceback', reason, 'updated_at', now_s)
    redis.call('HINCRBY', KEYS[5], 'process', -1)
    redis.call('HINCRBY', KEYS[5], 'error', 1)
    redis.call('ZADD', KEYS[7], now, uuid)
    redis.call('HSET', prefix .. 'dead:' .. uuid, 'reason', reason, 'at', now_s)
    redis.call('RPUSH', prefix .. 'done:' .. uuid, '1')
    table.insert(dead, uuid)
  elseif requeue(prefix, KEYS[1], KEYS[6], KEYS[5], uuid, 'process', now_s) then
    table.insert(recovered, uuid)
  end
end
local out = {}
if n > 0 then
  local popped = redis.call('ZPOPMIN', KEYS[1], n)
  for i = 1, #popped, 2 do
    local uuid = popped[i]
    local tkey = prefix .. 'task:' .. uuid
    local r = redis.call('HMGET', tkey, 'status', 'task_name', 'priority', 'args', 'kwargs',
                         'created_at', 'attempts', 'extra', 'retry')
    if not r[2] then
      redis.call('ZADD', KEYS[7], now, uuid)
      redis.call('HSET', prefix .. 'dead:' .. uuid, 'reason',
                 'queued message has no task record (deleted or never written)', 'at', now_s)
      table.insert(dead, uuid)
    elseif r[1] == 'new' then
      local att = (tonumber(r[7]) or 0) + 1
      redis.call('HSET', tkey, 'status', 'process', 'worker', wid, 'attempts', att,
                 'updated_at', now_s)
      redis.call('ZADD', KEYS[2], now + lease, uuid)
      redis.call('HINCRBY', KEYS[5], 'new', -1)
      redis.call('HINCRBY', KEYS[5], 'process', 1)
      table.insert(out, {uuid, r[2], r[3], r[4] or '[]', r[5] or '{}', r[6] or '0',
                         tostring(att), r[8] or '{}', r[9] or ''})
    end
  end
end
if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('DEL', KEYS[4]) end
-- When a claim could next find work without an enqueue: a delayed task falls due, or a
-- lease expires (so an idle worker recovers a dead worker's task on time).
local due = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')[2]
local lease_end = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')[2]
return {out, recovered, dead, due or '', lease_end or ''}
"""
)

# KEYS: running, clock   ARGV: prefix, worker_id, deadline_ms, now_ms, uuid...
EXTEND: Final = (
    _OBSERVE
    + """
observe(KEYS[2], KEYS[1], tonumber(ARGV[4]), tonumber(ARGV[3]) - tonumber(ARGV[4]))
for i = 5, #ARGV do
  local uuid = ARGV[i]
  if redis.call('HGET', ARGV[1] .. 'task:' .. uuid, 'worker') == ARGV[2]
     and redis.call('ZSCORE', KEYS[1], uuid) then
    redis.call('ZADD', KEYS[1], ARGV[3], uuid)
  end
end
return 1
"""
)

# ARGV: prefix, now_ms, finished (a JSON array of [uuid, status, ttl_s, delay_ms, fields];
# ttl_s / delay_ms are 0 for none). Many tasks per call: concurrent finishes are
# coalesced, each task's write is still all or nothing.
FINISH: Final = """
local prefix, now = ARGV[1], tonumber(ARGV[2])
local running, counts = prefix .. 'running', prefix .. 'counts'
local done = 0
for _, item in ipairs(cjson.decode(ARGV[3])) do
  local uuid, status, ttl, delay, fields = item[1], item[2], item[3], item[4], item[5]
  local tkey = prefix .. 'task:' .. uuid
  local prev = redis.call('HGET', tkey, 'status')
  if prev then
    local flat = {}
    for field, value in pairs(fields) do
      flat[#flat + 1] = field
      flat[#flat + 1] = value
    end
    redis.call('HSET', tkey, unpack(flat))
    redis.call('ZREM', running, uuid)
    redis.call('HINCRBY', counts, prev, -1)
    redis.call('HINCRBY', counts, status, 1)
    if delay > 0 then
      redis.call('ZADD', prefix .. 'scheduled', now + delay, uuid)
      -- Wakes an idle worker, which then sleeps only until this task is due.
      redis.call('RPUSH', prefix .. 'wake', '1')
    else
      -- The done token carries the final record, so a waiter needs no second read.
      local dkey = prefix .. 'done:' .. uuid
      local flat, rec = redis.call('HGETALL', tkey), {}
      for i = 1, #flat, 2 do rec[flat[i]] = flat[i + 1] end
      redis.call('RPUSH', dkey, cjson.encode(rec))
      if ttl > 0 then
        redis.call('EXPIRE', tkey, ttl)
        redis.call('EXPIRE', dkey, ttl)
      end
    end
    done = done + 1
  end
end
return done
"""

# KEYS: queue, running, counts, seq, wake   ARGV: prefix, worker_id, now_s, uuid...
RELEASE: Final = (
    _REQUEUE
    + """
local out = {}
for i = 4, #ARGV do
  local uuid = ARGV[i]
  local tkey = ARGV[1] .. 'task:' .. uuid
  if redis.call('HGET', tkey, 'worker') == ARGV[2] and redis.call('ZREM', KEYS[2], uuid) == 1 then
    -- Handed back unrun: this delivery does not count towards the poison limit.
    redis.call('HINCRBY', tkey, 'attempts', -1)
    if requeue(ARGV[1], KEYS[1], KEYS[4], KEYS[3], uuid, 'process', ARGV[3]) then
      redis.call('RPUSH', KEYS[5], '1')
      table.insert(out, uuid)
    end
  end
end
return out
"""
)

# KEYS: task, queue, scheduled, counts, done   ARGV: uuid, ttl_s | '', field, value, ...
UPDATE: Final = """
local prev = redis.call('HGET', KEYS[1], 'status')
if not prev then return 0 end
local status = nil
for i = 3, #ARGV, 2 do
  if ARGV[i] == 'status' then status = ARGV[i + 1] end
end
if status == 'cancel' then
  if prev ~= 'new' and prev ~= 'retry' then return 0 end
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
if status and status ~= prev then
  redis.call('HINCRBY', KEYS[4], prev, -1)
  redis.call('HINCRBY', KEYS[4], status, 1)
  if status == 'success' or status == 'error' or status == 'cancel' then
    redis.call('RPUSH', KEYS[5], '1')
    if ARGV[2] ~= '' then
      redis.call('EXPIRE', KEYS[1], ARGV[2])
      redis.call('EXPIRE', KEYS[5], ARGV[2])
    end
  end
end
return 1
"""

# KEYS: task, queue, seq, wake, counts, dead   ARGV: prefix, uuid, now_s
REQUEUE_DEAD: Final = (
    _REQUEUE
    + """
local prev = redis.call('HGET', KEYS[1], 'status')
if not prev then return 0 end
redis.call('HSET', KEYS[1], 'attempts', 0)
redis.call('HDEL', KEYS[1], 'traceback')
redis.call('PERSIST', KEYS[1])
redis.call('DEL', ARGV[1] .. 'done:' .. ARGV[2])
requeue(ARGV[1], KEYS[2], KEYS[3], KEYS[5], ARGV[2], prev, ARGV[3])
redis.call('ZREM', KEYS[6], ARGV[2])
redis.call('DEL', ARGV[1] .. 'dead:' .. ARGV[2])
redis.call('RPUSH', KEYS[4], '1')
return 1
"""
)
