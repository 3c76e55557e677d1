-- FINISH: write tasks' final state (or their retry) and end their leases.
-- KEYS: none (derived from the prefix).
-- ARGV: prefix, then a JSON array of [uuid, token, status, ttl_s, delay_ms, {field: value}]
--       (ttl_s / delay_ms are 0 for none). Many tasks per call (concurrent finishes are
--       coalesced); each is checked and written on its own, never failing the others.
-- Returns one code per task: 1 written, 2 already written by this same claim (a finish
-- retried after a lost reply: nothing is counted twice), 0 refused (the caller no
-- longer holds the claim: a late result of a worker whose lease expired).
local prefix = ARGV[1]
local err = expect_all({prefix .. 'running', 'zset', prefix .. 'scheduled', 'zset'})
if err then return err end
local now = now_ms()
local codes = {}
local ended = {}  -- status -> count: one HINCRBY each for the whole call
index_begin()
for i, item in ipairs(cjson.decode(ARGV[2])) do
  local uuid, token, status, ttl, delay, fields = item[1], item[2], item[3], item[4],
                                                    item[5], item[6]
  local tkey = prefix .. 'task:' .. uuid
  local code = 0
  local held = redis.pcall('HMGET', tkey, 'claim', 'status', 'queue', 'slot', 'task_name')
  if not failed(held) and held[1] == token then
    if held[2] == 'process' then
      local flat = {}
      for field, value in pairs(fields) do
        flat[#flat + 1] = field
        flat[#flat + 1] = value
      end
      flat[#flat + 1] = 'updated_at'
      flat[#flat + 1] = stamp(now)
      redis.call('HSET', tkey, unpack(flat))
      redis.call('ZREM', prefix .. 'running', uuid)
      if held[4] then
        redis.call('HDEL', tkey, 'slot')
        free_slot(prefix, uuid, held[5], now)
      end
      if delay > 0 then
        redis.call('ZADD', prefix .. 'scheduled', now + delay, uuid)
        -- Wakes an idle worker, which then sleeps only until this task is due.
        push_token(wkey(prefix, held[3]), '1')
      else
        ended[status] = (ended[status] or 0) + 1
        signal_done(prefix, uuid, tkey, ttl)
      end
      code = 1
    else
      code = 2
    end
  end
  codes[i] = code
end
index_flush()
for status, n in pairs(ended) do bump(prefix .. 'counts', status, n) end
return codes
