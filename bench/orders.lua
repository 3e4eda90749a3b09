-- wrk script: GET /orders/{id} with uniformly random ids in 1..N, and a JSON summary at the end.
--
-- Usage: wrk ... -s bench/orders.lua http://127.0.0.1:PORT -- N SEED
-- Every variant gets the same SEED, so each one is asked for the same sequence of ids.

local max_id = 1000

function init(args)
  max_id = tonumber(args[1]) or max_id
  math.randomseed(tonumber(args[2]) or 1)
end

function request()
  return wrk.format("GET", "/orders/" .. math.random(1, max_id))
end

-- One line the runner looks for; wrk's own report above it is for humans.
function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local errors = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"seconds":%.6f,"rps":%.3f,' ..
    '"p50_ms":%.3f,"p95_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout))
end
