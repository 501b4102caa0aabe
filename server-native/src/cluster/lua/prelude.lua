-- Shared by every script of the room (prepended to each). All time is Redis's own (TIME).
-- KEYS[1] meta (HASH: e epoch, s last message seq, t last script time, o:<node> last origin)
-- KEYS[2] log (STREAM: <seq>-0 message; <seq>-k, k >= 1, joins and leaves after it)
-- KEYS[3] members (HASH: name key -> "node\tconn\tlook\tname")
-- KEYS[4] looks (HASH: look key -> name key)
-- KEYS[5] nodes (ZSET: node -> lease expiry, ms)
-- KEYS[6] sanctions (HASH: "<kind>:<name key>" -> the ban or mute, as JSON)
-- KEYS[7] sanction_ends (ZSET: the same fields -> when each ends, Unix ms)
-- ARGV[1] the freeze threshold (ms): a longer silence than this means Redis was stopped or
--         unreachable for everyone; ARGV[2] the log's length bound (MAXLEN ~).

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The script's time; after a freeze (no script for longer than the threshold), every lease
-- is moved on by the freeze's length, so that a stopped Redis does not expire every node at
-- once when it runs again.
local function clock()
  local now = now_ms()
  local last = tonumber(redis.call('HGET', KEYS[1], 't'))
  if last and now - last > tonumber(ARGV[1]) then
    local shift = now - last
    local nodes = redis.call('ZRANGE', KEYS[5], 0, -1, 'WITHSCORES')
    for i = 1, #nodes, 2 do
      redis.call('ZADD', KEYS[5], tonumber(nodes[i + 1]) + shift, nodes[i])
    end
  end
  redis.call('HSET', KEYS[1], 't', now)
  return now
end

local function live(node, now)
  local lease = redis.call('ZSCORE', KEYS[5], node)
  return lease and tonumber(lease) >= now
end

local function member(value)
  return string.match(value, '^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$')
end

local function last_seq()
  return tonumber(redis.call('HGET', KEYS[1], 's') or '0')
end

local function log_leave(key, name, reason)
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], last_seq() .. '-*',
    't', 'l', 'K', key, 'n', name, 'r', reason)
end

local function forget(key, look)
  redis.call('HDEL', KEYS[3], key)
  if redis.call('HGET', KEYS[4], look) == key then
    redis.call('HDEL', KEYS[4], look)
  end
end

-- Every member of `node` leaves, for `reason`; the node is forgotten.
local function retire(node, reason)
  local all = redis.call('HGETALL', KEYS[3])
  local gone = 0
  for i = 1, #all, 2 do
    local n, _, look, name = member(all[i + 1])
    if n == node then
      forget(all[i], look)
      log_leave(all[i], name, reason)
      gone = gone + 1
    end
  end
  redis.call('ZREM', KEYS[5], node)
  redis.call('HDEL', KEYS[1], 'o:' .. node)
  return gone
end

-- The bans and mutes over at `now` are forgotten, so that the hash holds those in force.
local function drop_over(now)
  local over = redis.call('ZRANGEBYSCORE', KEYS[7], '-inf', now)
  for _, field in ipairs(over) do
    redis.call('HDEL', KEYS[6], field)
  end
  if #over > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', now)
  end
end
