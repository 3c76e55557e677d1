-- WORKFLOW: start a workflow: its record, its tree and its first tasks, at once.
-- KEYS: the default queue (any key of the app: the call's route on a cluster).
-- ARGV: prefix, workflow id, JSON {field: value} of its record (status process), JSON
--       {path: node as JSON text} (see the workflow helpers in lib.lua).
-- Returns 1 started, 0 already started (a start retried after a lost reply).
local prefix, wf = ARGV[1], ARGV[2]
local tkey = key_task(prefix, wf)
if redis.call('EXISTS', tkey) == 1 then return 0 end
local nodes = cjson.decode(ARGV[4])
-- Every key written below is checked first: a refused start leaves no record behind.
local checks, seen = {key_scheduled(prefix), 'zset', key_workflows(prefix), 'zset',
                      key_workflow(prefix, wf), 'hash', key_workflow_live(prefix, wf), 'set'}, {}
for _, text in pairs(nodes) do
  local node = cjson.decode(text)
  if node.k == 't' then
    local q = qkey(prefix, node.f.queue)
    if not seen[q] then
      seen[q] = true
      checks[#checks + 1] = q
      checks[#checks + 1] = 'zset'
    end
  end
end
local bad = expect_all(checks)
if bad then return bad end
local flat = {}
for field, value in pairs(cjson.decode(ARGV[3])) do
  flat[#flat + 1] = field
  flat[#flat + 1] = value
end
if nodes.e then
  -- A copy of the on_error node: it still runs if the tree is evicted (wf_on_error).
  flat[#flat + 1] = 'wfe'
  flat[#flat + 1] = nodes.e
end
redis.call('HSET', tkey, unpack(flat))
changed(prefix, wf, '', 'process', '')
-- The list of workflows the dashboard pages through, newest first (trimmed as their
-- records expire, like the task list's indexes).
local now = now_ms()
redis.call('ZADD', key_workflows(prefix), now, wf)
local ttl = tonumber(redis.call('HGET', tkey, 'ttl') or '')
if ttl and ttl > 0 and now % 32 == 0 then
  redis.call('ZREMRANGEBYSCORE', key_workflows(prefix), '-inf', '(' .. (now - ttl * 1000 * 2))
end
-- In slices: unpack has a limit of a few thousand values.
local hash = {}
for path, text in pairs(nodes) do
  hash[#hash + 1] = path
  hash[#hash + 1] = text
  if #hash >= 2000 then
    redis.call('HSET', key_workflow(prefix, wf), unpack(hash))
    hash = {}
  end
end
if #hash > 0 then redis.call('HSET', key_workflow(prefix, wf), unpack(hash)) end
start_node(prefix, wf, 'r', nil)
return 1
