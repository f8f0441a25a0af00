-- Appended to wrk_json.lua for the database-path experiment: every request is POST of one
-- order as JSON. Arguments after `--`: "key" and a token unique to the run, for a new
-- Idempotency-Key on every request (token-thread-n: no two requests of any run share one, so
-- every request inserts); nothing, for no Idempotency-Key.
local body = '{"sku":"LAB-1","quantity":2,"unit_price_cents":450,"customer_email":"ada@example.com"}'
local threads = 0
local plain, prefix, n = nil, nil, 0

setup = function(thread)
  threads = threads + 1
  thread:set("thread_no", threads)
end

init = function(args)
  if args[1] == "key" then
    if not args[2] or args[2] == "" then
      error("a token unique to the run is needed after \"key\"")
    end
    prefix = args[2] .. "-" .. (thread_no or 1) .. "-"
  else
    plain = wrk.format("POST", nil, { ["Content-Type"] = "application/json" }, body)
  end
end

request = function()
  if plain then
    return plain
  end
  n = n + 1
  return wrk.format("POST", nil, { ["Content-Type"] = "application/json", ["Idempotency-Key"] = prefix .. n }, body)
end
