-- wrk script: POST a decision for a new unit on every request, count non-200 answers.
local counter = 0
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  failures = 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. args[1]
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"unit_id": "t%d-u%d", "context": {"country": "DE", "device": "mobile", "age": 31}}',
    id, counter)
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  if status ~= 200 then failures = failures + 1 end
end

function done(summary, latency, requests)
  local failed = 0
  for _, thread in ipairs(threads) do failed = failed + thread:get("failures") end
  io.write(string.format("NON200 %d\n", failed))
  for _, p in ipairs({50, 99}) do
    io.write(string.format("P%d_US %d\n", p, latency:percentile(p)))
  end
  io.write(string.format("REQUESTS %d\nDURATION_US %d\n", summary.requests, summary.duration))
end
