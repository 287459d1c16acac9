-- wrk script of nginx_e2e.sh: every response checked byte for byte.
--
--   wrk ... -s nginx_check.lua URL -- PATH=FILE [PATH=FILE...]
--
-- Requests rotate over the PATHs (a path given twice is asked twice as often). The files
-- have distinct sizes, so a response's length names the file it must be: a response counts
-- as verified only if its status is 200 and its body is that file, byte for byte (Lua
-- compares the two strings whole).
--
-- wrk (4.1) resets a connection's header and body buffers only after a complete response:
-- when a connection fails in the middle of a body, what had arrived of it is put in front
-- of the next response's body on the new connection (and again if that one fails too).
-- Such a body counts as carried, not verified: it must be a file byte for byte preceded by
-- proper prefixes of files (the decrypted parts of the failed responses). There can be at
-- most one per failed connection (read and write errors). The files must not share a
-- prefix or a suffix (nginx_e2e.sh makes them of independent random bytes).
--
-- At the end one line sums all threads:
--
--   check: requests N verified N carried N bad N connect N read N write N status N timeout N bytes N us N first_bad 'STATUS LENGTH'
--
-- requests: responses wrk completed; verified + carried + bad = requests; the error counts
-- are wrk's own (a connection that failed, a request that took longer than --timeout, a
-- status >= 400).

local requests, want, files = {}, {}, {}
local i = 0
local threads = {}
verified, carried, bad, first_bad = 0, 0, 0, ""

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  for _, a in ipairs(args) do
    local path, file = a:match("^([^=]+)=(.+)$")
    assert(path, "argument is not PATH=FILE: " .. a)
    local f = assert(io.open(file, "rb"))
    local body = f:read("*a")
    f:close()
    assert(want[#body] == nil or want[#body] == body, "two files of one size: " .. file)
    if want[#body] == nil then
      table.insert(files, body)
    end
    want[#body] = body
    table.insert(requests, wrk.format("GET", path))
  end
  assert(#requests > 0, "no PATH=FILE after --")
  i = math.random(#requests) -- threads start at different places
end

function request()
  i = i % #requests + 1
  return requests[i]
end

-- How many bytes of body from position i on are the first bytes of f (binary search).
local function common_prefix(body, i, f)
  local lo, hi = 0, math.min(#f, #body - i + 1)
  while lo < hi do
    local mid = math.floor((lo + hi + 1) / 2)
    if body:sub(i, i + mid - 1) == f:sub(1, mid) then
      lo = mid
    else
      hi = mid - 1
    end
  end
  return lo
end

-- body[i .. last] is one or more proper prefixes of files, one after the other. The
-- longest match is tried first, then up to 16 bytes shorter (the next prefix may begin
-- with bytes that happen to continue the file).
local function prefixes(body, i, last, depth)
  if i > last then
    return depth > 0
  end
  if depth > 8 then
    return false
  end
  for _, f in ipairs(files) do
    local n = math.min(common_prefix(body, i, f), #f - 1, last - i + 1)
    for k = n, math.max(1, n - 16), -1 do
      if prefixes(body, i + k, last, depth + 1) then
        return true
      end
    end
  end
  return false
end

-- A file preceded by what failed connections left in wrk's buffer (see the top).
local function carried_over(body)
  for _, f in ipairs(files) do
    if #body > #f and body:sub(-#f) == f and prefixes(body, 1, #body - #f, 0) then
      return true
    end
  end
  return false
end

function response(status, headers, body)
  if status == 200 and want[#body] == body then
    verified = verified + 1
  elseif status == 200 and carried_over(body) then
    carried = carried + 1
  else
    bad = bad + 1
    if first_bad == "" then
      first_bad = status .. " " .. #body
    end
  end
end

function done(summary, latency, req)
  local v, c, b, fb = 0, 0, 0, ""
  for _, t in ipairs(threads) do
    v = v + t:get("verified")
    c = c + t:get("carried")
    b = b + t:get("bad")
    if fb == "" then
      fb = t:get("first_bad")
    end
  end
  local e = summary.errors
  io.write(string.format(
    "check: requests %d verified %d carried %d bad %d connect %d read %d write %d status %d timeout %d bytes %d us %d first_bad '%s'\n",
    summary.requests, v, c, b, e.connect, e.read, e.write, e.status, e.timeout, summary.bytes,
    summary.duration, fb))
end
