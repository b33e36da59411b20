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

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
