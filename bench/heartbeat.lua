-- wrk script: POST /api/daemon/heartbeat with real heartbeat bodies.
--
--   wrk -t2 -c16 -d10s --latency -s bench/heartbeat.lua http://127.0.0.1:8000 -- <api-key> [daemons] [spread]
--
-- daemonId cycles over daemon_00000 .. daemon_<daemons-1> (default 10000), each
-- wrk thread from its own offset. tasksProcessed increases with every beat,
-- lastHeartbeat is the current time (ISO-8601, UTC, "Z"), status is healthy.
-- With "spread", each daemon also sends X-Forwarded-For: 10.0.x.y of its own, as
-- if every daemon had its own address and a proxy in front (TRUSTED_PROXY_HOPS=1).

local thread_count = 0

function setup(thread)
   thread:set("tid", thread_count)
   thread_count = thread_count + 1
end

function init(args)
   local key = args[1]
   if key == nil or key == "" then
      error("usage: wrk ... -s heartbeat.lua <url> -- <api-key> [daemons] [spread]")
   end
   daemons = tonumber(args[2] or "10000")
   spread = args[3] == "spread"
   -- Threads start far apart in the cycle and step by one, so two threads are
   -- never on the same daemon at the same moment.
   counter = ((tid or 0) * 4999) % daemons
   beats = 0
   wrk.headers["X-API-Key"] = key
   wrk.headers["Content-Type"] = "application/json"
   wrk.method = "POST"
   wrk.path = "/api/daemon/heartbeat"
   stamp_second = -1
   stamp = ""
end

function request()
   local now = os.time()
   if now ~= stamp_second then
      stamp_second = now
      stamp = os.date("!%Y-%m-%dT%H:%M:%SZ", now)
   end
   local index = counter % daemons
   counter = counter + 1
   beats = beats + 1
   local body = string.format(
      '{"daemonId":"daemon_%05d","status":"healthy","tasksProcessed":%d,'
         .. '"currentTask":"evt_%d","lastHeartbeat":"%s"}',
      index, beats, beats, stamp)
   if spread then
      wrk.headers["X-Forwarded-For"] = string.format("10.0.%d.%d", math.floor(index / 256), index % 256)
   end
   return wrk.format(nil, nil, nil, body)
end
