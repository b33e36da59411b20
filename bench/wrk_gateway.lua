-- wrk script for the gateway benchmark: one credential header, optional pacing, JSON summary.
-- BENCH_HEADER_NAME/BENCH_HEADER_VALUE: the header every request carries (a token or API key).
-- BENCH_DELAY_MS > 0: each connection waits that long (on average) before each request, so the
-- offered rate is about connections / (delay + latency); wrk times a request from its sending.
local name = os.getenv("BENCH_HEADER_NAME") or ""
if name ~= "" then
  wrk.headers[name] = os.getenv("BENCH_HEADER_VALUE") or ""
end

local interval = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
if interval > 0 then
  local base = math.floor(interval)
  local fraction = interval - base
  delay = function()
    if math.random() < fraction then
      return base + 1
    end
    return base
  end
end

-- The one-line JSON summary both benchmarks parse (bench/loadgen.py), from the file beside this one.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "wrk_summary.lua")
