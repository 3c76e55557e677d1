-- EXTEND: renew the leases a worker still holds.
-- KEYS: running, clock
-- ARGV: prefix, lease_ms, then uuid, token, uuid, token, ...
-- Returns the uuids whose claim the caller no longer holds (its lease expired and the
-- task was queued again, or it finished elsewhere): the caller stops running them.
local err = expect_all({KEYS[1], 'zset'})
if err then return err end
local prefix, lease = ARGV[1], tonumber(ARGV[2])
local now = now_ms()
observe(KEYS[2], KEYS[1], now, lease)
local lost = {}
for i = 3, #ARGV, 2 do
  local uuid, token = ARGV[i], ARGV[i + 1]
  local tkey = prefix .. 'task:' .. uuid
  local claim = redis.pcall('HGET', tkey, 'claim')
  if not failed(claim) and claim == token and redis.call('ZSCORE', KEYS[1], uuid) then
    redis.call('ZADD', KEYS[1], now + lease, uuid)
  else
    table.insert(lost, uuid)
  end
end
return lost
