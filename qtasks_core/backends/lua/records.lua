-- RECORDS: many task records in one reply (list_tasks, its search, the dashboard). A
-- pipeline of HGETALLs leaves the client one reply per record to take apart, about
-- three times the cost of one reply holding them all.
-- KEYS: the app's queue key (its slot).
-- ARGV: prefix, then the uuids.
-- Returns one flat field/value array per uuid: empty for no record, or for a key of
-- another type (not a record of ours). Writes nothing.
local prefix = ARGV[1]
local out = {}
for i = 2, #ARGV do
  local fields = redis.pcall('HGETALL', key_task(prefix, ARGV[i]))
  if failed(fields) then fields = {} end
  out[i - 1] = fields
end
return out
