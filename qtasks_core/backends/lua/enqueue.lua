-- ENQUEUE: write new tasks (record, queue entry or due time, one wake-up each), all or
-- nothing.
-- KEYS: the default queue (any key of the app: the call's route on a cluster).
-- ARGV: prefix, then either one task flat (uuid, priority, field, value, ...), or a
--       JSON array of [uuid, priority, {field: value}] as the only other argument.
--       Fields read here: queue (default: the default queue); due_in (ms from now: the
--       task waits until then) and expires_in (ms from now: not started by then, it
--       ends cancel 'expired'), both turned into times of the server's clock (eta,
--       expires) and not stored as given.
-- Returns per task: the server time (ms) it was written at, its created_at; or 0,
-- skipped because its uuid already has a record (an enqueue retried after a lost reply
-- must not add the task a second time); or the uuid of the task that holds the task's
-- unique_key (nothing written).
local prefix = ARGV[1]

-- Each task as {uuid, priority, fields to store, queue, due_in, expires_in}.
local tasks
if #ARGV == 2 then
  tasks = cjson.decode(ARGV[2])
  for _, task in ipairs(tasks) do
    local given = task[3]
    -- Read from the table by name: a batch is not scanned field by field twice.
    local due_in, expires_in = tonumber(given.due_in), tonumber(given.expires_in)
    local unique_for = tonumber(given.unique_for)
    given.due_in, given.expires_in, given.unique_for = nil, nil, nil
    local flat = {}
    for field, value in pairs(given) do
      flat[#flat + 1] = field
      flat[#flat + 1] = value
    end
    task[3], task[4], task[5], task[6] = flat, given.queue, due_in, expires_in
    task[7], task[8] = given.unique_key, unique_for
  end
else
  local fields, queue, due_in, expires_in, unique_key, unique_for = split_fields({unpack(ARGV, 4)})
  tasks = {{ARGV[2], ARGV[3], fields, queue, due_in, expires_in, unique_key, unique_for}}
end

for _, task in ipairs(tasks) do
  if not valid_priority(task[2]) then
    return redis.error_reply('QTASKS_INPUT task ' .. task[1] .. ' has a bad priority')
  end
end

-- Every index the batch writes to is checked first: all or nothing.
local checks, seen = {}, {}
for _, task in ipairs(tasks) do
  local index = (task[5] and task[5] > 0) and key_scheduled(prefix) or qkey(prefix, task[4])
  if not seen[index] then
    seen[index] = true
    checks[#checks + 1] = index
    checks[#checks + 1] = 'zset'
  end
end
local bad = expect_all(checks)
if bad then return bad end

local written, woken = {}, {}
for i, task in ipairs(tasks) do
  local wake, err, holder = write_task(prefix, task[1], task[2], task[3], task[4], task[5],
                                       task[6], task[7], task[8])
  if err then return err end
  written[i] = holder or 0
  if wake then
    woken[wake] = push_token(wake, '1')
    written[i] = now_ms()  -- its created_at: the caller's copy of the task says so too
  end
end
-- Wake tokens past the number of workers only wake workers that find nothing to claim.
for wake, length in pairs(woken) do
  if length > WAKE_TOKENS_MAX then redis.call('LTRIM', wake, -WAKE_TOKENS_MAX, -1) end
end
return written
