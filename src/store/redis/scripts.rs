//! The Lua scripts that make each primitive of [`RedisKeyStore`](super::RedisKeyStore)
//! atomic on the server.
//!
//! Every key a script touches arrives in `KEYS`, as Redis requires (a cluster routes by
//! them; Dragonfly refuses scripts that touch others). A record's hash is found through
//! its id key, so the client reads the id key first and passes both; the script checks
//! that the id key still names that record (`matches`) before it touches it. Ids are never
//! reused and an id key never changes its record, so a check that fails means the record
//! was deleted meanwhile (not found), or, for the snapshot of an owner's active keys that
//! issuing counts, that the set changed (the client reads again and retries).

/// Counts the owner's active keys and inserts the new one only below the limit; when it
/// replaces a key, revokes that key in the same step. Ids of keys that are no longer active
/// leave the active set as they are met, so the work stays bounded by the active keys, not
/// by every key the owner ever had.
///
/// KEYS: owner set (every id, for listing), record hash, id key, active set, refused set
/// (sorted by when each id stopped authenticating), then an (id key, record hash) pair
/// per id of the active set as the client read it, then, when replacing, the replaced
/// key's pair, and last the index of every id (sorted set, for a scan). ARGV: record JSON, id, limit, now (ms), id not to count or "", replaced id
/// or "", its revocation time (ms) or "", "1" when that revocation is immediate, channel,
/// retention (ms, or "" to keep forever), the replaced key's digest or "", the new key's
/// digest, n (the active ids read), then the n ids and the n digests ("" for an id key
/// that was missing).
///
/// Returns 1, 0 (limit), -1 (duplicate), -2 (replaced key unknown), -3 (at the limit
/// only by keys added since the client read the set: read again). A record that can stop authenticating
/// (an expiry, a revocation) gets a TTL of that time plus retention, on its hash and id
/// key.
pub(crate) const ISSUE: &str = r"
local now = tonumber(ARGV[4])
local retention = tonumber(ARGV[10])
local n = tonumber(ARGV[13])
local function matches(id_key, digest)
  return (redis.call('GET', id_key) or '') == digest
end
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
local old_id, old
if ARGV[6] ~= '' then
  old_id, old = KEYS[6 + 2 * n], KEYS[7 + 2 * n]
  if redis.call('SISMEMBER', KEYS[1], ARGV[6]) == 0 or not matches(old_id, ARGV[11]) then
    return -2
  end
end
-- Members the client read (and whose id key still names the record it read) are checked;
-- members added since are counted as active, which only errs towards the limit.
local unseen = redis.call('SCARD', KEYS[4])
for i = 1, n do
  local id, digest = ARGV[13 + i], ARGV[13 + n + i]
  if redis.call('SISMEMBER', KEYS[4], id) == 1 and matches(KEYS[4 + 2 * i], digest) then
    unseen = unseen - 1
    local live = false
    if digest ~= '' then
      local fields = redis.call('HMGET', KEYS[5 + 2 * i], 'record', 'revoked_at', 'revoked')
      if fields[1] then
        local expires = cjson.decode(fields[1]).expires_at
        local revoked_at = tonumber(fields[2])
        local revoked = fields[3] == '1' or (revoked_at ~= nil and revoked_at <= now)
        local expired = type(expires) == 'number' and expires <= now
        live = not revoked and not expired
      end
    end
    if not live then redis.call('SREM', KEYS[4], id) end
  end
end
local active = redis.call('SCARD', KEYS[4])
if ARGV[5] ~= '' and redis.call('SISMEMBER', KEYS[4], ARGV[5]) == 1 then active = active - 1 end
if active >= tonumber(ARGV[3]) then
  if unseen > 0 then return -3 end
  return 0
end
if redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
if redis.call('HSETNX', KEYS[2], 'record', ARGV[1]) == 0 then return -1 end
redis.call('SET', KEYS[3], ARGV[12])
redis.call('SADD', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[4], ARGV[2])
redis.call('ZADD', KEYS[#KEYS], 0, ARGV[2])
local expires = cjson.decode(ARGV[1]).expires_at
if type(expires) == 'number' then refused(ARGV[2], expires) end
expire(KEYS[2], KEYS[3])
if old then
  local current = tonumber(redis.call('HGET', old, 'revoked_at'))
  if current == nil or current > tonumber(ARGV[7]) then
    redis.call('HSET', old, 'revoked_at', ARGV[7])
  end
  if ARGV[8] == '1' then redis.call('HSET', old, 'revoked', '1') end
  redis.call('HINCRBY', old, 'version', 1)
  refused(ARGV[6], tonumber(ARGV[7]))
  expire(old, old_id)
  redis.call('PUBLISH', ARGV[9], ARGV[6])
end
return 1
";

/// Sets `revoked_at` (earlier wins) and, for an immediate revocation, `revoked` (one
/// version on when either changes), and tells
/// every instance; the record and its id key expire retention after the revocation (or
/// the expiry, if earlier). KEYS: id key, record hash, the owner's refused set. ARGV:
/// digest, revocation time (ms), channel, id, "1" when immediate, now (ms), retention
/// (ms, or "" to keep forever). Returns 1, or 0 when the id names no record.
pub(crate) const REVOKE: &str = r"
if (redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then return 0 end
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
local key = KEYS[2]
local changed = false
local current = tonumber(redis.call('HGET', key, 'revoked_at'))
if current == nil or current > tonumber(ARGV[2]) then
  redis.call('HSET', key, 'revoked_at', ARGV[2])
  current = tonumber(ARGV[2])
  changed = true
end
if ARGV[5] == '1' and redis.call('HGET', key, 'revoked') ~= '1' then
  redis.call('HSET', key, 'revoked', '1')
  changed = true
end
if changed then redis.call('HINCRBY', key, 'version', 1) end
local record = cjson.decode(redis.call('HGET', key, 'record'))
local score = tonumber(redis.call('ZSCORE', KEYS[3], ARGV[4]))
if score == nil or current < score then
  redis.call('ZADD', KEYS[3], string.format('%.0f', current), ARGV[4])
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
/// key, record hash, owner set, active set, refused set, index of every id. ARGV: digest,
/// id, channel.
pub(crate) const DELETE: &str = r"
if (redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2], KEYS[1])
redis.call('SREM', KEYS[3], ARGV[2])
redis.call('SREM', KEYS[4], ARGV[2])
redis.call('ZREM', KEYS[5], ARGV[2])
redis.call('ZREM', KEYS[6], ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[2])
return 1
";

/// Deletes a batch of the owner's records that stopped authenticating before a time (the
/// client reads a range of the refused set and the ids' digests first), so the work is
/// what is deleted, not what the owner holds. Nothing is published: those records were
/// refused already. KEYS: refused set, owner set, active set, then an (id key, record
/// hash) pair per id whose id key named a record, and last the index of every id. ARGV: the time (ms), n (the ids), the n
/// ids, the n digests ("" for none). Each id leaves the sets only while it is still due;
/// its record goes only while its id key still names it. Returns how many were deleted.
pub(crate) const PURGE: &str = r"
local n = tonumber(ARGV[2])
local purged, pair = 0, 0
for i = 1, n do
  local id, digest = ARGV[2 + i], ARGV[2 + n + i]
  local due = tonumber(redis.call('ZSCORE', KEYS[1], id))
  if digest ~= '' then
    pair = pair + 1
  end
  if due ~= nil and due < tonumber(ARGV[1]) then
    if digest ~= '' and (redis.call('GET', KEYS[2 + 2 * pair]) or '') == digest then
      redis.call('DEL', KEYS[3 + 2 * pair], KEYS[2 + 2 * pair])
      purged = purged + 1
    end
    redis.call('SREM', KEYS[2], id)
    redis.call('SREM', KEYS[3], id)
    redis.call('ZREM', KEYS[1], id)
    redis.call('ZREM', KEYS[#KEYS], id)
  end
end
return purged
";

/// Sets (`"1"`) or clears the `disabled` field (one version on when it changes) and tells
/// every instance. KEYS: id key,
/// record hash. ARGV: digest, "1" or "0", channel, id. Returns 1, or 0 when the id names
/// no record.
pub(crate) const SET_DISABLED: &str = r"
if (redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then return 0 end
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
local was = redis.call('HGET', KEYS[2], 'disabled') == '1'
if ARGV[2] == '1' then
  redis.call('HSET', KEYS[2], 'disabled', '1')
else
  redis.call('HDEL', KEYS[2], 'disabled')
end
if was ~= (ARGV[2] == '1') then redis.call('HINCRBY', KEYS[2], 'version', 1) end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
";

/// Sets `last_used_at` when later than the stored one. KEYS: id key, record hash. ARGV:
/// digest, time (ms). Returns 1, or 0 when the id names no record.
pub(crate) const TOUCH: &str = r"
if (redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then return 0 end
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
local current = tonumber(redis.call('HGET', KEYS[2], 'last_used_at'))
if current == nil or current < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[2], 'last_used_at', ARGV[2])
end
return 1
";

/// Replaces a record's settings (its `record` JSON, written by the client with the state
/// fields that live beside it cleared) when its `version` is the expected one, makes the
/// version one more, files the record in the owner's refused set by its new expiry (or
/// takes it out), sets or clears the TTL that follows from it, and tells every instance.
/// KEYS: id key, record hash, the owner's refused set. ARGV: digest, expected version,
/// record JSON, channel, id, now (ms), retention (ms, or "" to keep forever). Returns 1,
/// 0 when the id names no record, -1 when the version is another.
pub(crate) const REPLACE: &str = r"
if (redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then return 0 end
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
local version = tonumber(redis.call('HGET', KEYS[2], 'version') or '0')
if version ~= tonumber(ARGV[2]) then return -1 end
redis.call('HSET', KEYS[2], 'record', ARGV[3])
redis.call('HINCRBY', KEYS[2], 'version', 1)
local dead = tonumber(redis.call('HGET', KEYS[2], 'revoked_at'))
local expires = cjson.decode(ARGV[3]).expires_at
if type(expires) == 'number' and (dead == nil or expires < dead) then dead = expires end
if dead == nil then
  redis.call('ZREM', KEYS[3], ARGV[5])
  redis.call('PERSIST', KEYS[2])
  redis.call('PERSIST', KEYS[1])
else
  redis.call('ZADD', KEYS[3], string.format('%.0f', dead), ARGV[5])
  local retention = tonumber(ARGV[7])
  if retention then
    local ttl = string.format('%.0f', math.max(dead + retention - tonumber(ARGV[6]), 1000))
    redis.call('PEXPIRE', KEYS[2], ttl)
    redis.call('PEXPIRE', KEYS[1], ttl)
  else
    redis.call('PERSIST', KEYS[2])
    redis.call('PERSIST', KEYS[1])
  end
end
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
";
