#!/usr/bin/env bash
# The whole test suite: unit tests, the storage conformance suite and the end-to-end tests
# on SQLite and PostgreSQL (cargo nextest), then the seed's admin flow script against a live
# server on each store. Starts PostgreSQL itself when it is not running.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

log() { printf '\n==> %s\n' "$*"; }

# --- PostgreSQL -----------------------------------------------------------------------
PGHOST_ADDR=127.0.0.1
PGPORT_NUM=${KEYWARD_TEST_PG_PORT:-5432}
export KEYWARD_TEST_POSTGRES_URL=${KEYWARD_TEST_POSTGRES_URL:-postgres://postgres@$PGHOST_ADDR:$PGPORT_NUM/postgres}

pg_ready() { pg_isready -h "$PGHOST_ADDR" -p "$PGPORT_NUM" -q 2>/dev/null; }

ensure_postgres() {
  if ! command -v pg_isready >/dev/null 2>&1; then
    log "installing PostgreSQL (not found)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  pg_ready && return 0
  if [ -d /etc/postgresql ] && [ -n "$(ls /etc/postgresql 2>/dev/null)" ]; then
    log "starting the system PostgreSQL cluster"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start || true
    for _ in $(seq 1 30); do pg_ready && return 0; sleep 1; done
  fi
  log "starting a throwaway PostgreSQL cluster under target/pgdata"
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
  local data="$ROOT/target/pgdata"
  mkdir -p "$ROOT/target"
  if [ ! -f "$data/PG_VERSION" ]; then
    rm -rf "$data"; mkdir -p "$data"
    if [ "$(id -u)" = 0 ]; then
      chown postgres "$data"
      runuser -u postgres -- "$bin/initdb" -D "$data" -U postgres --auth=trust >/dev/null
    else
      "$bin/initdb" -D "$data" -U postgres --auth=trust >/dev/null
    fi
  fi
  local start=("$bin/pg_ctl" -D "$data" -l "$ROOT/target/pgdata.log" -w -o "-p $PGPORT_NUM -k /tmp -c listen_addresses=$PGHOST_ADDR" start)
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "${start[@]}" >/dev/null; else "${start[@]}" >/dev/null; fi
  for _ in $(seq 1 30); do pg_ready && return 0; sleep 1; done
  echo "PostgreSQL did not start" >&2
  exit 1
}

drop_test_databases() {
  psql "$KEYWARD_TEST_POSTGRES_URL" -Atqc "SELECT datname FROM pg_database WHERE datname LIKE 'kw\_test\_%'" 2>/dev/null |
    while read -r db; do
      [ -n "$db" ] && psql "$KEYWARD_TEST_POSTGRES_URL" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
    done
}

ensure_postgres
drop_test_databases
trap drop_test_databases EXIT

# --- tools ------------------------------------------------------------------------------
need() { command -v "$1" >/dev/null 2>&1; }
if ! need jq || ! need curl; then
  log "installing jq and curl"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq jq curl >/dev/null
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  log "installing cargo-nextest"
  cargo install --locked cargo-nextest
fi

# --- Rust tests -------------------------------------------------------------------------
log "cargo nextest (unit, conformance on SQLite + PostgreSQL, end-to-end)"
cargo nextest run --workspace --no-fail-fast

# --- the seed's admin flow against a live server ---------------------------------------
log "building the keyward binary"
cargo build -p keyward --quiet
cargo build -p keyward-client --example admin_flow --quiet
BIN="$ROOT/target/debug/keyward"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

run_flow() {
  local store=$1 database_url=$2
  local port dir pid
  port=$(free_port)
  dir=$(mktemp -d "$ROOT/target/flow-XXXXXX")
  local secret="kws_flow-$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"
  KEYWARD_LISTEN="127.0.0.1:$port" KEYWARD_ISSUER="http://127.0.0.1:$port" KEYWARD_DATA_DIR="$dir" \
    KEYWARD_DATABASE_URL="$database_url" KEYWARD_MASTER_SECRET="flow-master-secret-0123456789abcdef" \
    KEYWARD_BOOTSTRAP_CLIENT_ID=backend-admin KEYWARD_BOOTSTRAP_CLIENT_SECRET="$secret" \
    "$BIN" serve >"$dir/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 50); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.2; done
  log "seed admin flow on $store"
  local status=0
  KEYWARD_URL="http://127.0.0.1:$port" AUTH_BACKEND_ADMIN_CLIENT_ID=backend-admin \
    AUTH_BACKEND_ADMIN_CLIENT_SECRET="$secret" bash scripts/auth_backend_admin_flow.sh || status=$?
  if [ "$status" = 0 ]; then
    log "Rust client: example admin_flow and the live-server suite on $store"
    KEYWARD_URL="http://127.0.0.1:$port" AUTH_BACKEND_ADMIN_CLIENT_ID=backend-admin \
      AUTH_BACKEND_ADMIN_CLIENT_SECRET="$secret" "$ROOT/target/debug/examples/admin_flow" || status=$?
  fi
  if [ "$status" = 0 ]; then
    KEYWARD_CLIENT_TEST_URL="http://127.0.0.1:$port" KEYWARD_CLIENT_TEST_CLIENT_ID=backend-admin \
      KEYWARD_CLIENT_TEST_CLIENT_SECRET="$secret" \
      cargo nextest run -p keyward-client --test live_server --no-fail-fast || status=$?
  fi
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
  if [ "$status" != 0 ]; then
    echo "--- server log ($store) ---" >&2; tail -n 50 "$dir/server.log" >&2
    exit "$status"
  fi
  rm -rf "$dir"
}

run_flow sqlite "sqlite://$ROOT/target/flow-sqlite-$$.db"
rm -f "$ROOT/target/flow-sqlite-$$.db"*
FLOW_DB="kw_test_flow_$$"
psql "$KEYWARD_TEST_POSTGRES_URL" -qc "CREATE DATABASE $FLOW_DB" >/dev/null
run_flow postgres "postgres://postgres@$PGHOST_ADDR:$PGPORT_NUM/$FLOW_DB"

# --- the interactive flow: headless Chromium and Authlib against live servers -------------
log "interactive flow: browser (Chromium + playwright-core) and Authlib, SQLite + PostgreSQL"
SKIP_BUILD=1 bash scripts/interactive_tests.sh

log "all tests passed"
