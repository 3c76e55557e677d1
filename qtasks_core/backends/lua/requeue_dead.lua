-- REQUEUE_DEAD: queue a dead letter again, as a fresh task under the same uuid.
-- KEYS: none (derived from the prefix).
-- ARGV: prefix, uuid
-- Returns 1 requeued; 0 not a dead letter; -1 a dead letter without a usable record
-- (nothing to run: delete it instead).
local prefix, uuid = ARGV[1], ARGV[2]
local tkey = prefix .. 'task:' .. uuid
local queue = redis.pcall('HGET', tkey, 'queue')
if failed(queue) then queue = nil end
-- Requeued to the queue it was sent to.
local qk = qkey(prefix, queue)
local err = expect_all({prefix .. 'dead', 'zset', qk, 'zset',
                        prefix .. 'running', 'zset', prefix .. 'scheduled', 'zset'})
if err then return err end
-- Only a task that is set aside: never one that is queued, running or finished, which
-- would run twice at once or again.
if not redis.call('ZSCORE', prefix .. 'dead', uuid) then return 0 end
if redis.call('ZSCORE', qk, uuid) or redis.call('ZSCORE', prefix .. 'running', uuid)
   or redis.call('ZSCORE', prefix .. 'scheduled', uuid) then
  return 0
end
local bad = unfit(tkey)
if bad then return -1 end
redis.call('HSET', tkey, 'attempts', 0)
-- A fresh task: an expiry that has passed would cancel it before it runs.
redis.call('HDEL', tkey, 'traceback', 'returning', 'worker', 'expires', 'abort', 'suspect',
           'deaths')
redis.call('PERSIST', tkey)
redis.call('DEL', prefix .. 'done:' .. uuid)
requeue(prefix, uuid, now_ms(), nil, 'dead', 'requeued')
redis.call('ZREM', prefix .. 'dead', uuid)
redis.call('DEL', prefix .. 'dead:' .. uuid)
return 1
