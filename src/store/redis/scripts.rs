//! The Lua scripts that make each primitive of [`RedisKeyStore`](super::RedisKeyStore)
//! atomic on the server.

/// Counts the owner's active keys and inserts the new one only below the limit; when it
/// replaces a key, revokes that key in the same step. Ids of keys that are no longer active
/// leave the active set as they are met, so the work stays bounded by the active keys, not
/// by every key the owner ever had. KEYS: owner set (every id, for listing), record hash,
/// id key, active set, refused set (sorted by when each id stopped authenticating). ARGV: record JSON, id, limit, now (ms), key prefix, id not to count
/// or "", digest, replaced id or "", its revocation time (ms) or "", "1" when that
/// revocation is immediate, channel, retention (ms, or "" to keep forever). Returns 1, 0
/// (limit), -1 (duplicate), -2 (replaced key unknown). A record that can stop
/// authenticating (an expiry, a revocation) gets a TTL of that time plus retention, on its
/// hash and id key; ids whose records expired leave the owner set here.
pub(super) const ISSUE: &str = r"
local now = tonumber(ARGV[4])
local retention = tonumber(ARGV[12])
-- A record past retention expires with its id key: the backstop for owners who never
-- come back (the owner's own are deleted before each issue).
local function expire(record_key, id_key)
  if not retention then return end
  local fields = redis.call('HMGET', record_key, 'record', 'revoked_at')
  if not fields[1] then return end
  local dead = tonumber(fields[2])
  local expires = cjson.decode(fields[1]).expires_at
  if type(expires) == 'number' and (dead == nil or expires < dead) then dead = expires end
  if dead == nil then return end
  local ttl = string.format('%.0f', math.max(dead + retention - now, 1000))
  redis.call('PEXPIRE', record_key, ttl)
  redis.call('PEXPIRE', id_key, ttl)
end
-- When a record stops authenticating, in the owner's refused set (earlier wins): what
-- the purge before each issue reads.
local function refused(id, at)
  local current = tonumber(redis.call('ZSCORE', KEYS[5], id))
  if current == nil or at < current then
    redis.call('ZADD', KEYS[5], string.format('%.0f', at), id)
  end
end
if ARGV[8] ~= '' and redis.call('SISMEMBER', KEYS[1], ARGV[8]) == 0 then return -2 end
local active = 0
for _, id in ipairs(redis.call('SMEMBERS', KEYS[4])) do
  local live = false
  local digest = redis.call('GET', ARGV[5] .. 'id:' .. id)
  if digest then
    local fields = redis.call('HMGET', ARGV[5] .. 'digest:' .. digest, 'record', 'revoked_at', 'revoked')
    if fields[1] then
      local expires = cjson.decode(fields[1]).expires_at
      local revoked_at = tonumber(fields[2])
      local revoked = fields[3] == '1' or (revoked_at ~= nil and revoked_at <= now)
      local expired = type(expires) == 'number' and expires <= now
      live = not revoked and not expired
    end
  end
  if not live then
    redis.call('SREM', KEYS[4], id)
  elseif id ~= ARGV[6] then
    active = active + 1
  end
end
if active >= tonumber(ARGV[3]) then return 0 end
if redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
if redis.call('HSETNX', KEYS[2], 'record', ARGV[1]) == 0 then return -1 end
redis.call('SET', KEYS[3], ARGV[7])
redis.call('SADD', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[4], ARGV[2])
local expires = cjson.decode(ARGV[1]).expires_at
if type(expires) == 'number' then refused(ARGV[2], expires) end
expire(KEYS[2], KEYS[3])
if ARGV[8] ~= '' then
  local old_id = ARGV[5] .. 'id:' .. ARGV[8]
  local old = ARGV[5] .. 'digest:' .. redis.call('GET', old_id)
  local current = tonumber(redis.call('HGET', old, 'revoked_at'))
  if current == nil or current > tonumber(ARGV[9]) then
    redis.call('HSET', old, 'revoked_at', ARGV[9])
  end
  if ARGV[10] == '1' then redis.call('HSET', old, 'revoked', '1') end
  refused(ARGV[8], tonumber(ARGV[9]))
  expire(old, old_id)
  redis.call('PUBLISH', ARGV[11], ARGV[8])
end
return 1
";

/// Sets `revoked_at` (earlier wins) and, for an immediate revocation, `revoked`, and tells
/// every instance; the record and its id key expire retention after the revocation (or
/// the expiry, if earlier). KEYS: id key. ARGV: key prefix, revocation time (ms), channel,
/// id, "1" when immediate, now (ms), retention (ms, or "" to keep forever).
pub(super) const REVOKE: &str = r"
local digest = redis.call('GET', KEYS[1])
if not digest then return 0 end
local key = ARGV[1] .. 'digest:' .. digest
if redis.call('EXISTS', key) == 0 then return 0 end
local current = tonumber(redis.call('HGET', key, 'revoked_at'))
if current == nil or current > tonumber(ARGV[2]) then
  redis.call('HSET', key, 'revoked_at', ARGV[2])
  current = tonumber(ARGV[2])
end
if ARGV[5] == '1' then redis.call('HSET', key, 'revoked', '1') end
local record = cjson.decode(redis.call('HGET', key, 'record'))
local refused = ARGV[1] .. 'refused:' .. record.owner
local score = tonumber(redis.call('ZSCORE', refused, ARGV[4]))
if score == nil or current < score then
  redis.call('ZADD', refused, string.format('%.0f', current), ARGV[4])
end
local retention = tonumber(ARGV[7])
if retention then
  local expires = record.expires_at
  if type(expires) == 'number' and expires < current then current = expires end
  local ttl = string.format('%.0f', math.max(current + retention - tonumber(ARGV[6]), 1000))
  redis.call('PEXPIRE', key, ttl)
  redis.call('PEXPIRE', KEYS[1], ttl)
end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
";

/// Removes a record, its id and its owner-set entries, and tells every instance. KEYS: id
/// key, owner set, active set, refused set. ARGV: key prefix, id, channel.
pub(super) const DELETE: &str = r"
local digest = redis.call('GET', KEYS[1])
if not digest then return 0 end
redis.call('DEL', ARGV[1] .. 'digest:' .. digest, KEYS[1])
redis.call('SREM', KEYS[2], ARGV[2])
redis.call('SREM', KEYS[3], ARGV[2])
redis.call('ZREM', KEYS[4], ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[2])
return 1
";

/// Deletes the owner's records that stopped authenticating before a time: a range of the
/// refused set, so the work is what is deleted, not what the owner holds. Nothing is
/// published: those records were refused already. KEYS: refused set, owner set, active
/// set. ARGV: key prefix, the time (ms). Returns how many were deleted.
pub(super) const PURGE: &str = r"
local purged = 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[2])) do
  local digest = redis.call('GET', ARGV[1] .. 'id:' .. id)
  if digest then
    redis.call('DEL', ARGV[1] .. 'digest:' .. digest, ARGV[1] .. 'id:' .. id)
    purged = purged + 1
  end
  redis.call('SREM', KEYS[2], id)
  redis.call('SREM', KEYS[3], id)
  redis.call('ZREM', KEYS[1], id)
end
return purged
";

/// Sets (`"1"`) or clears the `disabled` field and tells every instance. KEYS: id key.
/// ARGV: key prefix, "1" or "0", channel, id.
pub(super) const SET_DISABLED: &str = r"
local digest = redis.call('GET', KEYS[1])
if not digest then return 0 end
local key = ARGV[1] .. 'digest:' .. digest
if redis.call('EXISTS', key) == 0 then return 0 end
if ARGV[2] == '1' then
  redis.call('HSET', key, 'disabled', '1')
else
  redis.call('HDEL', key, 'disabled')
end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
";

/// Sets `last_used_at` when later than the stored one. KEYS: id key. ARGV: key prefix,
/// time (ms).
pub(super) const TOUCH: &str = r"
local digest = redis.call('GET', KEYS[1])
if not digest then return 0 end
local key = ARGV[1] .. 'digest:' .. digest
if redis.call('EXISTS', key) == 0 then return 0 end
local current = tonumber(redis.call('HGET', key, 'last_used_at'))
if current == nil or current < tonumber(ARGV[2]) then
  redis.call('HSET', key, 'last_used_at', ARGV[2])
end
return 1
";
