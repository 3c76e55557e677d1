-- Helpers shared by every script (prepended to each one by _lua.py).
--
-- The rule these scripts keep: Redis does not undo a script's earlier writes when a
-- later command fails, so every script reads and checks what it needs before its first
-- write, and a bad entry is set aside alone (a dead letter with its reason), never
-- taking other tasks with it. Times come from the server's clock (TIME), never the
-- client's, so that skewed clocks between machines cannot decide leases.

-- The constants (SCALE, PRIORITY_MIN, PRIORITY_MAX, WAKE_TOKENS_MAX, KNOWN,
-- SLOT_PROBE, HISTORY_MAX) and the key builders (key_task(prefix, uuid) and one per
-- key family of keys.FAMILIES) are put in front of this file by _lua.py from keys.py
-- and schemas.py: one definition for Python and Lua. A key is never spelled out here.

-- Read once per call (a call is one atomic step: one moment), then reused: a batch of
-- enqueues or finishes costs one TIME, not one per task. Every function resets it
-- first (see _lua.py).
local clock = nil

local function now_ms()
  if clock then return clock end
  local t = redis.call('TIME')
  clock = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  return clock
end

local function stamp(ms)
  return string.format('%.3f', ms / 1000)
end

local function type_of(key)
  return redis.call('TYPE', key)['ok']
end

-- Refuse (before any write) to work on one of the app's own keys holding another
-- type: an error naming the key beats a half-done step.
local function expect(key, want)
  local t = type_of(key)
  if t ~= 'none' and t ~= want then
    return redis.error_reply('QTASKS_CORRUPT key ' .. key .. ' holds a ' .. t ..
                             ', expected a ' .. want .. ': delete it (DEL ' .. key .. ')')
  end
  return nil
end

local function expect_all(pairs_)
  for i = 1, #pairs_, 2 do
    local err = expect(pairs_[i], pairs_[i + 1])
    if err then return err end
  end
  return nil
end

-- Whether a reply of redis.pcall is an error (the command failed, wrote nothing).
local function failed(reply)
  return type(reply) == 'table' and reply.err ~= nil
end

-- The text of an error raised with error() or by redis.call (a table with err).
local function reason_of(e)
  if type(e) == 'table' then return tostring(e.err or e[1] or '?') end
  return tostring(e)
end

-- Run first by every function (see _lua.py): on a cluster node whose slot of this app
-- is migrating, a key that is not here is refused ("non local key"), so a key that
-- never exists tells, before any write, that the app's keys are split between two
-- nodes. The error reply is TRYAGAIN, which clients wait out like the server's own.
local function unsettled(key)
  local reply = redis.pcall('EXISTS', key .. SLOT_PROBE)
  if failed(reply) then
    return redis.error_reply('TRYAGAIN the app\'s slot is moving between cluster nodes (' ..
                             tostring(reply.err) .. ')')
  end
  return nil
end

-- Status changes (storage_status_changed, app.events()). Every step that moves a task
-- from one status to another tells it to changed(), in order. The caller says what it
-- wants with a last ARGV marker, taken off before the function reads ARGV (see
-- _lua.py): '\1changes:' then 'r' (the changes come back with the reply, for the
-- triggers of the caller's process) or '-', then the capped length of the app's stream
-- (0: none). Without the marker nothing is collected or read. The stream entry is
-- written in the same atomic step as the change: no change is lost or told twice.
local feed = nil

local function feed_begin(argv)
  feed = nil
  local last = argv[#argv]
  if type(last) == 'string' and string.sub(last, 1, 9) == '\1changes:' then
    argv[#argv] = nil
    feed = {ret = string.sub(last, 10, 10) == 'r', max = tonumber(string.sub(last, 11)) or 0,
            list = {}}
  end
end

-- The reply, with the call's changes when they were asked for: {reply, changes}. An
-- error reply passes as it is (they are returned before any write).
local function feed_end(reply)
  local f = feed
  feed = nil
  if not f or not f.ret then return reply end
  if type(reply) == 'table' and reply.err then return reply end
  if reply == nil then reply = false end
  return {reply, f.list}
end

-- `name`, `queue`, `attempt` and `worker` are read from the record (after the write)
-- unless the caller has them at hand.
local function changed(prefix, uuid, previous, status, reason, name, queue, attempt, worker)
  if not feed then return end
  if not name then
    local r = redis.pcall('HMGET', key_task(prefix, uuid), 'task_name', 'queue', 'attempts',
                          'worker')
    if type(r) ~= 'table' or r.err then r = {} end
    name, queue, attempt, worker = r[1], r[2], r[3], r[4]
  end
  name, queue, previous, reason = name or '', queue or '', previous or '', reason or ''
  attempt, worker = tostring(attempt or ''), worker or ''
  if feed.ret then
    feed.list[#feed.list + 1] = {uuid, name, queue, previous, status, reason,
                                 string.format('%d', now_ms()), attempt, worker}
  end
  if feed.max > 0 then
    -- The entry's id is its time (the server's, in ms): no field of its own.
    local key = key_changes(prefix)
    for _ = 1, 2 do
      local added = redis.pcall('XADD', key, 'MAXLEN', '~', feed.max, '*', 'uuid', uuid,
                                'task_name', name, 'queue', queue, 'previous', previous,
                                'status', status, 'reason', reason, 'attempt', attempt,
                                'worker', worker)
      if not failed(added) or type_of(key) == 'stream' then break end
      -- Someone overwrote the stream: replaced, never failing the step it reports.
      redis.call('DEL', key)
    end
  end
end

-- The next FIFO sequence number. A value that is not a number (someone SET it) is
-- replaced: ordering within a priority restarts, nothing stops.
local function next_seq(seq)
  local n = redis.pcall('INCR', seq)
  if failed(n) then
    redis.call('DEL', seq)
    n = redis.call('INCR', seq)
  end
  return n % SCALE
end

local function valid_priority(p)
  p = tonumber(p)
  return p ~= nil and p == math.floor(p) and p >= PRIORITY_MIN and p <= PRIORITY_MAX
end

-- Count a task entering a final status. Live statuses (new, process, retry) are read
-- from the sets themselves, so a corrupt counter can never stop the queue: a counts
-- key of the wrong type is skipped and a field that is not a number starts again.
local function bump(counts, status, n)
  n = n or 1
  if failed(redis.pcall('HINCRBY', counts, status, n)) and type_of(counts) == 'hash' then
    redis.call('HSET', counts, status, n)
  end
end

-- Push onto a list that holds nothing but tokens (wake-ups, done signals): one of the
-- wrong type (someone SET it) is replaced.
local function push_token(key, token)
  local length = redis.pcall('RPUSH', key, token)
  if failed(length) then
    redis.call('DEL', key)
    return redis.call('RPUSH', key, token)
  end
  return length
end

-- What a workflow does when one of its members ends; defined after write_task, which
-- it needs (signal_done, below, calls it for every task that reaches a final status).
local member_ended
-- Frees a limited task's slot (see the limits, below); bury needs it.
local free_slot

-- The indexes of finished tasks the task list pages through (never a scan): one per
-- final status and one per task name, scored by the time the task ended. An entry
-- lives as long as the record: entries older than this task's ttl are trimmed now and
-- then (about one finish in 32), and the reader drops those whose record is gone. An
-- index of the wrong type is skipped: only the list reads it.
--
-- A call that ends many tasks (finish) collects them (index_begin .. index_flush) and
-- writes one ZADD per index: one per task was most of the server time the indexes
-- cost. Outside such a call each entry is written at once.
local index_batch = nil

local function index_add(key, at, uuid, horizon)
  if not index_batch then
    redis.pcall('ZADD', key, at, uuid)
    if horizon then redis.pcall('ZREMRANGEBYSCORE', key, '-inf', horizon) end
    return
  end
  local entry = index_batch[key]
  if not entry then
    entry = {}
    index_batch[key] = entry
  end
  entry[#entry + 1] = at
  entry[#entry + 1] = uuid
  if horizon then entry.horizon = horizon end
end

local function index_flush()
  local batch = index_batch
  index_batch = nil
  if not batch then return end
  for key, entry in pairs(batch) do
    for i = 1, #entry, 4000 do  -- unpack is bounded by Lua's C stack
      redis.pcall('ZADD', key, unpack(entry, i, math.min(i + 3999, #entry)))
    end
    if entry.horizon then redis.pcall('ZREMRANGEBYSCORE', key, '-inf', entry.horizon) end
  end
end

local function index_begin()
  index_flush()  -- a call that failed half-way left its entries: written now
  index_batch = {}
end

local function index_final(prefix, uuid, rec, ttl)
  local status, name = rec.status, rec.task_name
  if not status or not name then return end
  local at = math.floor((tonumber(rec.updated_at) or 0) * 1000)
  if at <= 0 then at = now_ms() end
  local horizon = nil
  if ttl and ttl > 0 and at % 32 == 0 then
    horizon = '(' .. string.format('%d', at - ttl * 1000)
  end
  index_add(key_index_of(prefix, status), at, uuid, horizon)
  index_add(key_index_of_name(prefix, name), at, uuid, horizon)
end

-- Wake the waiters of a task that reached its final status: the token carries the
-- record, so a waiter needs no second read. Only a task someone waits for gets one
-- (`waited`: sent with a timeout, or marked by a wait before it blocked, see
-- watch.lua): for the others the token was a second copy of the record, kept as long
-- as it, that nobody read (about a fifth of a finish's server time).
local DONE_FIELDS = {'status', 'task_name', 'updated_at', 'unique_key', 'unique_until',
                     'waited', 'watched', 'progress', 'wf'}
-- `known`: the DONE_FIELDS as the record holds them now, when the caller read them
-- already (finish does, in the read it makes anyway); else they are read here.
local function signal_done(prefix, uuid, tkey, ttl, known)
  -- The fields every end needs; the whole record only for a waiter's token, a
  -- watcher's stream or a workflow's step (most tasks have none of them).
  local rec = known
  if not rec then
    local got = redis.call('HMGET', tkey, unpack(DONE_FIELDS))
    rec = {}
    for i, field in ipairs(DONE_FIELDS) do
      if got[i] then rec[field] = got[i] end
    end
  end
  if rec.waited or rec.watched or rec.progress or rec.wf then
    local flat = redis.call('HGETALL', tkey)
    rec = {}
    for i = 1, #flat, 2 do rec[flat[i]] = flat[i + 1] end
  end
  if ttl and ttl > 0 then redis.call('EXPIRE', tkey, ttl) end
  if rec.waited then
    local dkey = key_done(prefix, uuid)
    push_token(dkey, cjson.encode(rec))
    if ttl and ttl > 0 then redis.call('EXPIRE', dkey, ttl) end
  end
  index_final(prefix, uuid, rec, ttl)
  if rec.unique_key then
    local ukey = key_unique(prefix, rec.unique_key)
    if redis.pcall('GET', ukey) == uuid then
      local left = math.floor((tonumber(rec.unique_until) or 0) * 1000) - now_ms()
      if left > 0 then redis.call('PEXPIRE', ukey, left) else redis.call('DEL', ukey) end
    end
  end
  if rec.watched or rec.progress then
    -- Someone watches (app.watch): the end goes onto the stream it blocks on.
    local ekey = key_events(prefix, uuid)
    -- pcall: a stream key someone overwrote must not fail the end of the task.
    redis.pcall('XADD', ekey, 'MAXLEN', '~', 100, '*', 'kind', 'final', 'data', cjson.encode(rec))
    redis.pcall('EXPIRE', ekey, (ttl and ttl > 0) and ttl or 86400)
  end
  if rec.wf then member_ended(prefix, uuid, rec) end
end

-- Set a task aside as a dead letter with its reason. A record that is a hash ends
-- `error` (its waiters wake); anything else under its key is left as found. `why` is
-- the change's reason in a word (default: malformed).
local function bury(prefix, uuid, reason, raw, now, why)
  local tkey = key_task(prefix, uuid)
  local lkey = key_dead_letter(prefix, uuid)
  if type_of(lkey) ~= 'hash' then redis.call('DEL', lkey) end
  if failed(redis.pcall('ZADD', key_dead(prefix), now, uuid)) then
    -- An index of ours that someone overwrote: rebuilt from here on.
    redis.call('DEL', key_dead(prefix))
    redis.call('ZADD', key_dead(prefix), now, uuid)
  end
  redis.call('HSET', lkey, 'reason', reason, 'raw', raw or '', 'at', stamp(now))
  redis.call('ZREM', key_running(prefix), uuid)
  if type_of(tkey) == 'hash' then
    local slot = redis.call('HMGET', tkey, 'slot', 'task_name', 'status')
    if slot[1] then free_slot(prefix, uuid, slot[2], now) end
    redis.call('HSET', tkey, 'status', 'error', 'traceback', reason, 'updated_at', stamp(now))
    redis.call('HDEL', tkey, 'claim')
    changed(prefix, uuid, slot[3], 'dead', why or 'malformed')
    bump(key_counts(prefix), 'error')
    -- Kept without a TTL: a dead letter stays until it is requeued or deleted.
    signal_done(prefix, uuid, tkey, nil)
  else
    changed(prefix, uuid, '', 'dead', why or 'malformed', '', '', '', '')
  end
end

-- The fields of a task record, read in one command and checked: returns the values
-- (in the order asked, after status, task_name and priority) and nil, or nil and what
-- is wrong. Reads only.
local function read(tkey, ...)
  local r = redis.pcall('HMGET', tkey, 'status', 'task_name', 'priority', ...)
  if failed(r) then return nil, 'the task record is a ' .. type_of(tkey) .. ', not a hash' end
  if not r[1] and not r[2] and not r[3] and type_of(tkey) == 'none' then
    return nil, 'no task record (deleted, expired or never written)'
  end
  if not r[1] or not KNOWN[r[1]] then
    return nil, 'the task record has an unknown status: ' .. tostring(r[1] or '(none)')
  end
  if not r[2] or r[2] == '' then return nil, 'the task record has no task_name' end
  if not valid_priority(r[3]) then
    return nil, 'the task record has a bad priority: ' .. tostring(r[3] or '(none)')
  end
  return r, nil
end

-- What is wrong with a record about to be queued again, or nil.
local function unfit(tkey)
  local _, bad = read(tkey)
  return bad
end

-- The keys of a named queue: the default queue keeps the names it always had.
local function qkey(prefix, queue)
  if not queue or queue == '' or queue == 'default' then return key_queue(prefix) end
  return key_named_queue(prefix, queue)
end

local function wkey(prefix, queue)
  if not queue or queue == '' or queue == 'default' then return key_wake(prefix) end
  return key_named_wake(prefix, queue)
end

-- A record's `history` (its earlier attempts: a JSON array of objects, see
-- schemas.Attempt) with `entry` added, as the JSON text to write; the oldest entries
-- past HISTORY_MAX are dropped. Reads and writes nothing: a caller computes it before
-- its first write. A field that is not a JSON array (someone wrote it) is replaced,
-- never failing the step that ends an attempt.
local function with_attempt(history, entry)
  local list = nil
  if history and history ~= '' then
    local ok, decoded = pcall(cjson.decode, history)
    -- A JSON object decodes to a table whose keys are all strings: #t is 0.
    if ok and type(decoded) == 'table' and (#decoded > 0 or next(decoded) == nil) then
      list = decoded
    end
  end
  list = list or {}
  list[#list + 1] = entry
  local kept = list
  if #list > HISTORY_MAX then
    kept = {}
    for i = #list - HISTORY_MAX + 1, #list do kept[#kept + 1] = list[i] end
  end
  local ok, text = pcall(cjson.encode, kept)
  -- What it held may not encode again (a number too large for a double): replaced.
  if not ok then text = cjson.encode({entry}) end
  return text
end

-- The first word of an error's "Type: message" line: the reason a change names.
local function error_type(err)
  return string.match(err, '^%s*([^:]-)%s*:') or err
end

-- Queue a checked task again, FIFO behind its own priority, on its own queue, and wake
-- a worker of that queue; the claim it had (if any) ends, so its old holder can no
-- longer finish it.
-- Returns false when the task's queue key holds another type: the task is then set
-- aside (a dead letter naming the key), never dropped between two indexes.
-- `previous` and `why` describe the change (see changed).
local function requeue(prefix, uuid, now, queued_at, previous, why)
  local tkey = key_task(prefix, uuid)
  local r = redis.call('HMGET', tkey, 'priority', 'queue', 'slot', 'task_name')
  if r[3] then
    -- Back in the queue (handed back, or its worker died): its slot is free again.
    redis.call('HDEL', tkey, 'slot')
    free_slot(prefix, uuid, r[4], now)
  end
  local qk = qkey(prefix, r[2])
  local n = next_seq(key_seq(prefix))
  if failed(redis.pcall('ZADD', qk, string.format('%d', tonumber(r[1]) * SCALE + n), uuid)) then
    bury(prefix, uuid, 'its queue key ' .. qk .. ' is a ' .. type_of(qk) ..
         ', not a zset: delete it (DEL ' .. qk .. '), then requeue this dead letter', '', now,
         'corrupt_key')
    return false
  end
  redis.call('HSET', tkey, 'status', 'new', 'updated_at', stamp(now),
             'enqueued_at', stamp(queued_at or now))
  -- The attempt before (if any) is over: its start and end are not this one's.
  redis.call('HDEL', tkey, 'claim', 'eta', 'solo', 'started_at', 'finished_at')
  changed(prefix, uuid, previous, 'new', why)
  push_token(wkey(prefix, r[2]), '1')
  return true
end

-- Limits across all workers (@app.task(concurrency_limit=, rate_limit=)). A task of a
-- limited name holds a slot while it runs: slots:<name>, uuid -> its lease deadline,
-- so a killed worker's slot frees when its lease runs out. A task over the limit waits
-- in parked:<name>, out of its queue (the tasks behind it are claimed as usual); each
-- slot freed queues one parked task again: no polling. Over a rate limit, a task
-- waits in `scheduled` for the next window, like a delayed task.
--
-- A limit key of the wrong type (someone SET it) never fails the step that meets it:
-- a `slots:` key is rebuilt from the running tasks, a `rate:` key restarts its window,
-- and a `parked:` key is set aside as a dead letter named after it (what it held, and
-- why), so only the tasks it held are affected.
local function set_key_aside(prefix, key, want, now)
  local kind = type_of(key)
  local held = ''
  if kind == 'string' then
    held = redis.call('GET', key)
  elseif kind == 'hash' then
    held = cjson.encode(redis.call('HGETALL', key))
  elseif kind == 'set' then
    held = cjson.encode(redis.call('SMEMBERS', key))
  end
  redis.call('DEL', key)
  bury(prefix, string.sub(key, #prefix + 1),
       'the key ' .. key .. ' was a ' .. kind .. ', not a ' .. want .. '; what it held is ' ..
       'kept here and the key was deleted. Tasks it held as parked (status new) are in ' ..
       'no queue: send them again', string.sub(held, 1, 2000), now, 'corrupt_key')
end

local function sound_parked(prefix, name, now)
  local key = key_parked(prefix, name)
  local kind = type_of(key)
  if kind ~= 'none' and kind ~= 'zset' then set_key_aside(prefix, key, 'zset', now) end
end

-- The slots of a limited name, rebuilt from the running tasks that hold one when the
-- key is of the wrong type.
local function sound_slots(prefix, name)
  local key = key_slots(prefix, name)
  local kind = type_of(key)
  if kind == 'none' or kind == 'zset' then return end
  redis.call('DEL', key)
  local running = redis.call('ZRANGE', key_running(prefix), 0, -1, 'WITHSCORES')
  for i = 1, #running, 2 do
    local r = redis.pcall('HMGET', key_task(prefix, running[i]), 'slot', 'task_name')
    if not failed(r) and r[1] and r[2] == name then
      redis.call('ZADD', key, running[i + 1], running[i])
    end
  end
end

local function unpark(prefix, name, count, now)
  local key = key_parked(prefix, name)
  local left = count
  while left > 0 do
    local popped = redis.pcall('ZPOPMIN', key, 1)
    if failed(popped) then
      sound_parked(prefix, name, now)  -- overwritten: set aside, and so now empty
      return
    end
    if #popped == 0 then return end
    local uuid = popped[1]
    -- Cancelled or aborted while it waited: it stays ended, and the slot goes on to
    -- the next one. A record that cannot be queued again is set aside alone.
    local tkey = key_task(prefix, uuid)
    local bad = unfit(tkey)
    if bad then
      bury(prefix, uuid, 'malformed parked task: ' .. bad, '', now)
    elseif redis.call('HGET', tkey, 'status') == 'new' then
      requeue(prefix, uuid, now, nil, 'parked', '')
      left = left - 1
    end
  end
end

free_slot = function(prefix, uuid, name, now)
  if not name then return end
  local key = key_slots(prefix, name)
  local removed = redis.pcall('ZREM', key, uuid)
  if failed(removed) then
    sound_slots(prefix, name)  -- overwritten: rebuilt, then freed as usual
    removed = redis.call('ZREM', key, uuid)
  end
  if removed == 1 then unpark(prefix, name, 1, now) end
end

-- What a task of status `status`, taken out of its queue to end, was waiting as: a
-- `new` one was delayed (`delayed`: it was in `scheduled`) or parked over a limit.
local function waiting_as(prefix, uuid, status, delayed)
  if status ~= 'new' then return status end
  if delayed then return 'delayed' end
  if feed then
    local name = redis.pcall('HGET', key_task(prefix, uuid), 'task_name')
    if type(name) == 'string' and
       type(redis.pcall('ZSCORE', key_parked(prefix, name), uuid)) == 'string' then
      return 'parked'
    end
  end
  return 'new'
end

-- End a task that was never started: status cancel with its reason; waiters wake.
-- Its record expires after `ttl` seconds if given, else after its own `ttl` field.
-- `previous` and `why` describe the change (see changed).
local function cancel(prefix, uuid, tkey, reason, now, ttl, previous, why)
  redis.call('HSET', tkey, 'status', 'cancel', 'cancel_reason', reason,
             'updated_at', stamp(now))
  redis.call('HDEL', tkey, 'claim')
  changed(prefix, uuid, previous, 'cancel', why)
  bump(key_counts(prefix), 'cancel')
  ttl = ttl or tonumber(redis.call('HGET', tkey, 'ttl') or '')
  signal_done(prefix, uuid, tkey, ttl)
end

-- Keep the clock of "a worker reached Redis". Heartbeats renew leases every lease/6,
-- so a gap longer than lease/3 means an outage (or no worker at all): leases could not
-- be renewed, so every lease is granted one full lease from now before its task can
-- count as abandoned. Run first by every script that touches leases, so that whichever
-- worker returns first cannot take the others' tasks.
local function observe(clock, running, now, lease)
  local seen = redis.pcall('GET', clock)  -- a clock of the wrong type reads as never
  local last = (not failed(seen) and tonumber(seen or '0')) or 0
  redis.call('SET', clock, now)
  if now - last > lease / 3 then
    local soon = redis.call('ZRANGEBYSCORE', running, '-inf', now + lease)
    for _, uuid in ipairs(soon) do
      redis.call('ZADD', running, now + lease, uuid)
    end
  end
end

-- Split a task's flat field list: the fields to store, and those read here (queue,
-- due_in and expires_in: ms from now, stored as eta and expires; unique_key, stored,
-- and unique_for: ms, stored as unique_until).
local function split_fields(given)
  local queue, due_in, expires_in, special = nil, nil, nil, false
  local unique_key, unique_for = nil, nil
  for j = 1, #given, 2 do
    local field = given[j]
    if field == 'queue' then
      queue = given[j + 1]
    elseif field == 'due_in' then
      due_in, special = tonumber(given[j + 1]), true
    elseif field == 'expires_in' then
      expires_in, special = tonumber(given[j + 1]) or 0, true
    elseif field == 'unique_key' then
      unique_key = given[j + 1]
    elseif field == 'unique_for' then
      unique_for, special = tonumber(given[j + 1]), true
    end
  end
  -- Most tasks have none of these: their list is stored as it came, not copied.
  if not special then return given, queue, nil, nil, unique_key, nil end
  local fields = {}
  for j = 1, #given, 2 do
    if given[j] ~= 'due_in' and given[j] ~= 'expires_in' and given[j] ~= 'unique_for' then
      fields[#fields + 1] = given[j]
      fields[#fields + 1] = given[j + 1]
    end
  end
  return fields, queue, due_in, expires_in, unique_key, unique_for
end

-- The task holding `unique_key`, or nil when it is free: a holder that ended, past its
-- unique_until, or whose record is gone no longer holds it.
local function unique_holder(prefix, unique_key, now)
  local holder = redis.pcall('GET', key_unique(prefix, unique_key))
  if type(holder) ~= 'string' then return nil end
  local r = redis.pcall('HMGET', key_task(prefix, holder), 'status', 'unique_until')
  if failed(r) or not r[1] then return nil end
  if r[1] ~= 'success' and r[1] ~= 'error' and r[1] ~= 'cancel' then return holder end
  if (tonumber(r[2]) or 0) * 1000 > now then return holder end
  return nil
end

-- Write one new task: its record (`fields`, flat, to store as given, queue included),
-- and its queue entry, or its due time for a task sent with a delay (`due_in` ms;
-- `expires_in` ms: stored as `expires`; times of this server's clock). Returns the
-- wake-up list to push a token on (the caller pushes it: ENQUEUE trims the lists once
-- for a batch), or nil if the uuid already has a record (an enqueue retried after a
-- lost reply adds nothing); or nil and an error reply, before any write, for an index
-- of the wrong type.
local function write_task(prefix, uuid, priority, fields, queue, due_in, expires_in,
                          unique_key, unique_for)
  local tkey = key_task(prefix, uuid)
  if redis.call('EXISTS', tkey) == 1 then return nil, nil end
  local now
  if unique_key then
    now = now_ms()
    local holder = unique_holder(prefix, unique_key, now)
    if holder and holder ~= uuid then return nil, nil, holder end
    if unique_for and unique_for > 0 then
      fields[#fields + 1] = 'unique_until'
      fields[#fields + 1] = stamp(now + unique_for)
    end
  end
  if expires_in then
    now = now or now_ms()
    fields[#fields + 1] = 'expires'
    fields[#fields + 1] = stamp(now + expires_in)
  end
  -- The index entry first: an index of the wrong type fails here, before the record
  -- is written (the record key does not exist, so HSET cannot fail).
  local index, added
  if due_in and due_in > 0 then
    now = now or now_ms()
    index = key_scheduled(prefix)
    added = redis.pcall('ZADD', index, now + due_in, uuid)
    fields[#fields + 1] = 'eta'
    fields[#fields + 1] = stamp(now + due_in)
  else
    -- Queued now: when it became due, for a delayed one (requeue).
    now = now or now_ms()
    fields[#fields + 1] = 'enqueued_at'
    fields[#fields + 1] = stamp(now)
    index = qkey(prefix, queue)
    added = redis.pcall('ZADD', index,
                        string.format('%d', tonumber(priority) * SCALE + next_seq(key_seq(prefix))),
                        uuid)
  end
  if failed(added) then
    return nil, redis.error_reply('QTASKS_CORRUPT key ' .. index .. ' is a ' .. type_of(index) ..
                                  ', expected a zset: delete it')
  end
  -- Created on the server's clock, like every other time of the record (the caller's
  -- own, sent with the fields, is overwritten: the last value of a field wins).
  fields[#fields + 1] = 'created_at'
  fields[#fields + 1] = stamp(now)
  fields[#fields + 1] = 'updated_at'
  fields[#fields + 1] = stamp(now)
  redis.call('HSET', tkey, unpack(fields))
  if feed then
    local name = ''
    for j = 1, #fields, 2 do
      if fields[j] == 'task_name' then name = fields[j + 1] end
    end
    changed(prefix, uuid, '', index == key_scheduled(prefix) and 'delayed' or 'new', '', name,
            queue or '', '0', '')
  end
  if unique_key then
    -- No expiry while the task lives: the step that ends it lets the key go (or keeps
    -- it until unique_until); a holder whose record is gone frees it (unique_holder).
    redis.call('SET', key_unique(prefix, unique_key), uuid)
  end
  if queue and queue ~= 'default' then
    redis.pcall('SADD', key_queues(prefix), queue)  -- only the stats read it
  end
  -- A delayed task wakes an idle worker too: it then sleeps only until the task is due.
  return wkey(prefix, queue), nil
end


-- Workflows (chains, groups, chords). The tree is stored node by node in the hash
-- wf:<id> (field = the node's path: r, r.0, r.0.1 ...; value = JSON: k = t (a task), c
-- (a chain) or g (a group), n = children, f = a task's record fields, p = its
-- priority, i = immutable: the previous result is not passed). A task member's uuid is
-- <id>:<path> and its record carries wf and wfn (the path). The next step starts in the
-- same call that writes the member's final status, so a crash between the two cannot
-- lose or double a step: a member that ends twice (a dead letter requeued) finds its
-- group slot taken (HSETNX) and a chain's next task already written (write_task skips
-- an existing uuid). Results pass as JSON text, concatenated, never decoded here.
-- The workflow's own record task:<id> is `process` until it ends `success` (with
-- the last result) or `error` (naming the member that failed); its waiters wake then.

-- A node of a workflow's tree. A tree that is gone (evicted) or broken raises an
-- error naming the key: member_ended catches it, before the step writes anything of
-- its own, and ends the workflow with that reason.
local function wf_node(prefix, wf, path)
  local key = key_workflow(prefix, wf)
  local text = redis.pcall('HGET', key, path)
  if failed(text) then
    error('its tree ' .. key .. ' is a ' .. type_of(key) .. ', not a hash', 0)
  end
  if not text then
    if type_of(key) == 'none' then
      error('its tree ' .. key .. ' is gone (evicted or deleted; set maxmemory-policy ' ..
            'noeviction so that Redis keeps it)', 0)
    end
    error('its tree ' .. key .. ' has no node ' .. path, 0)
  end
  local ok, node = pcall(cjson.decode, text)
  if not ok or type(node) ~= 'table' then
    error('its tree ' .. key .. ' holds a node ' .. path .. ' that is not a JSON object', 0)
  end
  return node
end

-- Track a workflow's members still to end (the set :live): a set of the wrong type is
-- rebuilt from here on, never failing the step that writes it.
local function wf_live(prefix, wf, op, uuid)
  local live = key_workflow_live(prefix, wf)
  if failed(redis.pcall(op, live, uuid)) then
    redis.call('DEL', live)
    redis.call(op, live, uuid)
  end
end

-- The args JSON array with `first` put in front.
local function with_first(args, first)
  if args == '[]' or args == '' then return '[' .. first .. ']' end
  return '[' .. first .. ',' .. string.sub(args, 2)
end

local function wf_end(prefix, wf, fields, why)
  local tkey = key_task(prefix, wf)
  local now = now_ms()
  fields[#fields + 1] = 'updated_at'
  fields[#fields + 1] = stamp(now)
  redis.call('HSET', tkey, unpack(fields))
  local status = fields[2]
  changed(prefix, wf, 'process', status, why)
  bump(key_counts(prefix), status)
  local ttl = tonumber(redis.call('HGET', tkey, 'ttl') or '')
  signal_done(prefix, wf, tkey, ttl)
  if ttl and ttl > 0 then
    redis.call('EXPIRE', key_workflow(prefix, wf), ttl)
    redis.call('EXPIRE', key_workflow_live(prefix, wf), ttl)
  end
  return now
end

local node_done, wf_fail, start_node

-- Queue a failed workflow's on_error task (path e), once: its uuid is fixed. The node
-- is read from the tree, else from the copy the workflow's record keeps (field wfe),
-- so that a workflow whose tree was evicted still runs its on_error.
local function wf_on_error(prefix, wf, uuid, rec, why)
  local node = nil
  local text = redis.pcall('HGET', key_workflow(prefix, wf), 'e')
  if failed(text) or not text then
    text = redis.pcall('HGET', key_task(prefix, wf), 'wfe')
    if failed(text) then text = nil end
  end
  if text then
    local ok, decoded = pcall(cjson.decode, text)
    if ok and type(decoded) == 'table' and decoded.k == 't' then node = decoded end
  end
  if not node then return end
  start_node(prefix, wf, 'e', cjson.encode({workflow = wf, member = uuid,
    task_name = rec.task_name or '', status = rec.status or '', error = why}), node)
end

-- A step that cannot be queued (`why`): its workflow ends error naming it. The on_error
-- step comes after the workflow ended: then the workflow's record says why it is
-- missing, and the workflow is not ended a second time (it would be counted twice).
local function step_unqueued(prefix, wf, uuid, path, node, why)
  if path ~= 'e' then
    wf_fail(prefix, wf, uuid, {wfn = path, task_name = node.f.task_name, status = 'error'}, why)
    return
  end
  local tkey = key_task(prefix, wf)
  local trace = redis.pcall('HGET', tkey, 'traceback')
  if type(trace) == 'string' then
    redis.pcall('HSET', tkey, 'traceback', trace .. '\non_error was not queued: ' .. why)
  end
end

start_node = function(prefix, wf, path, input, node)
  node = node or wf_node(prefix, wf, path)
  if node.k == 't' then
    local flat, size = {}, nil
    for field, value in pairs(node.f) do
      if field == 'args' and input and not node.i then
        value = with_first(value, input)
        size = #value + #(node.f.kwargs or '')
      end
      flat[#flat + 1] = field
      flat[#flat + 1] = value
    end
    local uuid = wf .. ':' .. path
    if size and node.m and size > node.m then
      -- The previous step's result made the arguments too large: the workflow ends
      -- saying so, rather than carry it into a record.
      step_unqueued(prefix, wf, uuid, path, node,
                    'its arguments with the result before it take ' .. size ..
                    ' bytes as JSON, over max_payload=' .. node.m ..
                    '; store large results elsewhere and pass a key')
      return
    end
    flat[#flat + 1] = 'wf'
    flat[#flat + 1] = wf
    flat[#flat + 1] = 'wfn'
    flat[#flat + 1] = path
    local fields, queue, due_in, expires_in = split_fields(flat)
    local wake, bad = write_task(prefix, uuid, node.p, fields, queue, due_in, expires_in)
    if bad then
      -- Its queue key holds another type (checked at the start, broken since): the
      -- workflow ends error naming it rather than wait for a step never written.
      step_unqueued(prefix, wf, uuid, path, node,
                    'its step could not be queued: ' .. tostring(bad.err))
      return
    end
    if wake then
      if push_token(wake, '1') > WAKE_TOKENS_MAX then
        redis.call('LTRIM', wake, -WAKE_TOKENS_MAX, -1)  -- a large group: as ENQUEUE does
      end
      -- The on_error task is queued once the workflow has ended: nothing to stop.
      if path ~= 'e' then wf_live(prefix, wf, 'SADD', uuid) end
    end
  elseif node.k == 'c' then
    start_node(prefix, wf, path .. '.0', input)
  elseif node.n == 0 then
    node_done(prefix, wf, path, '[]')
  else
    redis.call('HSET', key_workflow(prefix, wf), path .. '#left', node.n)
    for i = 0, node.n - 1 do start_node(prefix, wf, path .. '.' .. i, input) end
  end
end

node_done = function(prefix, wf, path, result)
  if path == 'r' then
    wf_end(prefix, wf, {'status', 'success', 'returning', result}, '')
    return
  end
  local parent, idx = string.match(path, '^(.*)%.(%d+)$')
  idx = tonumber(idx)
  local up = wf_node(prefix, wf, parent)
  if up.k == 'c' then
    if idx + 1 < up.n then
      start_node(prefix, wf, parent .. '.' .. (idx + 1), result)
    else
      node_done(prefix, wf, parent, result)
    end
    return
  end
  local key = key_workflow(prefix, wf)
  if redis.call('HSETNX', key, parent .. '#' .. idx, result) == 0 then return end
  if redis.call('HINCRBY', key, parent .. '#left', -1) ~= 0 then return end
  -- Read in slices: unpack has a limit of a few thousand values.
  local parts = {}
  for first = 0, up.n - 1, 1000 do
    local fields = {}
    for i = first, math.min(first + 999, up.n - 1) do fields[#fields + 1] = parent .. '#' .. i end
    for _, part in ipairs(redis.call('HMGET', key, unpack(fields))) do parts[#parts + 1] = part end
  end
  node_done(prefix, wf, parent, '[' .. table.concat(parts, ',') .. ']')
end

-- A workflow that ended early: its members still queued, delayed or retrying end
-- cancel with `reason`; with `abort_running`, those running are asked to stop too
-- (their workers learn it at their next heartbeat), else they finish unheeded.
local function wf_stop_members(prefix, wf, reason, now, abort_running)
  local live = key_workflow_live(prefix, wf)
  local members = redis.pcall('SMEMBERS', live)
  if failed(members) then return end  -- a set of the wrong type: nothing known to stop
  for _, member in ipairs(members) do
    local mkey = key_task(prefix, member)
    local r = redis.pcall('HMGET', mkey, 'status', 'queue', 'ttl')
    if failed(r) then
      r = {}
    end
    if r[1] == 'new' or r[1] == 'retry' then
      redis.pcall('ZREM', qkey(prefix, r[2]), member)
      local delayed = redis.pcall('ZREM', key_scheduled(prefix), member) == 1
      redis.call('SREM', live, member)
      cancel(prefix, member, mkey, reason, now, tonumber(r[3] or ''),
             waiting_as(prefix, member, r[1], delayed),
             abort_running and 'aborted' or 'workflow_failed')
    elseif r[1] == 'process' and abort_running then
      redis.call('HSET', mkey, 'abort', reason)
    end
  end
end

-- A member failed (error, a dead letter, cancelled, expired): the workflow ends error
-- naming it, its members still queued are cancelled (running ones finish; their
-- results are dropped), and its on_error task (path e, if any) is queued, once: its
-- uuid is fixed.
wf_fail = function(prefix, wf, uuid, rec, why)
  local now = wf_end(prefix, wf, {'status', 'error', 'traceback',
    'workflow member ' .. (rec.wfn or '?') .. ' (' .. (rec.task_name or '?') .. ', ' .. uuid ..
    ') ended ' .. (rec.status or '?') .. (why ~= '' and (': ' .. why) or ''),
    'failed_member', uuid}, 'member_failed')
  wf_stop_members(prefix, wf, 'workflow ' .. wf .. ' failed', now, false)
  wf_on_error(prefix, wf, uuid, rec, why)
end

-- The nearest group above `path` that settles (takes a failed member's error in its
-- place): the path of its child that holds `path`, or nil.
local function settling(prefix, wf, path)
  local child = path
  while true do
    local parent = string.match(child, '^(.*)%.%d+$')
    if not parent then return nil end
    local up = wf_node(prefix, wf, parent)
    if up.k == 'g' and up.s then return child end
    child = parent
  end
end

-- One member's end, moving its workflow on (see member_ended).
local function wf_step(prefix, uuid, rec)
  local wf = rec.wf
  local key = key_workflow(prefix, wf)
  -- Checked before the first write (HSETNX would make a gone tree a new hash).
  local kind = type_of(key)
  if kind ~= 'hash' then
    error('its tree ' .. key .. (kind == 'none' and
          ' is gone (evicted or deleted; set maxmemory-policy noeviction so that Redis keeps it)'
          or (' is a ' .. kind .. ', not a hash')), 0)
  end
  -- A member counts once: one that ends again (a dead letter requeued and run) must
  -- not start the steps after it a second time.
  if redis.call('HSETNX', key, rec.wfn .. '#ended', '1') == 0 then return end
  if rec.status == 'success' then
    node_done(prefix, wf, rec.wfn, rec.returning or 'null')
    return
  end
  local why = rec.traceback or rec.cancel_reason or ''
  local slot = rec.wfn ~= 'e' and settling(prefix, wf, rec.wfn)
  if slot then
    node_done(prefix, wf, slot, cjson.encode({error = why, status = rec.status or '',
      uuid = uuid, task_name = rec.task_name or ''}))
  else
    wf_fail(prefix, wf, uuid, rec, why)
  end
end

-- A member ended: its workflow moves on. A workflow whose own keys are gone or broken
-- ends error naming the key (and runs its on_error, once), instead of failing the call
-- that ended the member: the member's own end stands, the other tasks of that call
-- complete, and nothing runs again.
member_ended = function(prefix, uuid, rec)
  if not rec.wfn then return end
  local wf = rec.wf
  wf_live(prefix, wf, 'SREM', uuid)
  local status = redis.pcall('HGET', key_task(prefix, wf), 'status')
  -- A workflow record that is gone or not a hash: there is nothing left to end.
  if status ~= 'process' then return end
  local ok, e = pcall(wf_step, prefix, uuid, rec)
  if ok then return end
  local why = 'workflow ' .. wf .. ' cannot go on: ' .. reason_of(e)
  ok, e = pcall(function()
    local now = wf_end(prefix, wf, {'status', 'error', 'traceback', why, 'failed_member', uuid},
                       'workflow_broken')
    wf_stop_members(prefix, wf, why, now, false)
    wf_on_error(prefix, wf, uuid, rec, why)
  end)
  if not ok then
    redis.log(redis.LOG_WARNING, 'qtasks: ' .. why .. '; ending it failed too: ' .. reason_of(e))
  end
end

-- Abort a running workflow (app.abort on its id): it ends cancel with the reason, its
-- queued members are cancelled and its running ones asked to stop (as app.abort does
-- for a task: their workers learn it at their next heartbeat).
local function wf_abort(prefix, wf, reason)
  local now = wf_end(prefix, wf, {'status', 'cancel', 'cancel_reason', reason}, 'aborted')
  wf_stop_members(prefix, wf, reason, now, true)
end
