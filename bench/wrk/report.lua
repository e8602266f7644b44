-- wrk script: prints the run's numbers as one JSON line (latencies in microseconds).
-- With WRK_PACE_MS set, every connection waits that long between its requests, for latency
-- at a moderate, steady rate instead of at saturation. No request()/response() hooks, so wrk
-- keeps its fast C request path.
local pace = tonumber(os.getenv("WRK_PACE_MS") or "")
if pace then
  function delay()
    return pace
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"errors":{"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d},"latency_us":{"mean":%.1f,"stdev":%.1f,"p50":%d,"p90":%d,' ..
    '"p99":%d,"max":%d}}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.stdev, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
