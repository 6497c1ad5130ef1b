-- Request each `path<TAB>key` line of args[1] in turn, round-robin from a random start: a GET, or, when
-- args[2] names a file, a POST of that file's contents as JSON. Prints WRKJSON (the summary bench reads).
local targets = {}
local index = 0
local method = "GET"
local body = nil
init = function(args)
  for line in io.lines(args[1]) do
    local path, key = line:match("^([^\t]+)\t([^\t]*)$")
    if path then targets[#targets + 1] = {path, key} end
  end
  if args[2] then
    local file = io.open(args[2], "rb")
    body = file:read("*a")
    file:close()
    method = "POST"
  end
  index = math.random(#targets) - 1
end
request = function()
  index = index % #targets + 1
  local target = targets[index]
  local headers = {["X-Api-Key"] = target[2]}
  if body then headers["Content-Type"] = "application/json" end
  return wrk.format(method, target[1], headers, body)
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
