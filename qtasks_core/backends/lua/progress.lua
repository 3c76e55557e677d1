-- PROGRESS: a running task reports how far it got (ctx.set_progress): stored on its
-- record as `progress` and appended to its event stream (events:<uuid>, the last 100
-- kept) that app.watch reads, blocking.
-- KEYS: none (derived from the prefix).
-- ARGV: prefix, uuid, progress as JSON text, claim token ('' for any claim)
-- Returns 1 written, 0 not (the task is not running, or runs under another claim: a
-- worker whose lease ran out must not write over the progress of the one that took
-- the task over).
local prefix, uuid, token = ARGV[1], ARGV[2], ARGV[4] or ''
local tkey = key_task(prefix, uuid)
local held = redis.pcall('HMGET', tkey, 'status', 'claim')
if failed(held) or held[1] ~= 'process' then return 0 end
if token ~= '' and held[2] ~= token then return 0 end
redis.call('HSET', tkey, 'progress', ARGV[3])
local ekey = key_events(prefix, uuid)
redis.call('XADD', ekey, 'MAXLEN', '~', 100, '*', 'kind', 'progress', 'data', ARGV[3])
redis.call('EXPIRE', ekey, 86400)
return 1
