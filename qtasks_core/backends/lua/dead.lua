-- DEAD: set a claimed task aside as a dead letter (its message could not be read).
-- KEYS: none (derived from the prefix).
-- ARGV: prefix, uuid, token, reason, raw
-- Returns 1 set aside, 0 not (the caller no longer holds the claim).
local prefix, uuid, token = ARGV[1], ARGV[2], ARGV[3]
local tkey = key_task(prefix, uuid)
local err = expect_all({key_running(prefix), 'zset'})
if err then return err end
local held = redis.pcall('HMGET', tkey, 'claim', 'status')
if failed(held) or held[1] ~= token or held[2] ~= 'process' then
  return 0
end
bury(prefix, uuid, ARGV[4], ARGV[5], now_ms(), 'malformed')
return 1
