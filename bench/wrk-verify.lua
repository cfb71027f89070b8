-- wrk script for `GET /v1/auth/verify` with many sessions: requests cycle through the
-- cookies in the file named by COOKIES (one `name=value` a line, as written by
-- `sessiond-bench serve --cookies FILE`), so the load is spread over every session as
-- the tool's own clients spread it. Usage:
--   COOKIES=/tmp/cookies wrk -t1 -c64 -d8s -s bench/wrk-verify.lua http://127.0.0.1:PORT
local cookies = {}
for line in io.lines(os.getenv("COOKIES")) do
  if #line > 0 then cookies[#cookies + 1] = line end
end
local i = 0

request = function()
  i = i % #cookies + 1
  return wrk.format("GET", "/v1/auth/verify", { ["Cookie"] = cookies[i] })
end
