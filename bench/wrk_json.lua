-- wrk reports its summary through this hook as one JSON line the lab parses.
-- Latencies are in microseconds; errors.status counts responses other than 2xx/3xx.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'TWINSTACK_WRK {"requests":%d,"duration_us":%d,"bytes":%d,'
      .. '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,'
      .. '"p50":%d,"p95":%d,"p99":%d,"mean":%.1f,"max":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99),
    latency.mean, latency.max))
end

-- The lab's tiny mode paces each connection (TWINSTACK_WRK_PACE_MS, set by bench/load.py): it
-- waits a random 0..2x that between its requests, that long on average, so the run's rate is
-- even from its first request.
local pace_ms = tonumber(os.getenv("TWINSTACK_WRK_PACE_MS") or "") or 0

paced = function()
  if pace_ms > 0 then
    return math.random(0, 2 * pace_ms)
  end
  return 0
end

if pace_ms > 0 then
  delay = paced
end
