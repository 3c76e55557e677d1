-- ENQUEUE: write new tasks (record, queue entry, one wake-up each), all or nothing.
-- KEYS: none (derived from the prefix).
-- ARGV: prefix, then either one task flat (uuid, priority, field, value, ...), or a
--       JSON array of [uuid, priority, {field: value}] as the only other argument.
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

local written, woken = {}, 0
for i, task in ipairs(tasks) do
  local tkey = prefix .. 'task:' .. task[1]
  written[i] = 0
  if redis.call('EXISTS', tkey) == 0 then
    local n = next_seq(prefix .. 'seq')
    -- The queue entry first: a queue key of the wrong type fails here, before the
    -- record is written (the record key does not exist, so HSET cannot fail).
    local added = redis.pcall('ZADD', prefix .. 'queue',
                              string.format('%d', tonumber(task[2]) * SCALE + n), task[1])
    if failed(added) then
      return redis.error_reply('QTASKS_CORRUPT key ' .. prefix .. 'queue is a ' ..
                               key_type(prefix .. 'queue') .. ', expected a zset: delete it')
    end
    redis.call('HSET', tkey, unpack(task[3]))
    woken = push_token(prefix .. 'wake', '1')
    written[i] = 1
  end
end
-- Wake tokens past the number of workers only wake workers that find nothing to claim.
if woken > WAKE_TOKENS_MAX then redis.call('LTRIM', prefix .. 'wake', -WAKE_TOKENS_MAX, -1) end
return written
