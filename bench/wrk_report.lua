-- wrk script for the proxy benchmark: optional POST body; the JSON summary from wrk_summary.lua.
-- BENCH_POST_BYTES > 0 turns every request into a POST of that many bytes.
local post_bytes = tonumber(os.getenv("BENCH_POST_BYTES") or "0")
if post_bytes > 0 then
  wrk.method = "POST"
  wrk.body = string.rep("x", post_bytes)
  wrk.headers["Content-Type"] = "application/octet-stream"
end

-- The one-line JSON summary both benchmarks parse (bench/loadgen.py), from the file beside this one.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "wrk_summary.lua")
