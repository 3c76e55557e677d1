-- HISTORY: add a worker's figures of finished tasks to the app's history (history_add),
-- per 10 s bucket and per minute, and say the server's time, which the worker puts its
-- next figures on.
-- KEYS: one key of the app (its slot: the call runs on the node that holds the app).
-- ARGV: prefix, ttl_s, then a JSON array of two objects {start: {field: n}}: the 10 s
--       buckets' hashes (start: the epoch second their 5 minutes start; field:
--       '<bucket>:<figure>'), then the minutes' (start: the hour's; field:
--       '<minute>:<figure>').
-- Returns the server's time, in ms.
-- A history hash someone overwrote with another type is lost figures, never a failed
-- call: it is deleted and written anew, and the other hashes are kept.
local prefix, ttl = ARGV[1], tonumber(ARGV[2])
local given = cjson.decode(ARGV[3])
local function add(hkey, fields)
  local t = type_of(hkey)
  if t ~= 'none' and t ~= 'hash' then redis.call('DEL', hkey) end
  for field, n in pairs(fields) do
    -- A field holding no number (written by hand) starts again from this figure.
    if failed(redis.pcall('HINCRBY', hkey, field, n)) then redis.call('HSET', hkey, field, n) end
  end
  redis.call('EXPIRE', hkey, ttl)
end
for start, fields in pairs(given[1]) do add(key_history(prefix, start), fields) end
for start, fields in pairs(given[2]) do add(key_history_minutes(prefix, start), fields) end
return now_ms()
