-- RECORDS: many task records in one reply (list_tasks, its search, the dashboard). A
-- pipeline of HGETALLs leaves the client one reply per record to take apart, about
-- three times the cost of one reply holding them all.
-- KEYS: the app's queue key (its slot).
-- ARGV: prefix, the number n of fields to read (0: the whole record), those n field
--       names, then the uuids.
-- Returns one array per uuid: empty for no record, or for a key of another type (not a
-- record of ours); else the whole record as a flat field/value array (n = 0), or the
-- n values in the order asked, false where the record has no such field (a record
-- with none of them counts as none). Writes nothing.
local prefix = ARGV[1]
local n = tonumber(ARGV[2]) or 0
local fields = {unpack(ARGV, 3, 2 + n)}
local out = {}
for i = 3 + n, #ARGV do
  local tkey = key_task(prefix, ARGV[i])
  local got
  if n == 0 then
    got = redis.pcall('HGETALL', tkey)
  else
    got = redis.pcall('HMGET', tkey, unpack(fields))
    if not failed(got) then
      local any = false
      for j = 1, n do
        if got[j] then any = true else got[j] = false end
      end
      if not any then got = {} end
    end
  end
  if failed(got) then got = {} end
  out[#out + 1] = got
end
return out
