#!/usr/bin/env bash
# Password sign-in benchmark: sign-ins per second through POST /auth/sign-in against the
# release server, next to the raw Argon2id verify rate of this machine (same parameters as
# the server, one thread per core), measured in the same run by `signin-bench`
# (keyward-bench/src/bin/signin_bench.rs). Target: sign-ins/s >= 0.85 x verifies/s.
#
# Keyward runs on a fresh SQLite store under target/bench-signin/, and additionally on
# PostgreSQL when BENCH_DATABASE_URL is set (an empty, dedicated database).
#
# Environment (all optional):
#   DURATION=15            measured seconds of sign-ins (over all rounds)
#   WARMUP=3               seconds of sign-ins before the first measurement
#   ARGON2_SECS=10         seconds of raw Argon2id verification (over all rounds)
#   ROUNDS=3               alternating rounds of raw Argon2id and of sign-ins
#   CONCURRENCY=8          sign-in workers (each its own connection and cookie jar)
#   USERS=64               distinct users created and signed in
#   BENCH_DATABASE_URL     postgres://… for a second run on PostgreSQL
#   SKIP_BUILD=1           use the existing release binaries
#   ENFORCE=1              fail (exit 3) when the ratio is below the target
#
# Output: the figures on stdout; target/bench-signin/result.json (SQLite) and
# target/bench-signin/result-postgres.json (PostgreSQL, when run).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

DURATION=${DURATION:-15}
WARMUP=${WARMUP:-3}
ARGON2_SECS=${ARGON2_SECS:-10}
ROUNDS=${ROUNDS:-3}
CONCURRENCY=${CONCURRENCY:-8}
USERS=${USERS:-64}
ARGON2_MEMORY_KIB=19456
ARGON2_ITERATIONS=2
ARGON2_PARALLELISM=1
OUT=$ROOT/target/bench-signin
CLIENT_ID=bench-admin
CLIENT_SECRET=kws_bench-fixed-secret-0123456789abcdefghijklmnop

log() { printf '\n==> %s\n' "$*" >&2; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}
command -v curl >/dev/null 2>&1 || die "curl is required"

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  log "building release binaries (keyward, signin-bench)"
  cargo build --release -p keyward -p keyward-bench
fi
KEYWARD=$ROOT/target/release/keyward
BENCH=$ROOT/target/release/signin-bench
[ -x "$KEYWARD" ] || die "$KEYWARD is missing"
[ -x "$BENCH" ] || die "$BENCH is missing"

mkdir -p "$OUT"
RUN_DIR=$(mktemp -d "$OUT/run-XXXXXX")

SERVER_PID=""
stop_server() {
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
  fi
}
trap stop_server EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
random_hex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# start_keyward NAME DATABASE_URL PORT: sets SERVER_PID.
start_keyward() {
  local name=$1 database_url=$2 port=$3 dir="$RUN_DIR/$1"
  mkdir -p "$dir"
  KEYWARD_LISTEN="127.0.0.1:$port" \
    KEYWARD_ISSUER="http://127.0.0.1:$port" \
    KEYWARD_DATA_DIR="$dir" \
    KEYWARD_DATABASE_URL="$database_url" \
    KEYWARD_MASTER_SECRET="bench-$(random_hex 24)" \
    KEYWARD_BOOTSTRAP_CLIENT_ID="$CLIENT_ID" \
    KEYWARD_BOOTSTRAP_CLIENT_SECRET="$CLIENT_SECRET" \
    KEYWARD_ARGON2_MEMORY_KIB=$ARGON2_MEMORY_KIB \
    KEYWARD_ARGON2_ITERATIONS=$ARGON2_ITERATIONS \
    KEYWARD_ARGON2_PARALLELISM=$ARGON2_PARALLELISM \
    "$KEYWARD" serve >"$dir/server.log" 2>&1 &
  SERVER_PID=$!
  local code
  for _ in $(seq 1 150); do
    kill -0 "$SERVER_PID" 2>/dev/null || { tail -n 40 "$dir/server.log" >&2; die "$name: the server exited during start-up"; }
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/healthz" 2>/dev/null) || code=000
    [ "$code" = 200 ] && return 0
    sleep 0.2
  done
  tail -n 40 "$dir/server.log" >&2
  die "$name: no 200 from /healthz after 30 s"
}

# run NAME DATABASE_URL RESULT_FILE
run() {
  local name=$1 database_url=$2 result=$3 port status=0
  port=$(free_port)
  log "starting keyward ($name, release) on 127.0.0.1:$port"
  start_keyward "$name" "$database_url" "$port"
  local args=(--url "http://127.0.0.1:$port" --admin-client-id "$CLIENT_ID" --admin-client-secret "$CLIENT_SECRET"
    --users "$USERS" --concurrency "$CONCURRENCY" --duration "$DURATION" --warmup "$WARMUP"
    --argon2-secs "$ARGON2_SECS" --rounds "$ROUNDS" --server-pid "$SERVER_PID" --argon2-memory-kib "$ARGON2_MEMORY_KIB"
    --argon2-iterations "$ARGON2_ITERATIONS" --argon2-parallelism "$ARGON2_PARALLELISM"
    --store "$name" --out "$result")
  [ "${ENFORCE:-0}" = 1 ] && args+=(--enforce)
  "$BENCH" "${args[@]}" || status=$?
  stop_server
  if [ "$status" != 0 ]; then
    echo "--- server log ($name): $RUN_DIR/$name/server.log ---" >&2
    tail -n 60 "$RUN_DIR/$name/server.log" >&2
    exit "$status"
  fi
}

run sqlite "sqlite://$RUN_DIR/sqlite/keyward.db" "$OUT/result.json"
if [ -n "${BENCH_DATABASE_URL:-}" ]; then
  run postgres "$BENCH_DATABASE_URL" "$OUT/result-postgres.json"
fi
rm -rf "$RUN_DIR"
