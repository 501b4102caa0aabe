-- reap(): every node whose lease ran out is retired, its users written out as lost.
-- The number of users written out.
local now = clock()
local gone = 0
local expired = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', '(' .. now)
for _, node in ipairs(expired) do
  gone = gone + retire(node, 'lost')
end
return gone
