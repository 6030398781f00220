-- wrk script: HTTP/1.1 pipelining. Every write carries DEPTH requests (default 8) for "/",
-- and wrk counts each of the DEPTH responses as one request.
--   wrk -t1 -c50 -d5s -s bench/pipeline.lua http://127.0.0.1:PORT/ -- 8
init = function(args)
  local depth = tonumber(args[1]) or 8
  local r = {}
  for i = 1, depth do
    r[i] = wrk.format(nil, "/")
  end
  req = table.concat(r)
end

request = function()
  return req
end
