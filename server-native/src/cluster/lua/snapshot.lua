-- snapshot(epoch_seen, seq_seen, count): the room at one instant, for a node that gets in
-- contact. {epoch, seq, top, members (key, value, ...), recent (seq, from, text, ...),
-- sanctions (each ban and mute in force, as JSON)}.
-- Epoch fencing: no log (a Redis that came back empty) starts a new epoch; a log behind what
-- a node has seen in the same epoch (its tail was lost) also starts one, numbering on after
-- the highest number seen, so that no seq is ever given to two messages in one epoch.
-- The bans and mutes are kept through a new epoch: they are what Redis still holds.
local epoch_seen, seq_seen, count = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local now = clock()
local epoch = redis.call('HGET', KEYS[1], 'e')
local seq = last_seq()
if not epoch then
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
  epoch = tostring(now)
  seq = 0
  redis.call('HSET', KEYS[1], 'e', epoch, 's', 0)
elseif epoch == epoch_seen and seq < seq_seen then
  epoch = tostring(math.max(tonumber(epoch) + 1, now))
  seq = seq_seen
  redis.call('HSET', KEYS[1], 'e', epoch, 's', seq)
end
local top = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local top_id = '0-0'
if top[1] then top_id = top[1][1] end
local recent = {}
if count > 0 and seq > 0 then
  local first = math.max(1, seq - count + 1)
  local entries = redis.call('XRANGE', KEYS[2], first .. '-0', seq .. '-0')
  for _, entry in ipairs(entries) do
    local id, fields = entry[1], entry[2]
    local f = {}
    for i = 1, #fields, 2 do f[fields[i]] = fields[i + 1] end
    if f.t == 'm' then
      table.insert(recent, string.match(id, '^(%d+)-'))
      table.insert(recent, f.n)
      table.insert(recent, f.x)
    end
  end
end
drop_over(now)
return {epoch, tostring(seq), top_id, redis.call('HGETALL', KEYS[3]), recent,
  redis.call('HVALS', KEYS[6])}
