-- moderate(node, action, field, until, sanction, kicked, reason): an operator's action, as
-- JSON (`action`), appended to the log for every node to apply in its order. With `field`
-- ("<kind>:<name key>") and `until` (Unix ms), the ban or mute `sanction` (JSON) is kept under
-- it, replacing the one there; with `field` and an empty `until`, the one there is lifted.
-- Those over are dropped. A kick names the key of its user (`kicked`): the user is written out
-- of the room right after the entry (`reason`, kicked), so that the room is rid of them even
-- if their node, out of contact, never applies the entry.
-- {'ok'} | {'lapsed'} (the node's lease ran out: resync first) | {'noepoch'}
local node, action, field, ends, sanction = ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local kicked, reason = ARGV[8], ARGV[9]
local now = clock()
if not redis.call('HGET', KEYS[1], 'e') then return {'noepoch'} end
if not live(node, now) then return {'lapsed'} end
drop_over(now)
if field ~= '' then
  if ends ~= '' then
    redis.call('HSET', KEYS[6], field, sanction)
    redis.call('ZADD', KEYS[7], tonumber(ends), field)
  else
    redis.call('HDEL', KEYS[6], field)
    redis.call('ZREM', KEYS[7], field)
  end
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], last_seq() .. '-*',
  't', 'd', 'x', action, 'o', node)
if kicked ~= '' then
  local held = redis.call('HGET', KEYS[3], kicked)
  if held then
    local _, _, look, name = member(held)
    forget(kicked, look)
    log_leave(kicked, name, reason)
  end
end
return {'ok'}
