//! Lua scripts: each runs atomically on the server, so a change and the events it records (and
//! the cursors they get) are one step.
//!
//! Cursors: `INCR` of the `events:seq` key gives the next cursor `n`; the event is added with the
//! explicit stream id `n-0`. Since scripts never interleave, stream ids and cursors grow together.

use std::sync::LazyLock;

use redis::Script;

/// Appends events. KEYS: stream, cursor counter. ARGV: time (µs), then one JSON event per arg.
/// Returns the cursors.
pub(super) static APPEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local out = {}
for i = 2, #ARGV do
  local n = redis.call('INCR', KEYS[2])
  redis.call('XADD', KEYS[1], string.format('%d-0', n), 'at', ARGV[1], 'event', ARGV[i])
  out[#out + 1] = n
end
return out
",
    )
});

/// Registers an agent. KEYS: agent hash, registration order (zset), order counter, liveness key,
/// stream, cursor counter. ARGV: agent id, liveness TTL (ms), liveness value, time (µs), event
/// JSON, then the hash's field/value pairs. Returns 0 if the agent exists, else 1.
pub(super) static REGISTER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[3]), ARGV[1])
redis.call('SET', KEYS[4], ARGV[3], 'PX', ARGV[2])
local n = redis.call('INCR', KEYS[6])
redis.call('XADD', KEYS[5], string.format('%d-0', n), 'at', ARGV[4], 'event', ARGV[5])
return 1
",
    )
});

/// Updates an agent if it is still at the version the caller read (compare-and-set).
/// KEYS: agent hash, liveness key, stream, cursor counter. ARGV: expected version, liveness
/// action (`keep`, `del` or a TTL in ms), liveness value, time (µs), number of events `n`, `n`
/// event JSONs, then the hash's field/value pairs to set.
/// Returns -1 if the agent does not exist, 0 if its version moved on, 1 when applied.
pub(super) static UPDATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local ver = redis.call('HGET', KEYS[1], 'ver')
if not ver then return -1 end
if ver ~= ARGV[1] then return 0 end
local n_events = tonumber(ARGV[5])
local first_field = 6 + n_events
if #ARGV >= first_field then redis.call('HSET', KEYS[1], unpack(ARGV, first_field)) end
redis.call('HINCRBY', KEYS[1], 'ver', 1)
if ARGV[2] == 'del' then
  redis.call('DEL', KEYS[2])
elseif ARGV[2] ~= 'keep' then
  redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[2])
end
for i = 6, 5 + n_events do
  local n = redis.call('INCR', KEYS[4])
  redis.call('XADD', KEYS[3], string.format('%d-0', n), 'at', ARGV[4], 'event', ARGV[i])
end
return 1
",
    )
});
