-- POST /v1/jobs round-robin over the API keys listed one a line in args[1]; each request a no-op job.
local keys = {}
local index = 0
local body = '{"type": "command", "input": "true"}'
init = function(args)
  for line in io.lines(args[1]) do
    if #line > 0 then keys[#keys + 1] = line end
  end
  index = math.random(#keys) - 1
end
request = function()
  index = index % #keys + 1
  return wrk.format("POST", "/v1/jobs", {["X-Api-Key"] = keys[index], ["Content-Type"] = "application/json"}, body)
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
