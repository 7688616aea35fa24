#!/usr/bin/env bash
# Provisioning benchmark: the time of `POST /v1/projects` (project row, real CREATE ROLE +
# CREATE DATABASE + REVOKE/GRANT in the local PostgreSQL, response with the connection
# string) as a partner sees it, sequential requests, median and p95.
#
# Keyward (release build) runs on a fresh SQLite store under target/bench-provision/ with the
# local PostgreSQL as its region, and also on a fresh PostgreSQL store database. Each created
# project is deleted afterwards (through the API: its database and role are dropped).
#
# Environment (all optional):
#   REQUESTS=60           projects created per store (the first WARMUP are not counted)
#   WARMUP=5
#   PG_ADMIN_URL          the cluster (default postgres://postgres@127.0.0.1:5432/postgres)
#   STORES=sqlite,postgres
#   SKIP_BUILD=1          use the existing target/release/keyward
#
# Output: a table on stdout; the raw per-request times (seconds) in
# target/bench-provision/<store>.times.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

REQUESTS=${REQUESTS:-60}
WARMUP=${WARMUP:-5}
STORES=${STORES:-sqlite,postgres}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
OUT=$ROOT/target/bench-provision
ADMIN_ID=bench-admin
ADMIN_SECRET=kws_bench-fixed-secret-0123456789abcdefghijklmnop

log() { printf '\n==> %s\n' "$*" >&2; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}
for tool in curl jq psql; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
done
pg_isready -d "$PG_ADMIN_URL" -q || die "PostgreSQL is not reachable at $PG_ADMIN_URL"

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  log "building the release binary"
  cargo build --release -p keyward
fi
KEYWARD=$ROOT/target/release/keyward
[ -x "$KEYWARD" ] || die "$KEYWARD is missing"
rm -rf "$OUT"
mkdir -p "$OUT"

SERVER_PID=
STORE_DB=
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  [ -n "$STORE_DB" ] && psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $STORE_DB WITH (FORCE)" >/dev/null 2>&1
  SERVER_PID=
  STORE_DB=
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# percentile FILE P: nearest-rank percentile of the numbers in FILE.
percentile() {
  sort -g "$1" | awk -v p="$2" '{a[NR]=$1} END {i=int((p/100)*NR+0.999999); if(i<1)i=1; if(i>NR)i=NR; printf "%.1f", a[i]*1000}'
}

run_store() {
  local store=$1 port base dir url
  port=$(free_port)
  base="http://127.0.0.1:$port"
  dir="$OUT/$store"
  mkdir -p "$dir"
  if [ "$store" = postgres ]; then
    STORE_DB="kw_bench_provision_$$"
    psql "$PG_ADMIN_URL" -qc "CREATE DATABASE $STORE_DB" >/dev/null
    url="${PG_ADMIN_URL%/*}/$STORE_DB"
  else
    url="sqlite://$dir/keyward.db"
  fi
  KEYWARD_LISTEN=127.0.0.1:$port KEYWARD_ISSUER=$base KEYWARD_DATA_DIR=$dir \
    KEYWARD_DATABASE_URL=$url KEYWARD_MASTER_SECRET=bench-master-secret-0123456789abcdef \
    KEYWARD_BOOTSTRAP_CLIENT_ID=$ADMIN_ID KEYWARD_BOOTSTRAP_CLIENT_SECRET=$ADMIN_SECRET \
    KEYWARD_LOCAL_REGION_URL=$PG_ADMIN_URL RUST_LOG=warn \
    "$KEYWARD" serve >"$dir/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 100); do
    curl -fsS "$base/healthz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  local admin account app client_id secret token
  admin=$(curl -fsS "$base/oauth2/token" -H 'content-type: application/json' \
    -d "{\"grant_type\":\"client_credentials\",\"client_id\":\"$ADMIN_ID\",\"client_secret\":\"$ADMIN_SECRET\",\"audience\":\"$base/api\"}" | jq -r .access_token)
  account=$(curl -fsS "$base/api/accounts" -H "authorization: Bearer $admin" -H 'content-type: application/json' \
    -d '{"name":"Bench Partner"}' | jq -r .id)
  app=$(curl -fsS "$base/api/applications" -H "authorization: Bearer $admin" -H 'content-type: application/json' \
    -d "{\"name\":\"Bench Partner\",\"kind\":\"web\",\"partner\":true,\"account_id\":\"$account\",\"redirect_uris\":[\"http://127.0.0.1:9/cb\"],\"claim_uri\":\"http://127.0.0.1:9/claim\",\"grants\":[{\"resource\":\"$base/v1\",\"scopes\":[\"projects:read\",\"projects:write\"]}]}")
  client_id=$(jq -r .application.client_id <<<"$app")
  secret=$(jq -r .client_secret <<<"$app")
  token=$(curl -fsS "$base/oauth2/token" -u "$client_id:$secret" \
    -d "grant_type=client_credentials&audience=$base/v1" | jq -r .access_token)
  [ -n "$token" ] && [ "$token" != null ] || die "no integration token ($store)"

  log "$store store: $REQUESTS × POST /v1/projects (first $WARMUP not counted)"
  local i body status ids=() times="$dir.times"
  : >"$times"
  for i in $(seq 1 "$REQUESTS"); do
    body=$(curl -sS -o "$dir/last.json" -w '%{http_code} %{time_total}' "$base/v1/projects" \
      -H "authorization: Bearer $token" -H 'content-type: application/json' \
      -d "{\"name\":\"bench-$i\",\"ttlSeconds\":1800}")
    status=${body%% *}
    [ "$status" = 201 ] || die "POST /v1/projects answered $status: $(cat "$dir/last.json")"
    ids+=("$(jq -r .data.id "$dir/last.json")")
    [ "$i" -gt "$WARMUP" ] && echo "${body#* }" >>"$times"
  done
  for id in "${ids[@]}"; do
    curl -fsS -o /dev/null -X DELETE "$base/v1/projects/$id" -H "authorization: Bearer $token"
  done
  printf '%-9s %6s %10s %10s %10s %10s\n' "$store" "$(wc -l <"$times")" \
    "$(percentile "$times" 50)" "$(percentile "$times" 95)" \
    "$(sort -g "$times" | head -n1 | awk '{printf "%.1f", $1*1000}')" \
    "$(sort -g "$times" | tail -n1 | awk '{printf "%.1f", $1*1000}')" >>"$OUT/table"
  cleanup
}

IFS=, read -r -a STORE_LIST <<<"$STORES"
for store in "${STORE_LIST[@]}"; do
  run_store "$store"
done
printf '\n%-9s %6s %10s %10s %10s %10s\n' store n median_ms p95_ms min_ms max_ms
cat "$OUT/table"
