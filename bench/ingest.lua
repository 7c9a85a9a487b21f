-- wrk script: POSTs the batch files of a logpipe-bench directory round robin, for as long as
-- wrk runs, and prints what the server accepted.
--
--   BATCH_DIR=DIR [MAX_FILES=N] wrk -t1 -c16 -d30s -s bench/ingest.lua http://127.0.0.1:7171/api/v1/logs
--
-- DIR is made by `logpipe-bench gen --out DIR` (its index.txt lists each file and its records).
-- MAX_FILES (default 200) bounds the files held in memory. The last line reads
-- "ingest.lua: N requests, A accepted (R records), F refused (429/503), O other, X records/s".

local dir = os.getenv("BATCH_DIR") or error("set BATCH_DIR to a logpipe-bench directory")
local max_files = tonumber(os.getenv("MAX_FILES") or "200")
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  bodies, records = {}, {}
  for line in io.lines(dir .. "/index.txt") do
    local file, n = line:match("^(%S+)\t(%d+)$")
    if file and #bodies < max_files then
      local f = assert(io.open(dir .. "/" .. file, "rb"))
      table.insert(bodies, f:read("*a"))
      table.insert(records, tonumber(n))
      f:close()
    end
  end
  assert(#bodies > 0, "no batch files in " .. dir)
  per_request = 0
  for _, n in ipairs(records) do per_request = per_request + n end
  per_request = per_request / #records
  headers = { ["Content-Type"] = "application/x-ndjson" }
  i, accepted, refused, other = 0, 0, 0, 0
end

function request()
  i = i % #bodies + 1
  return wrk.format("POST", nil, headers, bodies[i])
end

function response(status, headers, body)
  if status == 200 then
    accepted = accepted + 1
  elseif status == 429 or status == 503 then
    refused = refused + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local a, f, o, per = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    a = a + t:get("accepted")
    f = f + t:get("refused")
    o = o + t:get("other")
    per = t:get("per_request")
  end
  local secs = summary.duration / 1e6
  io.write(string.format("ingest.lua: %d requests, %d accepted (%d records), %d refused (429/503), %d other, %.0f records/s\n",
    a + f + o, a, a * per, f, o, a * per / secs))
end
