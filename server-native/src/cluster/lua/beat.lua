-- beat(node, lease_ms): the node is alive for lease_ms more.
-- {lapsed, epoch, top}: lapsed is 1 when the node had been reaped (its users written out:
-- it must resync and claim them again); epoch '' when the log has none yet; top, the log's
-- last entry id ('0-0' when empty), for spotting a reader that fell behind.
local node, lease = ARGV[3], tonumber(ARGV[4])
local now = clock()
local lapsed = 0
if not redis.call('ZSCORE', KEYS[5], node) then lapsed = 1 end
redis.call('ZADD', KEYS[5], now + lease, node)
local top = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local top_id = '0-0'
if top[1] then top_id = top[1][1] end
return {lapsed, redis.call('HGET', KEYS[1], 'e') or '', top_id}
