//! The Lua scripts that make each primitive of [`RedisKeyStore`](super::RedisKeyStore)
//! atomic on the server.

/// Counts the owner's active keys and inserts the new one only below the limit; when it
/// replaces a key, revokes that key in the same step. Ids of keys that are no longer active
/// leave the active set as they are met, so the work stays bounded by the active keys, not
/// by every key the owner ever had. KEYS: owner set (every id, for listing), record hash,
/// id key, active set. ARGV: record JSON, id, limit, now (ms), key prefix, id not to count
/// or "", digest, replaced id or "", its revocation time (ms) or "", "1" when that
/// revocation is immediate, channel. Returns 1, 0 (limit), -1 (duplicate), -2 (replaced
/// key unknown).
pub(super) const ISSUE: &str = r"
local now = tonumber(ARGV[4])
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
if ARGV[8] ~= '' then
  local old = ARGV[5] .. 'digest:' .. redis.call('GET', ARGV[5] .. 'id:' .. ARGV[8])
  local current = tonumber(redis.call('HGET', old, 'revoked_at'))
  if current == nil or current > tonumber(ARGV[9]) then
    redis.call('HSET', old, 'revoked_at', ARGV[9])
  end
  if ARGV[10] == '1' then redis.call('HSET', old, 'revoked', '1') end
  redis.call('PUBLISH', ARGV[11], ARGV[8])
end
return 1
";

/// Sets `revoked_at` (earlier wins) and, for an immediate revocation, `revoked`, and tells
/// every instance. KEYS: id key. ARGV: key prefix, revocation time (ms), channel, id, "1"
/// when immediate.
pub(super) const REVOKE: &str = r"
local digest = redis.call('GET', KEYS[1])
if not digest then return 0 end
local key = ARGV[1] .. 'digest:' .. digest
if redis.call('EXISTS', key) == 0 then return 0 end
local current = tonumber(redis.call('HGET', key, 'revoked_at'))
if current == nil or current > tonumber(ARGV[2]) then
  redis.call('HSET', key, 'revoked_at', ARGV[2])
end
if ARGV[5] == '1' then redis.call('HSET', key, 'revoked', '1') end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
";

/// Removes a record, its id and its owner-set entries, and tells every instance. KEYS: id
/// key, owner set, active set. ARGV: key prefix, id, channel.
pub(super) const DELETE: &str = r"
local digest = redis.call('GET', KEYS[1])
if not digest then return 0 end
redis.call('DEL', ARGV[1] .. 'digest:' .. digest, KEYS[1])
redis.call('SREM', KEYS[2], ARGV[2])
redis.call('SREM', KEYS[3], ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[2])
return 1
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
