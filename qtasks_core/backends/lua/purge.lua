-- PURGE: empty one queue: its tasks end cancel with a reason (their waiters wake).
-- KEYS: the queue.
-- ARGV: prefix, queue name, reason, at most how many (the caller repeats until the
--       queue is empty), the records' ttl in seconds ('' keeps them).
-- Returns how many tasks were cancelled.
local prefix, queue, reason, most = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local ttl = tonumber(ARGV[5])
local qk = qkey(prefix, queue)
local err = expect(qk, 'zset')
if err then return err end
local now = now_ms()
local done = 0
local popped = redis.call('ZPOPMIN', qk, most)
for i = 1, #popped, 2 do
  local uuid = popped[i]
  local tkey = key_task(prefix, uuid)
  local status = redis.pcall('HGET', tkey, 'status')
  if status == 'new' then
    cancel(prefix, uuid, tkey, reason, now, ttl, 'new', 'purged')
    done = done + 1
  end
end
if redis.call('ZCARD', qk) == 0 then redis.call('DEL', wkey(prefix, queue)) end
return done
