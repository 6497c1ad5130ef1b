local targets = {}
local index = 0
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
  return wrk.format("GET", target[1], {["X-Api-Key"] = target[2]})
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
