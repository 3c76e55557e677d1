-- ABORT: stop a task wherever it is. Queued or waiting (delayed, a retry): it ends
-- cancel with the reason now and never runs. Running: the reason is stored as `abort`
-- and the worker holding it learns it at its next heartbeat (EXTEND), stops it and
-- ends it cancel. A workflow ends cancel now, its members queued cancelled and those
-- running asked to stop.
-- KEYS: none (derived from the prefix).
-- ARGV: prefix, uuid, reason, the record's ttl in seconds ('' keeps it)
-- Returns 'cancelled', 'aborting', 'ended' (already final) or 'unknown' (no record).
local prefix, uuid, reason, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local tkey = key_task(prefix, uuid)
if type_of(tkey) ~= 'hash' then return 'unknown' end
local r = redis.call('HMGET', tkey, 'status', 'queue')
local qk = qkey(prefix, r[2])
local err = expect_all({qk, 'zset', key_scheduled(prefix), 'zset'})
if err then return err end
if r[1] == 'new' or r[1] == 'retry' then
  redis.call('ZREM', qk, uuid)
  local delayed = redis.call('ZREM', key_scheduled(prefix), uuid) == 1
  cancel(prefix, uuid, tkey, reason, now_ms(), ttl, waiting_as(prefix, uuid, r[1], delayed),
         'aborted')
  return 'cancelled'
end
if r[1] == 'process' then
  if redis.call('HGET', tkey, 'workflow') == '1' then
    wf_abort(prefix, uuid, reason)  -- a workflow: no worker holds it; it ends here
    return 'cancelled'
  end
  redis.call('HSET', tkey, 'abort', reason)
  return 'aborting'
end
return 'ended'
