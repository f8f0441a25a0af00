-- Appended to wrk_json.lua for claim 13: every request reads one of the orders the lab seeded,
-- picked at random, so the reads spread over the whole index as real traffic would. Arguments
-- after `--`: the file of ids, one a line. The URL's path ends in /orders/.
local ids = {}
local threads = 0

setup = function(thread)
  threads = threads + 1
  thread:set("seed", threads)
end

init = function(args)
  for line in io.lines(args[1]) do
    ids[#ids + 1] = line
  end
  if #ids == 0 then
    error("no ids in " .. args[1])
  end
  math.randomseed(seed or 1)
end

request = function()
  return wrk.format(nil, wrk.path .. ids[math.random(#ids)])
end
