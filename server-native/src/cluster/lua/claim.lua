-- claim(node, conn, key, look, name): `name` for connection `conn` of `node`.
-- {'ok'} (logged, or already held by that connection) | {'taken'} | {'looks', holder}
-- | {'lapsed'} (the node's lease ran out: resync first) | {'noepoch'}
local node, conn, key, look, name = ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local now = clock()
if not redis.call('HGET', KEYS[1], 'e') then return {'noepoch'} end
if not live(node, now) then return {'lapsed'} end
local mine = node .. '\t' .. conn .. '\t'
local held = redis.call('HGET', KEYS[3], key)
if held then
  if string.sub(held, 1, #mine) == mine then return {'ok'} end
  local holder = member(held)
  if live(holder, now) then return {'taken'} end
  retire(holder, 'lost')
end
local other = redis.call('HGET', KEYS[4], look)
if other and other ~= key then
  local value = redis.call('HGET', KEYS[3], other)
  if value then
    local holder, _, _, holder_name = member(value)
    if live(holder, now) then return {'looks', holder_name} end
    retire(holder, 'lost')
  end
end
redis.call('HSET', KEYS[3], key, mine .. look .. '\t' .. name)
redis.call('HSET', KEYS[4], look, key)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], last_seq() .. '-*',
  't', 'j', 'K', key, 'n', name, 'o', node, 'c', conn)
return {'ok'}
