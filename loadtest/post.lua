-- wrk script: POST one fixed JSON body with a bearer token (or GET, without a body); print a
-- JSON summary at the end.
--
--   wrk -t2 -c32 -d5s -s loadtest/post.lua http://127.0.0.1:8080 -- /v1/orders body.json TOKEN
--
-- Arguments after "--": the request path, a file holding the body, (optional) a token, and
-- (optional) the method, POST by default; a GET sends no body.

local request_bytes

function init(args)
  local path, body_file, token, method = args[1], args[2], args[3], args[4] or "POST"
  local body = nil
  if method ~= "GET" then
    local f = assert(io.open(body_file, "rb"))
    body = f:read("*a")
    f:close()
  end
  local headers = { ["Content-Type"] = "application/json" }
  if token ~= nil and token ~= "" then
    headers["Authorization"] = "Bearer " .. token
  end
  request_bytes = wrk.format(method, path, headers, body)
end

function request()
  return request_bytes
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"wrk_summary": {"requests": %d, "duration_us": %d, "bytes": %d, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
      .. '"latency_us": {"mean": %.1f, "p50": %d, "p90": %d, "p99": %d, "max": %d}}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max))
end
