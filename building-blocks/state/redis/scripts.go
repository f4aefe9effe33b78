package redis

import goredis "github.com/redis/go-redis/v9"

// The Lua scripts of every write. Each runs atomically on the server, so a
// check (an ETag, a first-write create) and the write it guards cannot be
// separated by another client's write, and the time to live is set or
// removed in the same step. go-redis runs them with EVALSHA, falling back
// to EVAL when the server does not have them cached.
//
// An item is a hash {data, version}. The scripts agree with Get on what a
// key's version is: none for a missing key, the version field of a hash
// ("0" when the field is missing or empty, for hashes written by other
// tools), and "" (which no ETag equals) for a key of another type, which
// an unconditional write replaces.
const luaPrelude = `
local function version_of(key)
  local kind = redis.call("TYPE", key)["ok"]
  if kind == "none" then return false end
  if kind ~= "hash" then return "" end
  local v = redis.call("HGET", key, "version")
  if not v or v == "" then return "0" end
  return v
end

local function next_version(cur)
  local n = tonumber(cur)
  if not n or n < 0 or n >= 9007199254740992 or n ~= math.floor(n) then n = 0 end
  return string.format("%d", n + 1)
end

-- put writes data at key, whose current version is cur, with a time to
-- live of ttl milliseconds (none when not positive).
local function put(key, cur, data, ttl)
  if cur == "" then redis.call("DEL", key) end
  redis.call("HSET", key, "data", data, "version", next_version(cur))
  ttl = tonumber(ttl)
  if ttl and ttl > 0 then
    redis.call("PEXPIRE", key, ttl)
  else
    redis.call("PERSIST", key)
  end
end
`

// setScript writes unconditionally. KEYS[1]; ARGV: data, ttl (ms).
var setScript = goredis.NewScript(luaPrelude + `
put(KEYS[1], version_of(KEYS[1]), ARGV[1], ARGV[2])
return 1
`)

// setETagScript writes if the version equals the ETag; 0 if it does not.
// KEYS[1]; ARGV: etag, data, ttl (ms).
var setETagScript = goredis.NewScript(luaPrelude + `
local cur = version_of(KEYS[1])
if cur ~= ARGV[1] then return 0 end
put(KEYS[1], cur, ARGV[2], ARGV[3])
return 1
`)

// setCreateScript writes if the key does not exist; 0 if it does.
// KEYS[1]; ARGV: data, ttl (ms).
var setCreateScript = goredis.NewScript(luaPrelude + `
if redis.call("EXISTS", KEYS[1]) == 1 then return 0 end
put(KEYS[1], false, ARGV[1], ARGV[2])
return 1
`)

// deleteETagScript deletes if the version equals the ETag; 0 if it does
// not. KEYS[1]; ARGV: etag.
var deleteETagScript = goredis.NewScript(luaPrelude + `
local cur = version_of(KEYS[1])
if cur ~= ARGV[1] then return 0 end
redis.call("DEL", KEYS[1])
return 1
`)

// multiScript applies a transaction: KEYS[i] is the key of operation i,
// and ARGV holds five arguments per operation: kind ("s" set, "d"
// delete), condition ("" none, "e" ETag, "c" create), etag, data, ttl
// (ms). It first checks every condition in order against the versions the
// earlier operations leave (without writing anything), and returns the
// 1-based index of the first that fails; only when all hold does it apply
// the operations, in order, and return 0.
var multiScript = goredis.NewScript(luaPrelude + `
local sim = {}
for i = 1, #KEYS do
  local key = KEYS[i]
  local b = (i - 1) * 5
  local kind, cond, etag = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local s = sim[key]
  if s == nil then
    s = {v = version_of(key)}
    sim[key] = s
  end
  if cond == "e" then
    if s.v ~= etag then return i end
  elseif cond == "c" then
    if s.v then return i end
  end
  if kind == "s" then
    s.v = next_version(s.v)
  else
    s.v = false
  end
end
for i = 1, #KEYS do
  local key = KEYS[i]
  local b = (i - 1) * 5
  if ARGV[b + 1] == "s" then
    put(key, version_of(key), ARGV[b + 4], ARGV[b + 5])
  else
    redis.call("DEL", key)
  end
end
return 0
`)
