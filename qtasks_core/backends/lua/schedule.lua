-- SCHEDULE: store (or remove) a schedule added at run time, and tell every scheduler
-- by appending to the changes stream their blocking reads wait on, in one step.
-- KEYS: the schedules added at run time (the config hash: name -> definition), the
--       schedule's cursor (hash), the changes stream.
-- ARGV: the schedule's name, its definition ('' to remove it), the entries the stream
--       keeps.
-- Returns 1 if the name had a definition before, else 0. A definition that changes
-- drops the cursor's next tick (its last run stays): the new one starts at its first
-- tick after now, not at a tick of the old one.
local name, definition, keep = ARGV[1], ARGV[2], ARGV[3]
local err = expect_all({KEYS[1], 'hash', KEYS[2], 'hash'})
if err then return err end
local stored = redis.call('HGET', KEYS[1], name)
if definition == '' then
  if not stored then return 0 end
  redis.call('HDEL', KEYS[1], name)
elseif stored == definition then
  return 1  -- the same schedule added again: nothing changes, nobody to wake
else
  redis.call('HSET', KEYS[1], name, definition)
  redis.call('HDEL', KEYS[2], 'next')
end
-- The stream only wakes schedulers: one of another type (someone SET it) is replaced.
local t = type_of(KEYS[3])
if t ~= 'none' and t ~= 'stream' then redis.call('DEL', KEYS[3]) end
redis.call('XADD', KEYS[3], 'MAXLEN', keep, '*', 'name', name)
if stored then return 1 end
return 0
