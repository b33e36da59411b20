-- wrk script for the proxy benchmark: optional POST body, and a one-line JSON summary at the end.
-- BENCH_POST_BYTES > 0 turns every request into a POST of that many bytes.
local post_bytes = tonumber(os.getenv("BENCH_POST_BYTES") or "0")
if post_bytes > 0 then
  wrk.method = "POST"
  wrk.body = string.rep("x", post_bytes)
  wrk.headers["Content-Type"] = "application/octet-stream"
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
