-- UPDATE: set fields of an existing record; a `cancel` status also unqueues the task.
-- KEYS: none (derived from the prefix).
-- ARGV: prefix, uuid, ttl_s | '', token | '', field, value, ...
--   With a token, only the holder of that claim may write (a running task's state).
-- Returns 1 written, 0 not (no such record, a cancel of a task that is not queued or
-- waiting for a retry, or a claim the caller no longer holds).
local prefix, uuid, ttl, token = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local tkey = key_task(prefix, uuid)
if type_of(tkey) ~= 'hash' then return 0 end
local qk = qkey(prefix, redis.call('HGET', tkey, 'queue'))
local err = expect_all({qk, 'zset', key_scheduled(prefix), 'zset'})
if err then return err end
if token ~= '' and redis.call('HGET', tkey, 'claim') ~= token then return 0 end
local prev = redis.call('HGET', tkey, 'status')
local status, has_stamp = nil, false
for i = 5, #ARGV, 2 do
  if ARGV[i] == 'status' then status = ARGV[i + 1] end
  if ARGV[i] == 'updated_at' then has_stamp = true end
end
if status and status ~= 'cancel' then
  return redis.error_reply('QTASKS_INPUT only status cancel can be set this way, not '
                           .. status)
end
if status == 'cancel' then
  if prev ~= 'new' and prev ~= 'retry' then return 0 end
  redis.call('ZREM', qk, uuid)
  local delayed = redis.call('ZREM', key_scheduled(prefix), uuid) == 1
  prev = waiting_as(prefix, uuid, prev, delayed)
end
redis.call('HSET', tkey, unpack(ARGV, 5))
if not has_stamp then
  redis.call('HSET', tkey, 'updated_at', stamp(now_ms()))
end
if status == 'cancel' then
  changed(prefix, uuid, prev, 'cancel', 'cancelled')
  bump(key_counts(prefix), 'cancel')
  signal_done(prefix, uuid, tkey, ttl)
end
return 1
