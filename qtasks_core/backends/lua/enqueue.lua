-- ENQUEUE: write new tasks (record, queue entry, one wake-up each), all or nothing.
-- KEYS: none (derived from the prefix).
-- ARGV: prefix, then either one task flat (uuid, priority, field, value, ...) when
--       ARGV[2] is not '[', or a JSON array of [uuid, priority, {field: value}] in ARGV[2].
-- Returns 1 or 0 per task: written, or skipped because its uuid already has a record
-- (an enqueue retried after a lost reply must not add the task a second time).
local prefix = ARGV[1]
local err = expect_all({prefix .. 'queue', 'zset', prefix .. 'wake', 'list'})
if err then return err end

local tasks
if string.sub(ARGV[2], 1, 1) == '[' then
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
    redis.call('HSET', tkey, unpack(task[3]))
    redis.call('ZADD', prefix .. 'queue', string.format('%d', tonumber(task[2]) * SCALE + n),
               task[1])
    woken = redis.call('RPUSH', prefix .. 'wake', '1')
    written[i] = 1
  end
end
-- Wake tokens past the number of workers only wake workers that find nothing to claim.
if woken > 1000 then redis.call('LTRIM', prefix .. 'wake', -1000, -1) end
return written
