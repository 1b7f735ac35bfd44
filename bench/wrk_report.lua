-- wrk script for the bench. After the run it prints one line "WRK_JSON {...}" with the totals
-- and the latency percentiles in microseconds, so nothing parses wrk's human-readable text.
--
-- Arguments after "--" choose the paths (run with -t1, so counters are global):
--   (none)                 the URL's path, every time
--   cycle N PREFIX         /orders/PREFIX0 .. PREFIX(N-1), round-robin
--   distinct N PREFIX      /orders/PREFIX1, PREFIX2, ... (a new id each time); after N answers
--                          the thread stops sending and "WRK_LIMIT_REACHED" is printed, so
--                          the harness can end the run early with SIGINT (wrk then reports)

local sent = 0
local answered = 0

function init(args)
  local mode, count, prefix = args[1], tonumber(args[2] or "0"), args[3] or ""
  if mode == "cycle" then
    request = function()
      sent = sent + 1
      return wrk.format("GET", "/orders/" .. prefix .. (sent % count))
    end
  elseif mode == "distinct" then
    request = function()
      sent = sent + 1
      return wrk.format("GET", "/orders/" .. prefix .. sent)
    end
    response = function(status, headers, body)
      answered = answered + 1
      if answered == count then
        io.write("WRK_LIMIT_REACHED\n")
        io.flush()
        wrk.thread:stop()
      end
    end
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
      .. '"latency_us": {"min": %.1f, "mean": %.1f, "max": %.1f, "stdev": %.1f, '
      .. '"p50": %.1f, "p75": %.1f, "p90": %.1f, "p99": %.1f, "p999": %.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.max, latency.stdev,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
end
