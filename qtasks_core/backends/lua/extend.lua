-- EXTEND: renew the leases a worker still holds.
-- KEYS: running, clock
-- ARGV: prefix, lease_ms, then uuid, token, uuid, token, ...
-- Returns the uuids whose claim the caller no longer holds (its lease expired and the
-- task was claimed again, or it is gone): the caller stops renewing them. A task this
-- claim has just finished is not lost (a heartbeat may overlap its finish). A task
-- someone asked to abort (app.abort) comes back as {uuid, reason} among them: the
-- worker learns it at its heartbeat, with no read of its own.
local err = expect_all({KEYS[1], 'zset'})
if err then return err end
local prefix, lease = ARGV[1], tonumber(ARGV[2])
local now = now_ms()
observe(KEYS[2], KEYS[1], now, lease)
local lost = {}
for i = 3, #ARGV, 2 do
  local uuid, token = ARGV[i], ARGV[i + 1]
  local tkey = key_task(prefix, uuid)
  local held = redis.pcall('HMGET', tkey, 'claim', 'abort', 'slot', 'task_name')
  if failed(held) or held[1] ~= token then
    table.insert(lost, uuid)
  elseif redis.call('ZSCORE', KEYS[1], uuid) then
    redis.call('ZADD', KEYS[1], now + lease, uuid)
    if held[3] then
      local skey = key_slots(prefix, held[4])
      if failed(redis.pcall('ZADD', skey, now + lease, uuid)) then
        sound_slots(prefix, held[4])  -- overwritten: rebuilt, never failing the renewal
        redis.call('ZADD', skey, now + lease, uuid)
      end
    end
    if held[2] then table.insert(lost, {uuid, held[2]}) end
  end  -- else finished (or waiting for its retry) by this very claim: nothing to renew
end
return lost
