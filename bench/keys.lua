-- keys.lua - wrk script: POST one fixed OpenAI chat body, each request with the next key of a
-- list, so the gateway verifies many distinct keys instead of one hot one (issue 7: "the load
-- spread over 1,000 distinct keys"). Used by bench/run's spread pass for keygate and the floor.
--
-- Environment:
--   BENCH_BODY       path of the JSON request body (required)
--   BENCH_KEYS_FILE  one bearer key per line (required)
--
-- done() prints the same "BENCH ..." line as ../shared/bench/lib/post.lua, which bench/run parses.

local path = os.getenv("BENCH_BODY")
assert(path and path ~= "", "BENCH_BODY is not set")
local f = assert(io.open(path, "rb"))
local body = f:read("*a")
f:close()

local keys_file = os.getenv("BENCH_KEYS_FILE")
assert(keys_file and keys_file ~= "", "BENCH_KEYS_FILE is not set")
local keys = {}
for line in io.lines(keys_file) do
  if line ~= "" then keys[#keys + 1] = "Bearer " .. line end
end
assert(#keys > 0, "no keys in BENCH_KEYS_FILE")

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"

-- Each thread starts at its own place in the list and walks it round.
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("start", threads * 7919)
end

local at = nil
function request()
  at = ((at or start or 0) % #keys) + 1
  wrk.headers["Authorization"] = keys[at]
  return wrk.format()
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d bytes=%d mean_us=%.1f stdev_us=%.1f " ..
    "p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d " ..
    "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
    summary.requests, summary.duration, summary.bytes, latency.mean, latency.stdev,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
