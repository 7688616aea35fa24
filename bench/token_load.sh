#!/usr/bin/env bash
# Token-endpoint load test: client-credentials requests with wrk (keep-alive, 64
# connections) against Keyward and against `token-baseline` (the bare parse + digest check
# + EdDSA signature handler), in the same run, on the same machine.
#
# Keyward runs on a fresh SQLite store under target/bench-token/, and additionally on
# PostgreSQL when BENCH_DATABASE_URL is set (an empty, dedicated database: Keyward migrates
# it and creates the bootstrap client).
#
# Environment (all optional):
#   DURATION=15          seconds per measured run
#   WARMUP=3             seconds of warm-up per server (not measured)
#   THREADS=2            wrk threads
#   CONNECTIONS=64       wrk connections
#   BENCH_DATABASE_URL   postgres://… for a second Keyward run on PostgreSQL
#   SKIP_BUILD=1         use the existing release binaries
#
# Output: a table on stdout, wrk's raw output in target/bench-token/*.txt and the numbers in
# target/bench-token/result.json.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-3}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-64}
OUT=$ROOT/target/bench-token
LUA=$ROOT/bench/token_post.lua
CLIENT_ID=bench-admin
CLIENT_SECRET=kws_bench-fixed-secret-0123456789abcdefghijklmnop

log() { printf '\n==> %s\n' "$*" >&2; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

# --- tools ------------------------------------------------------------------------------
if ! command -v wrk >/dev/null 2>&1; then
  log "installing wrk"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq wrk >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; } ||
    die "cannot install wrk"
fi
command -v curl >/dev/null 2>&1 || die "curl is required"

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  log "building release binaries (keyward, token-baseline)"
  cargo build --release -p keyward -p keyward-bench
fi
KEYWARD=$ROOT/target/release/keyward
BASELINE=$ROOT/target/release/token-baseline
[ -x "$KEYWARD" ] || die "$KEYWARD is missing"
[ -x "$BASELINE" ] || die "$BASELINE is missing"

mkdir -p "$OUT"
RUN_DIR=$(mktemp -d "$OUT/run-XXXXXX")

# --- process management -------------------------------------------------------------------
PIDS=()
stop_all() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  PIDS=()
}
stop() {
  local pid=$1 kept=() p
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  for p in "${PIDS[@]}"; do
    [ "$p" = "$pid" ] || kept+=("$p")
  done
  PIDS=("${kept[@]}")
}
trap stop_all EXIT
trap 'exit 130' INT TERM

free_port() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
  else
    echo $((20000 + RANDOM % 20000))
  fi
}

random_hex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# wait_http URL PID LOG: until the URL answers at all (any HTTP status).
wait_http() {
  local url=$1 pid=$2 logfile=$3 code
  for _ in $(seq 1 150); do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 40 "$logfile" >&2 || true
      die "the server exited during start-up (log: $logfile)"
    fi
    code=$(curl -s -o /dev/null -w '%{http_code}' "$url" 2>/dev/null) || code=000
    [ "$code" != 000 ] && return 0
    sleep 0.2
  done
  tail -n 40 "$logfile" >&2 || true
  die "no answer from $url after 30 s (log: $logfile)"
}

# start_keyward NAME DATABASE_URL PORT: sets SERVER_PID.
start_keyward() {
  local name=$1 database_url=$2 port=$3
  local dir="$RUN_DIR/$name"
  mkdir -p "$dir"
  KEYWARD_LISTEN="127.0.0.1:$port" \
    KEYWARD_ISSUER="http://127.0.0.1:$port" \
    KEYWARD_DATA_DIR="$dir" \
    KEYWARD_DATABASE_URL="$database_url" \
    KEYWARD_MASTER_SECRET="bench-$(random_hex 24)" \
    KEYWARD_BOOTSTRAP_CLIENT_ID="$CLIENT_ID" \
    KEYWARD_BOOTSTRAP_CLIENT_SECRET="$CLIENT_SECRET" \
    "$KEYWARD" serve >"$dir/server.log" 2>&1 &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  wait_http "http://127.0.0.1:$port/healthz" "$SERVER_PID" "$dir/server.log"
  local health
  health=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/healthz") || health=000
  [ "$health" = 200 ] || die "$name: /healthz answered $health (log: $dir/server.log)"
}

# start_baseline PORT SCOPE: sets SERVER_PID. SCOPE is the scope Keyward's tokens carry,
# so that both sign and send tokens of the same size (the admin client holds every
# management scope: about 200 bytes more per token than a short default would be).
start_baseline() {
  local port=$1 scope=$2
  "$BASELINE" --listen "127.0.0.1:$port" --client-id "$CLIENT_ID" --client-secret "$CLIENT_SECRET" \
    --audience "http://127.0.0.1:$port/api" --scope "$scope" >"$RUN_DIR/baseline.log" 2>&1 &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  wait_http "http://127.0.0.1:$port/oauth2/token" "$SERVER_PID" "$RUN_DIR/baseline.log"
}

# check_token NAME BASE_URL: one token request, exactly what wrk will send, must be a 200.
check_token() {
  local name=$1 base=$2 code
  code=$(curl -sS -o "$RUN_DIR/$name-token.json" -w '%{http_code}' -X POST "$base/oauth2/token" \
    -H 'content-type: application/x-www-form-urlencoded' \
    --data-urlencode grant_type=client_credentials \
    --data-urlencode "client_id=$CLIENT_ID" \
    --data-urlencode "client_secret=$CLIENT_SECRET" \
    --data-urlencode "audience=$base/api") || code=000
  if [ "$code" != 200 ] || ! grep -q '"access_token"' "$RUN_DIR/$name-token.json"; then
    cat "$RUN_DIR/$name-token.json" >&2 2>/dev/null || true
    die "$name: the token request answered $code, not 200 with a token"
  fi
  echo "$name: token request ok (200)" >&2
}

# to_ms VALUE: wrk latency ("812.00us", "1.23ms", "1.01s", "2.00m") in milliseconds.
to_ms() {
  awk -v v="$1" 'BEGIN {
    n = v + 0
    if (v ~ /us$/) n = n / 1000
    else if (v ~ /ms$/) n = n
    else if (v ~ /m$/) n = n * 60000
    else if (v ~ /s$/) n = n * 1000
    printf "%.3f", n
  }'
}

# bench NAME BASE_URL: warm-up, measured run; sets RPS, P50, P99, NON2XX.
bench() {
  local name=$1 base=$2
  local out="$OUT/$name.txt"
  export BENCH_CLIENT_ID=$CLIENT_ID BENCH_CLIENT_SECRET=$CLIENT_SECRET BENCH_AUDIENCE="$base/api"
  log "$name: warm-up ${WARMUP}s"
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"${WARMUP}s" -s "$LUA" "$base" >/dev/null
  log "$name: wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency"
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$LUA" "$base" | tee "$out" >&2
  RPS=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
  P50=$(to_ms "$(awk '/Latency Distribution/ { d = 1 } d && $1 == "50%" { print $2; exit }' "$out")")
  P99=$(to_ms "$(awk '/Latency Distribution/ { d = 1 } d && $1 == "99%" { print $2; exit }' "$out")")
  NON2XX=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$out")
  NON2XX=${NON2XX:-0}
  [ -n "$RPS" ] || die "$name: cannot parse Requests/sec from $out"
  if [ "$NON2XX" != 0 ]; then
    echo "warning: $name answered $NON2XX non-2xx responses; its numbers are not comparable" >&2
    FAILED_RUNS+=("$name")
  fi
}

NAMES=()
declare -A R_RPS R_P50 R_P99 R_NON2XX
FAILED_RUNS=()

record() {
  NAMES+=("$1")
  R_RPS[$1]=$RPS
  R_P50[$1]=$P50
  R_P99[$1]=$P99
  R_NON2XX[$1]=$NON2XX
}

# --- servers up and verified first, so that a misconfiguration fails before any load -----
KW_PORT=$(free_port)
BASE_PORT=$(free_port)
while [ "$BASE_PORT" = "$KW_PORT" ]; do BASE_PORT=$(free_port); done

log "starting keyward (SQLite) on 127.0.0.1:$KW_PORT"
start_keyward keyward-sqlite "sqlite://$RUN_DIR/keyward-sqlite/keyward.db" "$KW_PORT"
KW_PID=$SERVER_PID
check_token keyward-sqlite "http://127.0.0.1:$KW_PORT"
KW_SCOPE=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["scope"])' "$RUN_DIR/keyward-sqlite-token.json")
log "starting token-baseline on 127.0.0.1:$BASE_PORT (scope as Keyward's: $KW_SCOPE)"
start_baseline "$BASE_PORT" "$KW_SCOPE"
BASELINE_PID=$SERVER_PID
check_token baseline "http://127.0.0.1:$BASE_PORT"

# --- measured runs, one server under load at a time -----------------------------------------
# ROUNDS alternating runs (Keyward, then the baseline, each round): background load on a
# shared machine drifts, and alternating exposes both to the same drift. The reported
# figures are the medians over the rounds; the ratio is the median of per-round ratios.
declare -A ROUND_RATIOS
for round in $(seq 1 "$ROUNDS"); do
  log "round $round of $ROUNDS"
  bench keyward-sqlite "http://127.0.0.1:$KW_PORT"
  record "keyward-sqlite#$round"
  bench baseline "http://127.0.0.1:$BASE_PORT"
  record "baseline#$round"
  ROUND_RATIOS[$round]=$(awk -v a="${R_RPS[keyward-sqlite#$round]}" -v b="${R_RPS[baseline#$round]}" 'BEGIN { printf "%.3f", a / b }')
  echo "round $round: keyward ${R_RPS[keyward-sqlite#$round]} req/s, baseline ${R_RPS[baseline#$round]} req/s, ratio ${ROUND_RATIOS[$round]}" >&2
done
stop "$KW_PID"
stop "$BASELINE_PID"

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
summarize() {
  local name=$1 rps=() p50=() p99=() non=0 r
  for r in $(seq 1 "$ROUNDS"); do
    rps+=("${R_RPS[$name#$r]}"); p50+=("${R_P50[$name#$r]}"); p99+=("${R_P99[$name#$r]}")
    non=$((non + ${R_NON2XX[$name#$r]}))
  done
  NAMES+=("$name")
  R_RPS[$name]=$(median "${rps[@]}")
  R_P50[$name]=$(median "${p50[@]}")
  R_P99[$name]=$(median "${p99[@]}")
  R_NON2XX[$name]=$non
}
NAMES=()
summarize keyward-sqlite
summarize baseline
MEDIAN_RATIO=$(median "${ROUND_RATIOS[@]}")

if [ -n "${BENCH_DATABASE_URL:-}" ]; then
  PG_PORT=$(free_port)
  log "starting keyward (PostgreSQL) on 127.0.0.1:$PG_PORT"
  start_keyward keyward-postgres "$BENCH_DATABASE_URL" "$PG_PORT"
  PG_PID=$SERVER_PID
  check_token keyward-postgres "http://127.0.0.1:$PG_PORT"
  bench keyward-postgres "http://127.0.0.1:$PG_PORT"
  record keyward-postgres
  stop "$PG_PID"
fi

# --- report -------------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "null" }'; }

printf '\n%-18s %12s %10s %10s %8s %16s\n' server "req/s" "p50 ms" "p99 ms" non2xx "req/s vs base"
for name in "${NAMES[@]}"; do
  printf '%-18s %12.1f %10.3f %10.3f %8s %16s\n' "$name" "${R_RPS[$name]}" "${R_P50[$name]}" \
    "${R_P99[$name]}" "${R_NON2XX[$name]}" "$(ratio "${R_RPS[$name]}" "${R_RPS[baseline]}")"
done
echo
for name in "${NAMES[@]}"; do
  [ "$name" = baseline ] && continue
  echo "$name/baseline: throughput $(ratio "${R_RPS[$name]}" "${R_RPS[baseline]}"), p99 $(ratio "${R_P99[$name]}" "${R_P99[baseline]}")"
done
echo "keyward-sqlite/baseline, median of the $ROUNDS per-round ratios: $MEDIAN_RATIO (rounds: ${ROUND_RATIOS[*]})"

{
  printf '{\n  "wrk": {"threads": %s, "connections": %s, "duration_secs": %s},\n' "$THREADS" "$CONNECTIONS" "$DURATION"
  printf '  "cpus": %s,\n  "results": {\n' "$(nproc 2>/dev/null || echo null)"
  sep=""
  for name in "${NAMES[@]}"; do
    printf '%s    "%s": {"requests_per_sec": %s, "p50_ms": %s, "p99_ms": %s, "non_2xx": %s}' \
      "$sep" "$name" "${R_RPS[$name]}" "${R_P50[$name]}" "${R_P99[$name]}" "${R_NON2XX[$name]}"
    sep=$',\n'
  done
  printf '\n  },\n  "ratios": {\n'
  sep=""
  for name in "${NAMES[@]}"; do
    [ "$name" = baseline ] && continue
    printf '%s    "%s_vs_baseline": {"throughput": %s, "p99": %s}' "$sep" "$name" \
      "$(ratio "${R_RPS[$name]}" "${R_RPS[baseline]}")" "$(ratio "${R_P99[$name]}" "${R_P99[baseline]}")"
    sep=$',\n'
  done
  printf '\n  },\n  "rounds": %s,\n  "median_round_ratio": %s,\n  "round_ratios": [%s]\n}\n' "$ROUNDS" "$MEDIAN_RATIO" "$(IFS=,; echo "${ROUND_RATIOS[*]}")"
} >"$OUT/result.json"
echo "results: $OUT/result.json" >&2

if [ "${#FAILED_RUNS[@]}" -gt 0 ]; then
  die "non-2xx responses during: ${FAILED_RUNS[*]} (server logs: $RUN_DIR)"
fi
rm -rf "$RUN_DIR"
