-- WATCH: a watcher arrives (app.watch): the record is marked `watched`, so the step
-- that ends the task also appends its final state to the event stream; both happen in
-- one server, one after the other, so either the end comes after the mark (and is in
-- the stream) or before it (and this call sees it).
-- KEYS: none (derived from the prefix).
-- ARGV: prefix, uuid
-- Returns the task's status ('' for no such task).
local prefix, uuid = ARGV[1], ARGV[2]
local tkey = key_task(prefix, uuid)
if type_of(tkey) ~= 'hash' then return '' end
local status = redis.call('HGET', tkey, 'status') or ''
if not KNOWN[status] or status == 'success' or status == 'error' or status == 'cancel' then
  return status
end
redis.call('HSET', tkey, 'watched', '1')
return status
