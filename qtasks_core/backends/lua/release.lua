-- RELEASE: hand tasks back to the queue unrun (a worker shutting down).
-- KEYS: none (derived from the prefix).
-- ARGV: prefix, then uuid, token, uuid, token, ...
-- Returns the uuids handed back (those whose claim the caller still held).
local prefix = ARGV[1]
local err = expect_all({key_running(prefix), 'zset'})
if err then return err end
local now = now_ms()
local out = {}
for i = 2, #ARGV, 2 do
  local uuid, token = ARGV[i], ARGV[i + 1]
  local tkey = key_task(prefix, uuid)
  local held = redis.pcall('HMGET', tkey, 'claim', 'status')
  if not failed(held) and held[1] == token and held[2] == 'process' and not unfit(tkey)
     and not expect(qkey(prefix, redis.call('HGET', tkey, 'queue')), 'zset')
     and redis.call('ZREM', key_running(prefix), uuid) == 1 then
    -- Handed back unrun: this delivery does not count towards the poison limit.
    local att = tonumber(redis.call('HGET', tkey, 'attempts') or '1') or 1
    redis.call('HSET', tkey, 'attempts', math.max(0, att - 1))
    requeue(prefix, uuid, now, nil, 'process', 'released')
    table.insert(out, uuid)
  end
end
return out
