-- Appended to wrk_json.lua for runs whose connections must not start in one burst: each
-- connection's first request waits a random 0..stagger ms (wrk does not count the wait in the
-- latency), later ones go at once (or as the tiny mode paces them: wrk_json.lua). Arguments after `--`: stagger ms, connections per thread.
-- Without it, N connections each waiting the same L stay in lockstep for the whole run (a
-- closed loop of equal waits never spreads out), and every worker meets its share of the N
-- requests in one burst every L.
local stagger_ms, first = 0, 0

init = function(args)
  stagger_ms = tonumber(args[1]) or 0
  first = tonumber(args[2]) or 0
  math.randomseed(os.time() + math.floor(os.clock() * 1e6) + tonumber(tostring({}):match("0x(%x+)") or "0", 16))
end

delay = function()
  if first > 0 then
    first = first - 1
    return math.random(0, stagger_ms)
  end
  return paced()
end
