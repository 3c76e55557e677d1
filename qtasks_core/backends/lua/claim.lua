-- CLAIM: queue due delayed tasks and tasks of expired leases again, then claim up to n
-- tasks for one worker, each under a new claim token (the fence: only the holder of
-- the current claim may renew, finish or hand back the task).
-- KEYS: queue, running, scheduled, wake, dead, clock, seq
-- ARGV: prefix, n, lease_ms, worker_id, max_attempts, only_uuid ('' for any), turn,
--       limits (JSON {task_name: {c: concurrency, r: count, p: period_ms}}, '' none),
--       alone ('1': the worker runs nothing now, and runs a suspect alone if it gets
--       one), then the names of the queues to claim from (none: the default queue). Queues
--       take turns one task at a time, starting with the one at index `turn` (mod their
--       number): a full queue cannot starve the others, and a caller that advances
--       `turn` on every claim starts each time with the next.
-- Returns {claimed, recovered, dead, ms until the next due task | '',
--          ms until the first lease ends | '', '1' if a suspect waits for a worker that
--          runs nothing else | ''}; a claimed row is
--          {uuid, task_name, priority, args, kwargs, created_at, attempts, extra, retry, queue,
--          token, '1' if it must run alone | ''}.
--
-- Poison: when a worker dies, the tasks it ran are suspects, since any of them may
-- have killed it (os._exit, a segfault, the OOM killer). A suspect runs alone: it is
-- claimed only by a worker that runs nothing else, and that worker claims nothing more
-- until it ends. Only a death while running alone counts against a task, so the task
-- that kills its process is set aside after max_attempts such deaths, and the tasks
-- that ran beside it never are.
local prefix, n, lease = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local wid, maxatt, only, turn = ARGV[4], tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7]) or 0
local limits = ARGV[8] ~= '' and cjson.decode(ARGV[8]) or nil
local alone = ARGV[9] == '1'
local served = {}
for i = 10, #ARGV do served[#served + 1] = ARGV[i] end
if #served == 0 then served = {'default'} end
-- The indexes that hold tasks must be sound before anything moves; the lists of
-- tokens, the clock and the sequence are repaired where they are met.
local checks = {KEYS[2], 'zset', KEYS[3], 'zset'}
for _, q in ipairs(served) do
  checks[#checks + 1] = qkey(prefix, q)
  checks[#checks + 1] = 'zset'
end
local err = expect_all(checks)
if err then return err end
local now = now_ms()
local recovered, dead = {}, {}
-- The limit keys too, before any task is popped: one of the wrong type is rebuilt or
-- set aside here (see the limits in lib.lua), never met after a pop.
if limits then
  for name, _ in pairs(limits) do
    sound_slots(prefix, name)
    sound_parked(prefix, name, now)
  end
end

-- Delayed tasks (retries) that fell due: queued as of the moment they fell due.
local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'WITHSCORES', 'LIMIT', 0, 1000)
for d = 1, #due, 2 do
  local uuid, due_at = due[d], math.min(tonumber(due[d + 1]) or now, now)
  redis.call('ZREM', KEYS[3], uuid)
  local r, bad = read(key_task(prefix, uuid))
  if bad then
    bury(prefix, uuid, 'malformed delayed task: ' .. bad, '', now, 'malformed')
    table.insert(dead, uuid)
  elseif r[1] == 'retry' or r[1] == 'new' then  -- a retry, or a task sent with a delay
    if not requeue(prefix, uuid, now, due_at, r[1] == 'retry' and 'retry' or 'delayed', '') then
      table.insert(dead, uuid)
    end
  end
end

-- A task whose lease ran out: its worker died (or stopped renewing). Queued again as a
-- suspect, or set aside after max_attempts deaths while it ran alone (see Poison,
-- above). Used by the recovery below and when a claim frees such a task's slot.
local function recover(uuid)
  redis.call('ZREM', KEYS[2], uuid)
  local tkey = key_task(prefix, uuid)
  local r, bad = read(tkey, 'solo', 'deaths', 'attempts', 'worker', 'started_at', 'history')
  if bad then
    bury(prefix, uuid, 'malformed running task: ' .. bad, '', now)
    table.insert(dead, uuid)
    return
  end
  if r[1] ~= 'process' then return end
  -- The attempt its worker left is kept, before the requeue clears its start.
  local history = with_attempt(r[9], {
    attempt = tonumber(r[6]) or 0, worker = r[7] or nil, started_at = tonumber(r[8]),
    finished_at = now / 1000, reason = 'lease_expired'})
  local deaths = tonumber(r[5] or '0') or 0
  if r[4] then
    -- It ran alone and its worker died: this death is its own.
    deaths = deaths + 1
    redis.call('HSET', tkey, 'deaths', deaths)
  else
    redis.call('HSET', tkey, 'suspect', '1')
  end
  if maxatt > 0 and deaths >= maxatt then
    bury(prefix, uuid, 'set aside after its worker process died ' .. deaths ..
         ' times while it ran alone (it kills its process: os._exit, a crash or the ' ..
         'OOM killer?)', '', now, 'poison')
    table.insert(dead, uuid)
  elseif requeue(prefix, uuid, now, nil, 'process', 'lease_expired') then
    redis.call('HSET', tkey, 'history', history)
    table.insert(recovered, uuid)
  else
    table.insert(dead, uuid)
  end
end

-- Leases that ran out. Checked after the outage clock, which first grants every lease
-- a full lease when no worker could reach Redis.
observe(KEYS[6], KEYS[2], now, lease)
for _, uuid in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 1000)) do
  recover(uuid)
end

-- Parked tasks of a limited name with slots free (the task a freed slot queued again
-- never took it: it expired, was cancelled, or went to a worker without the limit):
-- queued again now, so none waits for an end that will not come.
if limits then
  for name, limit in pairs(limits) do
    if limit.c and redis.call('EXISTS', key_parked(prefix, name)) == 1 then
      local free = limit.c - redis.call('ZCOUNT', key_slots(prefix, name), now, '+inf')
      if free > 0 then unpark(prefix, name, free, now) end
    end
  end
end

-- Claim: each entry is read and checked before it is taken, so a bad one is set aside
-- alone and the tasks behind it are claimed as usual.
local out = {}
local isolated = false  -- a suspect was claimed: nothing more in this claim
local suspects_wait = false
local skipped = {}  -- suspects popped by a claim that cannot run them alone
-- The one queue served was found empty (a pop got fewer than asked): no ZCARD for it,
-- unless a slot freed meanwhile put parked tasks back (unparked) or a suspect went back.
local emptied, unparked = false, false
local function take_checked(uuid, score, qk)
  local tkey = key_task(prefix, uuid)
  local r, bad = read(tkey, 'args', 'kwargs', 'created_at', 'attempts', 'extra', 'retry',
                     'expires', 'queue', 'abort', 'suspect')
  if bad then
    local raw = ''
    if type_of(tkey) == 'hash' then raw = cjson.encode(redis.call('HGETALL', tkey)) end
    bury(prefix, uuid, 'malformed message: ' .. bad, string.sub(raw, 1, 2000), now)
    table.insert(dead, uuid)
    return
  end
  if r[1] ~= 'new' then return end  -- cancelled or finished meanwhile: not to be run
  if r[10] and tonumber(r[10]) and tonumber(r[10]) * 1000 <= now then
    cancel(prefix, uuid, tkey, 'expired', now, nil, 'new', 'expired')  -- never runs
    return
  end
  if r[12] then
    -- Aborted while it ran, then handed back or recovered: it does not start again.
    cancel(prefix, uuid, tkey, r[12], now, nil, 'new', 'aborted')
    return
  end
  local solo = nil
  if r[13] and only == '' then
    if not alone or #out > 0 then
      -- Back where it was, after this claim (it would be popped again): a worker that
      -- runs nothing else takes it.
      skipped[#skipped + 1] = {qk, score, uuid}
      suspects_wait = true
      return
    end
    solo = '1'
  end
  local limit = limits and limits[r[2]]
  if limit then
    local skey = key_slots(prefix, r[2])
    if limit.c then
      -- Slots whose lease ran out (a killed worker's) are free: one parked task each.
      -- One whose task still holds a lease (renewed after an outage) is kept. A slot
      -- is fenced like a result: the task whose lease ran out is queued again in the
      -- same step (its claim ends), so a worker that was only paused cannot renew the
      -- slot it lost; it learns at its next heartbeat and stops that run.
      local freed = 0
      for _, held in ipairs(redis.call('ZRANGEBYSCORE', skey, '-inf', now, 'LIMIT', 0, 100)) do
        local deadline = tonumber(redis.call('ZSCORE', KEYS[2], held))
        if deadline and deadline > now then
          redis.call('ZADD', skey, deadline, held)
        else
          -- Past the recovery's bound above, its task is recovered here (its slot
          -- freed with its claim); a slot whose task is gone is freed alone.
          if deadline then recover(held) end
          if redis.call('ZREM', skey, held) == 1 then freed = freed + 1 end
        end
      end
      if freed > 0 then
        unpark(prefix, r[2], freed, now)
        unparked = true  -- parked tasks are back in their queues
      end
      if redis.call('ZCARD', skey) >= limit.c then
        redis.call('ZADD', key_parked(prefix, r[2]), now, uuid)
        changed(prefix, uuid, 'new', 'parked', 'concurrency_limit')
        return
      end
    end
    if limit.r then
      local window = math.floor(now / limit.p)
      local rkey = key_rate(prefix, r[2], window)
      local used = redis.pcall('INCR', rkey)
      if failed(used) then
        -- A window key someone overwrote: the window restarts, nothing stops.
        redis.call('DEL', rkey)
        used = redis.call('INCR', rkey)
      end
      if used == 1 then redis.call('PEXPIRE', rkey, limit.p * 2) end
      if used > limit.r then
        redis.call('ZADD', KEYS[3], (window + 1) * limit.p, uuid)  -- the next window
        changed(prefix, uuid, 'new', 'delayed', 'rate_limit')
        return
      end
    end
    if limit.c then redis.call('ZADD', skey, now + lease, uuid) end
  end
  local att = (tonumber(r[7]) or 0) + 1
  local token = tostring(next_seq(KEYS[7]))
  -- finished_at is emptied in the same command: a retry's earlier end is not this run's.
  redis.call('HSET', tkey, 'status', 'process', 'worker', wid, 'attempts', att,
             'claim', token, 'updated_at', stamp(now), 'started_at', stamp(now), 'finished_at', '')
  if limit and limit.c then redis.call('HSET', tkey, 'slot', '1') end
  if solo then
    redis.call('HSET', tkey, 'solo', '1')
    isolated = true  -- claimed (not parked, not over its rate): nothing joins it
  end
  redis.call('ZADD', KEYS[2], now + lease, uuid)
  changed(prefix, uuid, 'new', 'process', '', r[2], r[11], att, wid)
  table.insert(out, {uuid, r[2], r[3], r[4] or '[]', r[5] or '{}', r[6] or '0',
                     tostring(att), r[8] or '{}', r[9] or '', r[11] or '', token, solo or ''})
end

-- A popped task is never lost: one whose claim fails on data met after the checks
-- above is set aside with the reason, and the claim goes on.
local function take(uuid, score, qk)
  local ok, e = pcall(take_checked, uuid, score, qk)
  if not ok then
    bury(prefix, uuid, 'could not be claimed: ' .. reason_of(e), '', now, 'claim_failed')
    table.insert(dead, uuid)
  end
end

if only ~= '' then
  local q = redis.pcall('HGET', key_task(prefix, only), 'queue')
  if failed(q) then q = nil end
  if redis.call('ZREM', qkey(prefix, q), only) == 1 then take(only) end
elseif #served == 1 then
  local qk = qkey(prefix, served[1])
  -- Bounded: tasks set aside over a limit are not claims, and a queue full of them
  -- must not hold Redis for long.
  local pops = 0
  while #out < n and not isolated and pops < n * 10 + 100 do
    local asked = n - #out
    local popped = redis.call('ZPOPMIN', qk, asked)
    if #popped == 0 then
      emptied = true
      break
    end
    pops = pops + #popped / 2
    for i = 1, #popped, 2 do
      if isolated then
        redis.call('ZADD', qk, popped[i + 1], popped[i])  -- popped with the suspect: back
      else
        take(popped[i], popped[i + 1], qk)
      end
    end
    -- Fewer than asked: the queue is empty (this call is atomic), no second pop needed,
    -- unless a task taken freed a slot that put parked tasks back (then pop again).
    if #popped < asked * 2 and not isolated and not unparked then
      emptied = true
      break
    end
  end
else
  -- One task from each queue in turn, until n are claimed or every queue is empty.
  local live, first = {}, turn % #served
  for i = 0, #served - 1 do live[#live + 1] = qkey(prefix, served[(first + i) % #served + 1]) end
  while #out < n and not isolated and #live > 0 do
    local still = {}
    for _, qk in ipairs(live) do
      if #out >= n or isolated then
        still[#still + 1] = qk
      else
        local popped = redis.call('ZPOPMIN', qk, 1)
        if #popped > 0 then
          take(popped[1], popped[2], qk)
          still[#still + 1] = qk
        end
      end
    end
    live = still
  end
end
-- No wake-up is pushed for them: the requeue that made them suspects pushed one each,
-- and a worker that skipped one waits for its own tasks to end, not for a token.
for _, entry in ipairs(skipped) do redis.call('ZADD', entry[1], entry[2], entry[3]) end
emptied = emptied and not unparked and #skipped == 0
for _, q in ipairs(served) do
  if emptied or redis.call('ZCARD', qkey(prefix, q)) == 0 then
    redis.call('DEL', wkey(prefix, q))
  end
end

-- When a claim could next find work without an enqueue: a delayed task falls due, or a
-- lease ends (so an idle worker recovers a dead worker's task on time).
local function until_first(key)
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')[2]
  if not first then return '' end
  return tostring(math.max(0, (tonumber(first) or now) - now))
end
return {out, recovered, dead, until_first(KEYS[3]), until_first(KEYS[2]),
        suspects_wait and '1' or ''}
