//! The Lua scripts that make each primitive of [`RedisKeyStore`](super::RedisKeyStore)
//! atomic on the server.

/// Counts the owner's active keys and inserts the new one only below the limit; when it
/// replaces a key, schedules that key's revocation in the same step. KEYS: owner set,
/// record hash, id key. ARGV: record JSON, id, limit, now (ms), key prefix, id not to
/// count or "", digest, replaced id or "", its revocation time (ms) or "", channel.
/// Returns 1, 0 (limit), -1 (duplicate), -2 (replaced key unknown).
pub(super) const ISSUE: &str = r"
local now = tonumber(ARGV[4])
if ARGV[8] ~= '' and redis.call('SISMEMBER', KEYS[1], ARGV[8]) == 0 then return -2 end
local active = 0
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if id ~= ARGV[6] then
    local digest = redis.call('GET', ARGV[5] .. 'id:' .. id)
    if digest then
      local fields = redis.call('HMGET', ARGV[5] .. 'digest:' .. digest, 'record', 'revoked_at')
      if fields[1] then
        local expires = cjson.decode(fields[1]).expires_at
        local revoked = tonumber(fields[2])
        local is_revoked = revoked ~= nil and revoked <= now
        local is_expired = type(expires) == 'number' and expires <= now
        if not is_revoked and not is_expired then active = active + 1 end
      end
    end
  end
end
if active >= tonumber(ARGV[3]) then return 0 end
if redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
if redis.call('HSETNX', KEYS[2], 'record', ARGV[1]) == 0 then return -1 end
redis.call('SET', KEYS[3], ARGV[7])
redis.call('SADD', KEYS[1], ARGV[2])
if ARGV[8] ~= '' then
  local old = ARGV[5] .. 'digest:' .. redis.call('GET', ARGV[5] .. 'id:' .. ARGV[8])
  local current = tonumber(redis.call('HGET', old, 'revoked_at'))
  if current == nil or current > tonumber(ARGV[9]) then
    redis.call('HSET', old, 'revoked_at', ARGV[9])
  end
  redis.call('PUBLISH', ARGV[10], ARGV[8])
end
return 1
";

/// Sets `revoked_at` (earlier wins) and tells every instance. KEYS: id key. ARGV: key
/// prefix, revocation time (ms), channel, id.
pub(super) const REVOKE: &str = r"
local digest = redis.call('GET', KEYS[1])
if not digest then return 0 end
local key = ARGV[1] .. 'digest:' .. digest
if redis.call('EXISTS', key) == 0 then return 0 end
local current = tonumber(redis.call('HGET', key, 'revoked_at'))
if current == nil or current > tonumber(ARGV[2]) then
  redis.call('HSET', key, 'revoked_at', ARGV[2])
end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
";

/// Removes a record, its id and its owner-set entry, and tells every instance. KEYS: id
/// key, owner set. ARGV: key prefix, id, channel.
pub(super) const DELETE: &str = r"
local digest = redis.call('GET', KEYS[1])
if not digest then return 0 end
redis.call('DEL', ARGV[1] .. 'digest:' .. digest, KEYS[1])
redis.call('SREM', KEYS[2], ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[2])
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
