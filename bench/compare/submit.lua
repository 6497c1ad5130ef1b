-- POST a no-op job to each `path<TAB>key` line of args[1] in turn (the path: /v1/jobs), round-robin from a
-- random start; prints WRKJSON like spread.lua. The job's type is one no miner offers: the jobs stay queued
-- and leave the bench's miners (and the queue they read) alone.
local targets = {}
local index = 0
local body = '{"type": "bench-submit", "input": "true"}'
init = function(args)
  for line in io.lines(args[1]) do
    local path, key = line:match("^([^\t]+)\t([^\t]*)$")
    if path then targets[#targets + 1] = {path, key} end
  end
  index = math.random(#targets) - 1
end
request = function()
  index = index % #targets + 1
  local target = targets[index]
  return wrk.format("POST", target[1], {["X-Api-Key"] = target[2], ["Content-Type"] = "application/json"}, body)
end
done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "non2xx": %d, "socket_errors": %d, '
    .. '"p50_us": %d, "p90_us": %d, "p99_us": %d}\n',
    summary.requests, summary.duration, errors.status,
    errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
