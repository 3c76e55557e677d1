-- PROBE: which of the commands the scripts run is this user refused? Run once when a
-- backend starts, so that a user missing a command learns it then, with the command's
-- name, instead of mid-run from a script that wrote half its work.
-- KEYS: none. ARGV: a key of the app's own to probe with (deleted before returning).
-- Returns the refused commands, lower case.
local key = ARGV[1]
local probes = {
  {'TIME'}, {'TYPE', key}, {'GET', key}, {'SET', key, '0'}, {'INCR', key},
  {'EXISTS', key}, {'EXPIRE', key, '60'}, {'PEXPIRE', key, '60000'}, {'PERSIST', key},
  {'DEL', key},
  {'HSET', key, 'f', '0'}, {'HSETNX', key, 'g', '0'}, {'HGET', key, 'f'},
  {'HMGET', key, 'f'}, {'HGETALL', key}, {'HEXISTS', key, 'f'},
  {'HINCRBY', key, 'f', '1'}, {'HDEL', key, 'f'}, {'DEL', key},
  {'ZADD', key, '0', 'm'}, {'ZSCORE', key, 'm'}, {'ZRANGE', key, '0', '0'},
  {'ZRANGEBYSCORE', key, '-inf', '+inf'}, {'ZCARD', key}, {'ZPOPMIN', key, '1'},
  {'ZRANK', key, 'm'}, {'ZREVRANK', key, 'm'}, {'ZREM', key, 'm'},
  {'ZREMRANGEBYSCORE', key, '-inf', '+inf'}, {'DEL', key},
  {'RPUSH', key, '1'}, {'LTRIM', key, '0', '0'}, {'DEL', key},
  {'SADD', key, 'm'}, {'SMEMBERS', key}, {'SREM', key, 'm'}, {'DEL', key},
  {'XADD', key, 'MAXLEN', '~', '10', '*', 'f', '0'}, {'DEL', key},
}
local refused, seen = {}, {}
for _, probe in ipairs(probes) do
  local reply = redis.pcall(unpack(probe))
  -- Redis 7.2+ and Valkey say NOPERM or "no permissions"; Redis 7.0 "can't run this
  -- command or subcommand".
  if failed(reply) and (string.find(reply.err, 'NOPERM', 1, true)
     or string.find(reply.err, 'no permissions', 1, true)
     or string.find(reply.err, "can't run this command", 1, true)) then
    local name = string.lower(probe[1])
    if not seen[name] then
      seen[name] = true
      table.insert(refused, name)
    end
  end
end
redis.pcall('DEL', key)
return refused
