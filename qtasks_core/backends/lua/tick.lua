-- TICK: advance one schedule's cursor and enqueue the tick's task, as one step: however
-- many schedulers race for a tick, exactly one moves the cursor and enqueues.
-- KEYS: the schedule's cursor (hash: next, last; ms), the schedules added at run time
--       (the config hash: name -> definition).
-- ARGV: prefix, expected next ('' when the cursor is new), new next, the tick fired
--       ('' to move the cursor without enqueueing: a skipped tick), the schedule's
--       name, its definition as the scheduler read it ('' for a schedule declared in
--       code: not checked), then the task: uuid, priority, field, value, ...
-- Returns {code, the server's time in ms}, and nothing is written unless code is 1:
--   1 moved (and enqueued, if asked);
--   0 the cursor was not at `expected` (another scheduler moved it first), or the tick
--     is not due yet by this server's clock;
--  -1 the definition is no longer the one stored (the schedule was removed or
--     replaced): a scheduler that has not yet heard of the change fires nothing.
local prefix, expected, new_next, fired = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local name, definition = ARGV[5], ARGV[6]
local now = now_ms()
local err = expect_all({KEYS[1], 'hash', KEYS[2], 'hash'})
if err then return err end
if definition ~= '' and redis.call('HGET', KEYS[2], name) ~= definition then
  return {-1, now}
end
local current = redis.call('HGET', KEYS[1], 'next') or ''
if current ~= expected then return {0, now} end
if fired ~= '' and tonumber(fired) > now then return {0, now} end
if fired ~= '' and not valid_priority(ARGV[8]) then
  return redis.error_reply('QTASKS_INPUT task ' .. ARGV[7] .. ' has a bad priority')
end
if fired ~= '' then
  local fields, queue, due_in, expires_in = split_fields({unpack(ARGV, 9)})
  local wake, bad = write_task(prefix, ARGV[7], ARGV[8], fields, queue, due_in, expires_in)
  if bad then return bad end
  if wake then push_token(wake, '1') end
  redis.call('HSET', KEYS[1], 'last', fired)
end
redis.call('HSET', KEYS[1], 'next', new_next)
return {1, now}
