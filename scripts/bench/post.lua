-- wrk script: POST the presence sample with a fresh uuid per request (as the platform would;
-- a repeated uuid would be deduplicated and never reach the disk), with the verification token.
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end

local template
local counter = 0
local token = os.getenv("BENCH_TOKEN") or "bench-token"
local sample = os.getenv("BENCH_SAMPLE")
local path = os.getenv("BENCH_PATH") or "/webhook"

function init(args)
  local f = assert(io.open(sample, "r"))
  template = f:read("*a")
  f:close()
end

function request()
  counter = counter + 1
  local uuid = string.format("bench-%d-%d", id, counter)
  local body = template:gsub("045b81dc%-9f73%-4864%-84de%-08aa6324a7f5", uuid)
  return wrk.format("POST", path, {
    ["Content-Type"] = "application/json; charset=UTF-8",
    ["User-Agent"] = "RingCentral-Webhook/8.3",
    ["Verification-Token"] = token,
  }, body)
end
