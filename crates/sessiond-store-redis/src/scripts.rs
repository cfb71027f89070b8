//! The Lua scripts behind every conditional write. Each touches keys of one hash tag
//! only, so it runs atomically on one node, standalone or Cluster alike.
//!
//! Timestamps and counters travel as decimal strings and are compared with `tonumber`
//! but written back as the caller's original strings: Lua numbers are doubles and
//! Redis's number-to-string conversion is not guaranteed to print a large integer
//! without an exponent, so a script never formats a number itself (counters from
//! INCR are small integers and safe).

use redis::Script;
use std::sync::LazyLock;

/// KEYS: outbox lease, fence counter. ARGV: holder, ttl_ms. → the fence when `holder`
/// holds the lease afterwards (renewed, or taken with a new fence), nil when another
/// holder's lease is still running.
pub(crate) static ACQUIRE_OUTBOX_LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local cur = redis.call('GET', KEYS[1])
if cur then
  local sep = string.find(cur, ':', 1, true)
  if string.sub(cur, sep + 1) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return tonumber(string.sub(cur, 1, sep - 1))
  end
  return false
end
local f = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], f .. ':' .. ARGV[1], 'PX', ARGV[2])
return f
"#,
    )
});

/// KEYS: outbox lease. ARGV: holder. Deletes the lease if `holder` holds it.
pub(crate) static RELEASE_OUTBOX_LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local cur = redis.call('GET', KEYS[1])
if cur then
  local sep = string.find(cur, ':', 1, true)
  if string.sub(cur, sep + 1) == ARGV[1] then redis.call('DEL', KEYS[1]) end
end
return 1
"#,
    )
});

/// KEYS: cursors, fence counter. ARGV: fence, endpoint field, from ('' for none), to.
/// → 1 moved, 0 the fence is stale or the cursor moved meanwhile.
pub(crate) static ADVANCE_OUTBOX_CURSOR: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[1] then return 0 end
if (redis.call('HGET', KEYS[1], ARGV[2]) or '') ~= ARGV[3] then return 0 end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[4])
return 1
"#,
    )
});

/// KEYS: dead letters (hash), their ids (zset). ARGV: event id, JSON. Upserts.
pub(crate) static PUT_DEAD_LETTER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[1])
return 1
"#,
    )
});

/// KEYS: dead letters (hash), their ids (zset). ARGV: event id. → 1 removed, 0 absent.
pub(crate) static DELETE_DEAD_LETTER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('HDEL', KEYS[1], ARGV[1])
"#,
    )
});

/// KEYS: session. ARGV: ttl_ms, field, value, … → 1 created, 0 the handle exists.
pub(crate) static CREATE_SESSION: LazyLock<Script> =
    LazyLock::new(|| Script::new(CREATE_SESSION_BODY));

/// KEYS: session, data, pending-move key. ARGV: expected token hash, ttl_ms, pending
/// move JSON ('' none), field, value, …
/// → {1} replaced (and the move recorded), or {0, current token hash} if ended, missing
/// or rotated meanwhile. Comparing token *hashes* needs no constant time: a caller
/// controls only the token, and timing reveals nothing usable about a SHA-256 preimage.
pub(crate) static UPDATE_SESSION: LazyLock<Script> =
    LazyLock::new(|| Script::new(UPDATE_SESSION_BODY));

/// KEYS: session. ARGV: last_activity_at, last_seen_at, idle_expires_at.
/// Moves each forward only; → the new earliest deadline, or nil if not active.
pub(crate) static TOUCH_SESSION: LazyLock<Script> =
    LazyLock::new(|| Script::new(TOUCH_SESSION_BODY));

/// KEYS: session, data. ARGV: reason, ended_at, retention_ms[, token hash,
/// last_activity_at, idle_expires_at, absolute_expires_at].
/// active → ended exactly once; → the ended record's fields, or nil for every other
/// caller. With the last four (an expiry decided on a possibly stale copy), only if the
/// stored record still has them and its earliest deadline is at or before ended_at.
pub(crate) static END_SESSION: LazyLock<Script> = LazyLock::new(|| Script::new(END_SESSION_BODY));

/// KEYS: session, data. ARGV: key, JSON value. → 1 written, 0 the session is not active.
pub(crate) static PUT_DATA: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('HGET', KEYS[1], 'st') ~= 'active' then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
return 1
"#,
    )
});

/// KEYS: data. ARGV: key. → {other keys, their bytes[, bytes of the key]}, each entry
/// counted as its field's length plus its value's (the stored compact JSON).
pub(crate) static DATA_USAGE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local n, b, cur = 0, 0, nil
for _, k in ipairs(redis.call('HKEYS', KEYS[1])) do
  local sz = #k + redis.call('HSTRLEN', KEYS[1], k)
  if k == ARGV[1] then cur = sz else n = n + 1; b = b + sz end
end
if cur then return {n, b, cur} end
return {n, b}
"#,
    )
});

/// KEYS: session, data. ARGV: key, value, has_expected (0/1), expected.
/// Writes the value only if the session is active and the stored text is `expected`
/// (or absent when has_expected is 0); → 1 applied, 0 not.
pub(crate) static PUT_DATA_IF: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('HGET', KEYS[1], 'st') ~= 'active' then return 0 end
local cur = redis.call('HGET', KEYS[2], ARGV[1])
if ARGV[3] == '1' then
  if cur ~= ARGV[4] then return 0 end
elseif cur then
  return 0
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
return 1
"#,
    )
});

/// KEYS: session, data. ARGV: ended_before.
/// Deletes an ended session ended before the cutoff; → {token hash, idempotency key hash} or nil.
pub(crate) static PURGE_SESSION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local cur = redis.call('HMGET', KEYS[1], 'st', 'ea', 'tok', 'idem')
if cur[1] ~= 'ended' or not cur[2] or tonumber(cur[2]) >= tonumber(ARGV[1]) then return false end
redis.call('DEL', KEYS[1], KEYS[2])
return {cur[3] or '', cur[4] or ''}
"#,
    )
});

/// KEYS: key. ARGV: value. Deletes the key only if it still holds `value` (an index
/// entry or lock that may meanwhile belong to someone else). → 1 deleted, 0 not.
pub(crate) static DEL_IF_EQ: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#,
    )
});

/// KEYS: idempotency key. ARGV: handle, record JSON, ttl_ms.
/// SET NX with a payload: → {1, ''} if this caller won, else {0, the winner's record JSON}.
pub(crate) static IDEM_CLAIM: LazyLock<Script> = LazyLock::new(|| Script::new(IDEM_CLAIM_BODY));

/// KEYS: idempotency key. ARGV: handle. Frees the key only if it names this session.
pub(crate) static IDEM_RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('HGET', KEYS[1], 'h') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#,
    )
});

/// KEYS: zset. ARGV: member, cutoff. Removes the member only if its score is still
/// `<= cutoff`, so an index entry re-added by a concurrent writer survives a purge.
pub(crate) static ZREM_IF_LE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if s and tonumber(s) <= tonumber(ARGV[2]) then return redis.call('ZREM', KEYS[1], ARGV[1]) end
return 0
"#,
    )
});

/// The draft compare-and-set. KEYS: drafts hash, seqs hash, held-bytes counter, then
/// blob keys: the first `n_del` are deleted, the rest made permanent.
/// ARGV: conversation, expected seq, new draft JSON ('' removes the entry and its seq),
/// new seq, held-bytes delta, quota (-1: unchecked), n_del.
/// → {1} applied, {0, current JSON or ''} stale seq, {2} over quota.
pub(crate) static DRAFT_CAS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local seq = redis.call('HGET', KEYS[2], ARGV[1]) or '0'
if seq ~= ARGV[2] then return {0, redis.call('HGET', KEYS[1], ARGV[1]) or ''} end
local delta = tonumber(ARGV[5])
local held = tonumber(redis.call('GET', KEYS[3]) or '0')
if tonumber(ARGV[6]) >= 0 and held + delta > tonumber(ARGV[6]) then return {2} end
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
end
if delta ~= 0 then redis.call('INCRBY', KEYS[3], ARGV[5]) end
local n_del = tonumber(ARGV[7])
for i = 4, #KEYS do
  if i - 3 <= n_del then redis.call('DEL', KEYS[i]) else redis.call('PERSIST', KEYS[i]) end
end
return {1}
"#,
    )
});

/// KEYS: snapshot hash. ARGV: expected version, new version, meta JSON, data, retain_until ('' none).
/// → {1} written, {0} stale with no snapshot, {0, meta, retain_until} stale.
pub(crate) static PUT_SNAPSHOT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local v = redis.call('HGET', KEYS[1], 'v') or '0'
if v ~= ARGV[1] then
  if v == '0' then return {0} end
  local cur = redis.call('HMGET', KEYS[1], 'meta', 'ret')
  return {0, cur[1] or '', cur[2] or ''}
end
local prev = redis.call('HGET', KEYS[1], 'meta') or ''
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'meta', ARGV[3], 'data', ARGV[4], 'ret', ARGV[5])
return {1, prev}
"#,
    )
});

/// KEYS: snapshot hash. ARGV: retain_until ('' none). → 1 set, 0 no such snapshot.
pub(crate) static RETAIN_SNAPSHOT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'ret', ARGV[1])
return 1
"#,
    )
});

/// KEYS: snapshot hash. ARGV: now. Deletes it if its retention has passed.
/// → {1, the purged meta} purged, {0, retain_until or ''} kept.
pub(crate) static PURGE_SNAPSHOT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local r = redis.call('HGET', KEYS[1], 'ret')
if r and r ~= '' and tonumber(r) <= tonumber(ARGV[1]) then
  local meta = redis.call('HGET', KEYS[1], 'meta') or ''
  redis.call('DEL', KEYS[1])
  return {1, meta}
end
return {0, r or ''}
"#,
    )
});

/// Standalone and Sentinel (its keys span buckets, which only one server can hold):
/// the whole append in one step. KEYS: id counter, then the event's bucket's events
/// hash, id index, time index, and its handle and principal indexes. ARGV: event JSON,
/// at. → the new id (never reused: the counter is never deleted).
pub(crate) static APPEND_AUDIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"
{ALLOC_MS}
local id = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], id, alloc .. ' ' .. ARGV[1])
redis.call('ZADD', KEYS[3], id, id)
redis.call('ZADD', KEYS[4], ARGV[2], id)
for i = 5, #KEYS do redis.call('ZADD', KEYS[i], id, id) end
return id
"#
    ))
});

/// Cluster, the step after the id was taken (a plain `INCR` of the counter): KEYS: the
/// bucket's events hash, id index, time index, then its handle and principal indexes.
/// ARGV: id, JSON, at. The event is stamped with the bucket master's time of writing.
pub(crate) static APPEND_AUDIT_BUCKET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"
{ALLOC_MS}
redis.call('HSET', KEYS[1], ARGV[1], alloc .. ' ' .. ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
for i = 4, #KEYS do redis.call('ZADD', KEYS[i], ARGV[1], ARGV[1]) end
return 1
"#
    ))
});

/// KEYS: a bucket's events hash. ARGV: ids. → {the bucket master's time in ms (as
/// text), then each id's stored event or false}: events with the clock they were
/// stamped on, for forward reads on Cluster.
pub(crate) static READ_AUDIT_BUCKET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"
{ALLOC_MS}
local out = {{alloc}}
for i = 1, #ARGV do out[i + 1] = redis.call('HGET', KEYS[1], ARGV[i]) end
return out
"#
    ))
});

/// Lua setting `alloc` to the server's time in ms as text, built from TIME's two
/// strings (never formatting a large number, see the module note).
const ALLOC_MS: &str = "local now = redis.call('TIME')\nlocal alloc = now[1] .. string.format('%03d', math.floor(tonumber(now[2]) / 1000))";

/// KEYS: blob. ARGV: bytes, ttl_ms. Appends one chunk of an upload and (re)arms the
/// upload's TTL in the same step, so a crash never leaves bytes without a TTL.
pub(crate) static APPEND_BLOB: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local n = redis.call('APPEND', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return n
"#,
    )
});

/// Standalone and Sentinel only (it reads a key it does not declare, which Cluster
/// forbids): the token lookup in one round trip. KEYS: token index. ARGV: the session
/// key's text before and after the handle. → {handle, session fields} or nil.
pub(crate) static TOKEN_LOOKUP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local h = redis.call('GET', KEYS[1])
if not h then return false end
return {h, redis.call('HGETALL', ARGV[1] .. h .. ARGV[2])}
"#,
    )
});

/// KEYS: pending-move key. ARGV: the move's JSON. Removes the pending sign-in draft move
/// only if it is still this one. → 1 removed, 0 not (finished by someone else).
pub(crate) static FINISH_MOVE: LazyLock<Script> = LazyLock::new(|| Script::new(FINISH_MOVE_BODY));

/// The audited twins of the lifecycle scripts: the change and the audit events that
/// record it in one script, so one cannot commit without the other (standalone and
/// Sentinel; on Cluster the audit keys live in their own slot, see [`crate::audited`]).
pub(crate) static CREATE_SESSION_AUDITED: LazyLock<Script> =
    LazyLock::new(|| audited(CREATE_SESSION_BODY));
pub(crate) static UPDATE_SESSION_AUDITED: LazyLock<Script> =
    LazyLock::new(|| audited(UPDATE_SESSION_BODY));
pub(crate) static TOUCH_SESSION_AUDITED: LazyLock<Script> =
    LazyLock::new(|| audited(TOUCH_SESSION_BODY));
pub(crate) static END_SESSION_AUDITED: LazyLock<Script> =
    LazyLock::new(|| audited(END_SESSION_BODY));
pub(crate) static IDEM_CLAIM_AUDITED: LazyLock<Script> = LazyLock::new(|| audited(IDEM_CLAIM_BODY));
pub(crate) static FINISH_MOVE_AUDITED: LazyLock<Script> =
    LazyLock::new(|| audited(FINISH_MOVE_BODY));

/// Wraps a change script (its body reads `KEYS`/`ARGV`) so the audit events follow it
/// in the same script. Layout: KEYS = the change's keys, then the audit id counter,
/// then per event its bucket's events hash, id index, time index and the event's
/// handle/principal index keys. ARGV = number of change keys, number of change args,
/// the change's args, the number of events, then per event: JSON, at, number of its
/// handle/principal index keys.
///
/// Redis does not roll a script back when a command in it fails, so the audit keys'
/// types are checked before anything is written (a key of the wrong type fails the whole
/// call, with nothing changed), and once the script has written, Redis no longer refuses
/// its further writes for memory. A change that did not apply (the body answered 0,
/// false or `{0, …}`) appends nothing.
fn audited(body: &str) -> Script {
    let body = body.replace("KEYS", "K").replace("ARGV", "A");
    Script::new(&format!(
        r#"
local nk, na = tonumber(ARGV[1]), tonumber(ARGV[2])
local K = {{unpack(KEYS, 1, nk)}}
local A = {{unpack(ARGV, 3, 2 + na)}}
local ak = nk + 1
local function bad(k, t) return redis.error_reply('audit key ' .. k .. ' holds a ' .. t) end
local t = redis.call('TYPE', KEYS[ak])['ok']
if t ~= 'none' and t ~= 'string' then return bad(KEYS[ak], t) end
if t == 'string' and not tonumber(redis.call('GET', KEYS[ak])) then return bad(KEYS[ak], 'non-number') end
local n = tonumber(ARGV[3 + na])
local ki, ai = ak + 1, 4 + na
for e = 1, n do
  for j = 0, 2 + tonumber(ARGV[ai + 2]) do
    local tj = redis.call('TYPE', KEYS[ki + j])['ok']
    local w = 'zset'
    if j == 0 then w = 'hash' end
    if tj ~= 'none' and tj ~= w then return bad(KEYS[ki + j], tj) end
  end
  ki = ki + 3 + tonumber(ARGV[ai + 2])
  ai = ai + 3
end
local function change()
{body}
end
local r = change()
if r == false or r == nil or r == 0 or (type(r) == 'table' and r[1] == 0) then return r end
{ALLOC_MS}
ki, ai = ak + 1, 4 + na
for e = 1, n do
  local id = redis.call('INCR', KEYS[ak])
  redis.call('HSET', KEYS[ki], id, alloc .. ' ' .. ARGV[ai])
  redis.call('ZADD', KEYS[ki + 1], id, id)
  redis.call('ZADD', KEYS[ki + 2], ARGV[ai + 1], id)
  for j = 1, tonumber(ARGV[ai + 2]) do
    redis.call('ZADD', KEYS[ki + 2 + j], id, id)
  end
  ki = ki + 3 + tonumber(ARGV[ai + 2])
  ai = ai + 3
end
return r
"#
    ))
}

const CREATE_SESSION_BODY: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"#;

const UPDATE_SESSION_BODY: &str = r#"
local cur = redis.call('HMGET', KEYS[1], 'st', 'tok')
if cur[1] ~= 'active' or cur[2] ~= ARGV[1] then return {0, cur[2] or ''} end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[2]) end
if ARGV[3] ~= '' then redis.call('SET', KEYS[3], ARGV[3]) end
return {1, ''}
"#;

const TOUCH_SESSION_BODY: &str = r#"
local cur = redis.call('HMGET', KEYS[1], 'st', 'la', 'ls', 'ie', 'ae')
if cur[1] ~= 'active' then return false end
local function later(old, new) if tonumber(new) > tonumber(old) then return new end return old end
local la, ls, ie = later(cur[2], ARGV[1]), later(cur[3], ARGV[2]), later(cur[4], ARGV[3])
redis.call('HSET', KEYS[1], 'la', la, 'ls', ls, 'ie', ie)
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'ip', ARGV[4]) end
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'ua', ARGV[5]) end
if tonumber(ie) < tonumber(cur[5]) then return ie end
return cur[5]
"#;

// One read of the whole record, which the reply reuses with the three fields the
// ending wrote; PEXPIRE of an absent data hash is a no-op.
const END_SESSION_BODY: &str = r#"
local m = redis.call('HGETALL', KEYS[1])
local at = {}
for i = 1, #m, 2 do at[m[i]] = i + 1 end
if at.st == nil or m[at.st] ~= 'active' then return false end
if ARGV[4] then
  local function n(f) if at[f] == nil then return nil end return tonumber(m[at[f]]) end
  local ie, ae = n('ie'), n('ae')
  if at.tok == nil or m[at.tok] ~= ARGV[4] or n('la') ~= tonumber(ARGV[5])
    or ie ~= tonumber(ARGV[6]) or ae ~= tonumber(ARGV[7])
    or math.min(ie, ae) > tonumber(ARGV[2]) then return false end
end
redis.call('HSET', KEYS[1], 'st', 'ended', 'er', ARGV[1], 'ea', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
m[at.st] = 'ended'
for _, fv in ipairs({{'er', ARGV[1]}, {'ea', ARGV[2]}}) do
  if at[fv[1]] then m[at[fv[1]]] = fv[2] else m[#m + 1] = fv[1]; m[#m + 1] = fv[2] end
end
return m
"#;

const IDEM_CLAIM_BODY: &str = r#"
local cur = redis.call('HGET', KEYS[1], 'rec')
if cur then return {0, cur} end
redis.call('HSET', KEYS[1], 'h', ARGV[1], 'rec', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {1, ''}
"#;

const FINISH_MOVE_BODY: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
"#;
