-- ENQUEUE: write new tasks (record, queue entry or due time, one wake-up each), all or
-- nothing.
-- KEYS: the default queue (any key of the app: the call's route on a cluster).
-- ARGV: prefix, then either one task flat (uuid, priority, field, value, ...), or a
--       JSON array of [uuid, priority, {field: value}] as the only other argument.
--       Fields read here: queue (default: the default queue); due_in (ms from now: the
--       task waits until then) and expires_in (ms from now: not started by then, it
--       ends cancel 'expired'), both turned into times of the server's clock (eta,
--       expires) and not stored as given.
-- Returns 1 or 0 per task: written, or skipped because its uuid already has a record
-- (an enqueue retried after a lost reply must not add the task a second time).
local prefix = ARGV[1]

local tasks
if #ARGV == 2 then
  tasks = cjson.decode(ARGV[2])
  for _, task in ipairs(tasks) do
    local flat = {}
    for field, value in pairs(task[3]) do
      flat[#flat + 1] = field
      flat[#flat + 1] = value
    end
    task[3] = flat
  end
else
  tasks = {{ARGV[2], ARGV[3], {unpack(ARGV, 4)}}}
end

for _, task in ipairs(tasks) do
  if not valid_priority(task[2]) then
    return redis.error_reply('QTASKS_INPUT task ' .. task[1] .. ' has a bad priority')
  end
end

local now
local written, woken, queues = {}, {}, {}
for i, task in ipairs(tasks) do
  local tkey = prefix .. 'task:' .. task[1]
  written[i] = 0
  if redis.call('EXISTS', tkey) == 0 then
    local fields, queue, due_in = {}, nil, nil
    local given = task[3]
    for j = 1, #given, 2 do
      local field, value = given[j], given[j + 1]
      if field == 'due_in' then
        due_in = tonumber(value)
      elseif field == 'expires_in' then
        now = now or now_ms()
        fields[#fields + 1] = 'expires'
        fields[#fields + 1] = stamp(now + (tonumber(value) or 0))
      else
        if field == 'queue' then queue = value end
        fields[#fields + 1] = field
        fields[#fields + 1] = value
      end
    end
    local wake = wkey(prefix, queue)
    if due_in and due_in > 0 then
      now = now or now_ms()
      local added = redis.pcall('ZADD', prefix .. 'scheduled', now + due_in, task[1])
      if failed(added) then
        return redis.error_reply('QTASKS_CORRUPT key ' .. prefix .. 'scheduled is a ' ..
                                 key_type(prefix .. 'scheduled') .. ', expected a zset: delete it')
      end
      fields[#fields + 1] = 'eta'
      fields[#fields + 1] = stamp(now + due_in)
    else
      local n = next_seq(prefix .. 'seq')
      -- The queue entry first: a queue key of the wrong type fails here, before the
      -- record is written (the record key does not exist, so HSET cannot fail).
      local qk = qkey(prefix, queue)
      local added = redis.pcall('ZADD', qk, string.format('%d', tonumber(task[2]) * SCALE + n),
                                task[1])
      if failed(added) then
        return redis.error_reply('QTASKS_CORRUPT key ' .. qk .. ' is a ' .. key_type(qk) ..
                                 ', expected a zset: delete it')
      end
    end
    redis.call('HSET', tkey, unpack(fields))
    -- A delayed task wakes an idle worker too: it then sleeps only until the task is due.
    woken[wake] = push_token(wake, '1')
    if queue and queue ~= 'default' and not queues[queue] then
      queues[queue] = true
      redis.pcall('SADD', prefix .. 'queues', queue)  -- only the stats read it
    end
    written[i] = 1
  end
end
-- Wake tokens past the number of workers only wake workers that find nothing to claim.
for wake, length in pairs(woken) do
  if length > WAKE_TOKENS_MAX then redis.call('LTRIM', wake, -WAKE_TOKENS_MAX, -1) end
end
return written
