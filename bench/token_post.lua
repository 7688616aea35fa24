-- wrk script: client-credentials token requests (form body, keep-alive) against
-- POST /oauth2/token. Configured by bench/token_load.sh through the environment:
--   BENCH_CLIENT_ID, BENCH_CLIENT_SECRET, BENCH_AUDIENCE
local function form_encode(value)
  return (value:gsub("[^%w%-%._~]", function(c)
    return string.format("%%%02X", string.byte(c))
  end))
end

local client_id = os.getenv("BENCH_CLIENT_ID") or "bench-admin"
local client_secret = os.getenv("BENCH_CLIENT_SECRET") or ""
local audience = os.getenv("BENCH_AUDIENCE") or "http://127.0.0.1:8080/api"

wrk.method = "POST"
wrk.path = "/oauth2/token"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Accept"] = "application/json"
wrk.body = "grant_type=client_credentials"
  .. "&client_id=" .. form_encode(client_id)
  .. "&client_secret=" .. form_encode(client_secret)
  .. "&audience=" .. form_encode(audience)
