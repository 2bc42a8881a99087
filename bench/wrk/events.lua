-- POST /v1/events with fresh ids: one event per request, or `per_request` events as an array.
-- wrk -s events.lua URL -- <occurred_at> <per_request>
local counter = 0

function setup(thread)
  thread:set("tid", tostring(math.random(1, 1000000000)))
end

function init(args)
  occurred_at = args[1]
  per_request = tonumber(args[2] or "1")
  prefix = tid or tostring(math.random(1, 1000000000))
end

local function event(n)
  return string.format(
    '{"id":"wrk-%s-%d","identity":{"email":"lead%d@wrk.example"},' ..
    '"attributes":{"company":"Wrk","company_size":%d},' ..
    '"activity":{"type":"page_view","occurred_at":"%s","properties":{"path":"/blog"}}}',
    prefix, n, n % 5000, n % 900, occurred_at)
end

request = function()
  local body
  if per_request == 1 then
    counter = counter + 1
    body = event(counter)
  else
    local items = {}
    for i = 1, per_request do
      counter = counter + 1
      items[i] = event(counter)
    end
    body = "[" .. table.concat(items, ",") .. "]"
  end
  return wrk.format("POST", "/v1/events", {["Content-Type"] = "application/json"}, body)
end
