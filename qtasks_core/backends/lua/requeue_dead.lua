-- REQUEUE_DEAD: queue a dead letter again, as a fresh task under the same uuid.
-- KEYS: none (derived from the prefix).
-- ARGV: prefix, uuid
-- Returns 1 requeued; 0 not a dead letter; -1 a dead letter without a usable record
-- (nothing to run: delete it instead).
local prefix, uuid = ARGV[1], ARGV[2]
local tkey = key_task(prefix, uuid)
local queue = redis.pcall('HGET', tkey, 'queue')
if failed(queue) then queue = nil end
-- Requeued to the queue it was sent to.
local qk = qkey(prefix, queue)
local err = expect_all({key_dead(prefix), 'zset', qk, 'zset',
                        key_running(prefix), 'zset', key_scheduled(prefix), 'zset'})
if err then return err end
-- Only a task that is set aside: never one that is queued, running or finished, which
-- would run twice at once or again.
if not redis.call('ZSCORE', key_dead(prefix), uuid) then return 0 end
if redis.call('ZSCORE', qk, uuid) or redis.call('ZSCORE', key_running(prefix), uuid)
   or redis.call('ZSCORE', key_scheduled(prefix), uuid) then
  return 0
end
local bad = unfit(tkey)
if bad then return -1 end
redis.call('HSET', tkey, 'attempts', 0)
-- A fresh task: an expiry that has passed would cancel it before it runs.
redis.call('HDEL', tkey, 'traceback', 'returning', 'worker', 'expires', 'abort', 'suspect',
           'deaths')
redis.call('PERSIST', tkey)
redis.call('DEL', key_done(prefix, uuid))
requeue(prefix, uuid, now_ms(), nil, 'dead', 'requeued')
redis.call('ZREM', key_dead(prefix), uuid)
redis.call('DEL', key_dead_letter(prefix, uuid))
return 1
