-- HISTORY: add a worker's figures of finished tasks to the app's history, one hash per
-- hour (history_add), and say the server's time, which the worker puts its next
-- figures on.
-- KEYS: one key of the app (its slot: the call runs on the node that holds the app).
-- ARGV: prefix, ttl_s, then a JSON object {hour: {field: n}} (hour: the epoch second the
--       hour starts; field: '<10 s bucket>:<figure>').
-- Returns the server's time, in ms.
-- A history hash someone overwrote with another type is a lost hour of figures, never
-- a failed call: it is deleted and written anew, and the other hours are kept.
local prefix, ttl = ARGV[1], tonumber(ARGV[2])
for hour, fields in pairs(cjson.decode(ARGV[3])) do
  local hkey = key_history(prefix, hour)
  local t = type_of(hkey)
  if t ~= 'none' and t ~= 'hash' then redis.call('DEL', hkey) end
  for field, n in pairs(fields) do
    -- A field holding no number (written by hand) starts again from this figure.
    if failed(redis.pcall('HINCRBY', hkey, field, n)) then redis.call('HSET', hkey, field, n) end
  end
  redis.call('EXPIRE', hkey, ttl)
end
return now_ms()
