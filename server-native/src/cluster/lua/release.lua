-- release(node, conn, key, reason): the user of `key` on that connection left.
-- 1 when logged, 0 when that connection did not hold it (already gone, or reaped).
local node, conn, key, reason = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
clock()
local held = redis.call('HGET', KEYS[3], key)
local mine = node .. '\t' .. conn .. '\t'
if not held or string.sub(held, 1, #mine) ~= mine then return 0 end
local _, _, look, name = member(held)
forget(key, look)
log_leave(key, name, reason)
return 1
