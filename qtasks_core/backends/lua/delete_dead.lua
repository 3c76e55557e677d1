-- DELETE_DEAD: delete a dead letter (its record stays as it ended, error, until deleted
-- with the finished records).
-- KEYS: the dead letters' index.
-- ARGV: prefix, uuid
-- Returns 1 deleted, 0 not a dead letter.
local prefix, uuid = ARGV[1], ARGV[2]
local err = expect(KEYS[1], 'zset')
if err then return err end
if redis.call('ZREM', KEYS[1], uuid) == 0 then return 0 end
redis.call('DEL', key_dead_letter(prefix, uuid))
changed(prefix, uuid, 'dead', 'deleted', '')
return 1
