-- PROGRESS: a running task reports how far it got (ctx.set_progress): stored on its
-- record as `progress` and appended to its event stream (events:<uuid>, the last 100
-- kept) that app.watch reads, blocking.
-- KEYS: none (derived from the prefix).
-- ARGV: prefix, uuid, progress as JSON text
-- Returns 1 written, 0 not (the task is not running).
local prefix, uuid = ARGV[1], ARGV[2]
local tkey = prefix .. 'task:' .. uuid
local status = redis.pcall('HGET', tkey, 'status')
if status ~= 'process' then return 0 end
redis.call('HSET', tkey, 'progress', ARGV[3])
local ekey = prefix .. 'events:' .. uuid
redis.call('XADD', ekey, 'MAXLEN', '~', 100, '*', 'kind', 'progress', 'data', ARGV[3])
redis.call('EXPIRE', ekey, 86400)
return 1
