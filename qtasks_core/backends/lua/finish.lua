-- FINISH: write tasks' final state (or their retry) and end their leases.
-- KEYS: none (derived from the prefix).
-- ARGV: prefix, then a JSON array of [uuid, token, status, ttl_s, delay_ms, {field: value}]
--       (ttl_s / delay_ms are 0 for none). Many tasks per call (concurrent finishes are
--       coalesced); each is checked and written on its own, never failing the others.
-- Returns one code per task: 1 written, 2 already written by this same claim (a finish
-- retried after a lost reply: nothing is counted twice), 0 refused (the caller no
-- longer holds the claim: a late result of a worker whose lease expired).
-- A retry adds the attempt that ended to the record's `history` (see with_attempt).
local prefix = ARGV[1]
local err = expect_all({key_running(prefix), 'zset', key_scheduled(prefix), 'zset'})
if err then return err end
local now = now_ms()
local codes = {}
local ended = {}  -- status -> count: one HINCRBY each for the whole call
index_begin()
-- One task's end. Each item is checked before its first write; what a later step
-- meets (a workflow's tree evicted, a limit key overwritten) is handled there, so a
-- bad item never fails the call: the items before it are written already, and a task
-- whose finish failed would run again.
local function finish_one(uuid, token, status, ttl, delay, fields)
  local tkey = key_task(prefix, uuid)
  -- started_at and history serve a retry only, and signal_done's DONE_FIELDS (after
  -- the 11 fields here) the end; read here all the same, so that a success costs no
  -- second read.
  local held = redis.pcall('HMGET', tkey, 'claim', 'status', 'queue', 'slot', 'task_name',
                           'solo', 'attempts', 'worker', 'abort', 'started_at', 'history',
                           unpack(DONE_FIELDS))
  if failed(held) or held[1] ~= token then return 0 end
  if held[2] ~= 'process' then return 2 end
  local flat = {}
  for field, value in pairs(fields) do
    flat[#flat + 1] = field
    flat[#flat + 1] = value
  end
  if delay > 0 and status == 'retry' then
    -- The attempt that ended is kept: the next one overwrites the record's own fields.
    local err = fields.error ~= '' and fields.error or nil
    flat[#flat + 1] = 'history'
    flat[#flat + 1] = with_attempt(held[11], {
      attempt = tonumber(held[7]) or 0, worker = held[8] or nil,
      started_at = tonumber(held[10]), finished_at = now / 1000,
      error = err, reason = err and error_type(err) or 'retry', delay = delay / 1000})
  end
  flat[#flat + 1] = 'updated_at'
  flat[#flat + 1] = stamp(now)
  flat[#flat + 1] = 'finished_at'
  flat[#flat + 1] = stamp(now)
  redis.call('HSET', tkey, unpack(flat))
  redis.call('ZREM', key_running(prefix), uuid)
  if held[6] then
    -- A suspect that ran alone and lived: it did not kill its worker.
    redis.call('HDEL', tkey, 'suspect', 'solo', 'deaths')
  end
  if held[4] then
    redis.call('HDEL', tkey, 'slot')
    free_slot(prefix, uuid, held[5], now)
  end
  if feed then
    -- An error's reason is its exception type: `error` holds "Type: message".
    local why = ''
    if status == 'cancel' then
      why = held[9] and 'aborted' or 'cancelled'
    elseif fields.error then
      why = error_type(fields.error)
    end
    changed(prefix, uuid, 'process', status, why, held[5], held[3], held[7], held[8])
  end
  if delay > 0 then
    redis.call('ZADD', key_scheduled(prefix), now + delay, uuid)
    -- Wakes an idle worker, which then sleeps only until this task is due.
    push_token(wkey(prefix, held[3]), '1')
  else
    ended[status] = (ended[status] or 0) + 1
    -- The record's DONE_FIELDS after the HSET above: as read, unless just written.
    local known = {}
    for i, field in ipairs(DONE_FIELDS) do
      local value = fields[field]
      if value == nil then value = held[11 + i] end
      if value then known[field] = value end
    end
    known.updated_at = stamp(now)
    signal_done(prefix, uuid, tkey, ttl, known)
  end
  return 1
end

for i, item in ipairs(cjson.decode(ARGV[2])) do
  local ok, code = pcall(finish_one, item[1], item[2], item[3], item[4], item[5], item[6])
  if not ok then
    -- A step after its first write failed: the record says what was written. Told to
    -- the caller as written (it must not run again), and logged by the server.
    redis.log(redis.LOG_WARNING, 'qtasks: finishing ' .. tostring(item[1]) .. ': ' .. reason_of(code))
    code = 1
  end
  codes[i] = code
end
index_flush()
for status, n in pairs(ended) do bump(key_counts(prefix), status, n) end
return codes
