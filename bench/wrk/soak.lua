-- wrk script for `just soak-memory` (bench/soak.py): one kind of request per run, chosen by
-- SOAK_MODE, until SOAK_N responses have come back; the answers are counted by status and
-- printed as one JSON line (WRK_SOAK {...}). Settings come from the environment:
--
--   pairs          GET / then GET /oauth2/sign_out, both with SOAK_COOKIE (the old leak)
--   forged_cookie  a new random session cookie per request, SOAK_COOKIE_LEN characters
--                  after the real cookie's first SOAK_COOKIE_PREFIX; every
--                  SOAK_CHUNKED_EVERY-th request a set of SOAK_CHUNKS chunk cookies
--                  (SOAK_COOKIE_NAME_0 ..) of SOAK_CHUNK_LEN characters each
--   forged_bearer  a new JWT-shaped bearer token per request: header naming SOAK_KID (every
--                  SOAK_RANDOM_KID_EVERY-th request a random kid instead), payload
--                  SOAK_PAYLOAD (base64url, as given), random 256-byte signature (below the
--                  modulus)
--   replay         the same request every time, with SOAK_HEADER_NAME: SOAK_HEADER_VALUE
--   tokens         `Authorization: Bearer` with the tokens of file SOAK_TOKENS (one a line),
--                  in order, round and round
--
-- Every generated value is distinct: its last characters encode a per-run counter. After
-- SOAK_N answers the script prints SOAK_DONE; wrk then waits for SIGINT to print the JSON.

local mode = os.getenv("SOAK_MODE")
local limit = tonumber(os.getenv("SOAK_N") or "0")
local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

-- Per-thread state (each thread has its own Lua state).
counts = {}
local seen = 0
local sent = 0
local pool
local reqs = {}
local tokens = {}

local function b64url(s)
  local out = {}
  local bytes = { s:byte(1, -1) }
  for i = 1, #bytes, 3 do
    local a, b, c = bytes[i], bytes[i + 1], bytes[i + 2]
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local k = (b == nil) and 2 or (c == nil) and 3 or 4
    for j = 1, k do
      local shift = 18 - 6 * (j - 1)
      local v = math.floor(n / 2 ^ shift) % 64
      out[#out + 1] = B64:sub(v + 1, v + 1)
    end
  end
  return table.concat(out)
end

-- `len` random base64url characters: a random slice of a random pool (cheap per request).
local function random_chars(len)
  local off = math.random(1, #pool - len)
  return pool:sub(off, off + len - 1)
end

-- The counter as 8 base64url characters, so values built with it never repeat in a run.
local function unique()
  sent = sent + 1
  local n, out = sent, {}
  for _ = 1, 8 do
    local v = n % 64
    out[#out + 1] = B64:sub(v + 1, v + 1)
    n = math.floor(n / 64)
  end
  return table.concat(out)
end

-- `len` characters: random, ending in the unique counter.
local function distinct(len)
  return random_chars(len - 8) .. unique()
end

function init(args)
  math.randomseed(os.time() * 1000 + math.floor(os.clock() * 1e6))
  local chars = {}
  for i = 1, 65536 do
    local v = math.random(0, 63)
    chars[i] = B64:sub(v + 1, v + 1)
  end
  pool = table.concat(chars)
  if mode == "pairs" then
    local cookie = os.getenv("SOAK_COOKIE")
    reqs[1] = wrk.format("GET", "/", { Cookie = cookie })
    reqs[2] = wrk.format("GET", "/oauth2/sign_out", { Cookie = cookie })
  elseif mode == "replay" then
    local name, value = os.getenv("SOAK_HEADER_NAME"), os.getenv("SOAK_HEADER_VALUE")
    reqs[1] = wrk.format("GET", "/", { [name] = value })
  elseif mode == "tokens" then
    for line in io.lines(os.getenv("SOAK_TOKENS")) do
      if #line > 0 then
        tokens[#tokens + 1] = "Bearer " .. line
      end
    end
  end
end

local function forged_cookie()
  local name = os.getenv("SOAK_COOKIE_NAME")
  local prefix = os.getenv("SOAK_COOKIE_PREFIX")
  local every = tonumber(os.getenv("SOAK_CHUNKED_EVERY") or "0")
  if every > 0 and (sent + 1) % every == 0 then
    local chunks = tonumber(os.getenv("SOAK_CHUNKS"))
    local len = tonumber(os.getenv("SOAK_CHUNK_LEN"))
    local parts = {}
    for c = 0, chunks - 1 do
      local v
      if c == 0 then
        v = prefix .. random_chars(len - #prefix)
      elseif c == chunks - 1 then
        v = distinct(len)
      else
        v = random_chars(len)
      end
      parts[#parts + 1] = string.format("%s_%d=%s", name, c, v)
    end
    return table.concat(parts, "; ")
  end
  local len = tonumber(os.getenv("SOAK_COOKIE_LEN"))
  return name .. "=" .. prefix .. distinct(len - #prefix)
end

local function forged_bearer()
  local every = tonumber(os.getenv("SOAK_RANDOM_KID_EVERY") or "0")
  local kid = os.getenv("SOAK_KID")
  if every > 0 and (sent + 1) % every == 0 then
    kid = random_chars(43)
  end
  local header = b64url('{"alg":"RS256","kid":"' .. kid .. '","typ":"JWT"}')
  -- A leading "A" keeps the signature, as a number, below any 2048-bit modulus, so the
  -- filter cannot refuse it by size and must do the whole RSA operation.
  return "Bearer " .. header .. "." .. os.getenv("SOAK_PAYLOAD") .. ".A" .. distinct(341)
end

function request()
  if mode == "pairs" then
    sent = sent + 1
    return reqs[2 - sent % 2]
  elseif mode == "replay" then
    return reqs[1]
  elseif mode == "tokens" then
    sent = sent + 1
    return wrk.format("GET", "/", { Authorization = tokens[(sent - 1) % #tokens + 1] })
  elseif mode == "forged_cookie" then
    return wrk.format("GET", "/", { Cookie = forged_cookie() })
  elseif mode == "forged_bearer" then
    return wrk.format("GET", "/", { Authorization = forged_bearer() })
  end
  error("unknown SOAK_MODE " .. tostring(mode))
end

function response(status, headers, body)
  local k = tostring(status)
  counts[k] = (counts[k] or 0) + 1
  seen = seen + 1
  if seen == limit then
    -- Stops this thread's loop; wrk itself only ends on SIGINT or at -d, so tell the
    -- runner (bench/soak.py), which sends the SIGINT.
    wrk.thread:stop()
    io.write("SOAK_DONE\n")
    io.flush()
  end
end

function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("counts") or {}) do
      total[k] = (total[k] or 0) + v
    end
  end
  local parts = {}
  for k, v in pairs(total) do
    parts[#parts + 1] = string.format('"%s":%d', k, v)
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_SOAK {"requests":%d,"duration_us":%d,"statuses":{%s},"errors":{"connect":%d,' ..
    '"read":%d,"write":%d,"timeout":%d}}\n',
    summary.requests, summary.duration, table.concat(parts, ","), e.connect, e.read, e.write,
    e.timeout))
end
