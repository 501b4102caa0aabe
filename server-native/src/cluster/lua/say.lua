-- say(node, conn, key, from, text, origin, mute): a public message; `mute` is where the
-- sanctions hash would keep a mute on the sender ("mute:<name key>").
-- {'ok', seq} | {'dup'} (this origin was logged before) | {'notmember'} | {'muted'} (a mute
-- on the sender has not ended: no line ordered after it is heard) | {'lapsed'} | {'noepoch'}
local node, conn, key, from, text, origin = ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local mute = ARGV[9]
local now = clock()
if not redis.call('HGET', KEYS[1], 'e') then return {'noepoch'} end
if not live(node, now) then return {'lapsed'} end
local held = redis.call('HGET', KEYS[3], key)
local mine = node .. '\t' .. conn .. '\t'
if not held or string.sub(held, 1, #mine) ~= mine then return {'notmember'} end
local seen = tonumber(redis.call('HGET', KEYS[1], 'o:' .. node) or '0')
if tonumber(origin) <= seen then return {'dup'} end
local ends = redis.call('ZSCORE', KEYS[7], mute)
if ends and tonumber(ends) > now then return {'muted'} end
redis.call('HSET', KEYS[1], 'o:' .. node, origin)
local seq = redis.call('HINCRBY', KEYS[1], 's', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], seq .. '-0',
  't', 'm', 'n', from, 'x', text, 'o', node .. '\t' .. origin)
return {'ok', seq}
