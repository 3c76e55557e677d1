-- WATCH: a watcher (app.watch) or a waiter (app.wait) arrives. The record is marked
-- (`watched`: the step that ends the task also appends its final state to the event
-- stream; `waited`: it pushes the done token a waiter blocks on). Both happen in one
-- server, one after the other, so either the end comes after the mark (and is told)
-- or before it (and this call sees it).
-- KEYS: none (derived from the prefix).
-- ARGV: prefix, uuid[, the mark: 'watched' (default) or 'waited']
-- Returns the task's status ('' for no such task).
local prefix, uuid = ARGV[1], ARGV[2]
local mark = ARGV[3] == 'waited' and 'waited' or 'watched'
local tkey = key_task(prefix, uuid)
if type_of(tkey) ~= 'hash' then return '' end
local status = redis.call('HGET', tkey, 'status') or ''
if not KNOWN[status] or status == 'success' or status == 'error' or status == 'cancel' then
  return status
end
redis.call('HSET', tkey, mark, '1')
return status
