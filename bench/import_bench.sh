#!/usr/bin/env bash
# User-import benchmark: `keyward import` (release build) of ROWS generated users with
# pre-hashed passwords (bench/gen_users.py: Django PBKDF2, salted SHA-256, LDAP SSHA;
# every user with an email, phone, custom data and a social identity) straight into a fresh
# store, on SQLite and on PostgreSQL. Reports users/s (the job's own start-to-finish time)
# and the peak resident memory of the process (GNU time).
#
# Environment (all optional):
#   ROWS=1000000
#   STORES=sqlite,postgres
#   PG_ADMIN_URL          the cluster (default postgres://postgres@127.0.0.1:5432/postgres)
#   SKIP_BUILD=1          use the existing target/release/keyward
#   KEEP=1                keep the generated file and databases
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
ROWS=${ROWS:-1000000}
STORES=${STORES:-sqlite,postgres}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
OUT=$ROOT/target/bench-import
mkdir -p "$OUT"

log() { printf '\n==> %s\n' "$*" >&2; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}
for tool in jq python3 /usr/bin/time; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
done

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  log "building keyward (release)"
  cargo build --release -p keyward >&2
fi
BIN=$ROOT/target/release/keyward

FILE=$OUT/users-$ROWS.ndjson
if [ ! -s "$FILE" ]; then
  log "generating $ROWS users"
  python3 bench/gen_users.py "$ROWS" >"$FILE.tmp"
  mv "$FILE.tmp" "$FILE"
fi
log "input: $(du -h "$FILE" | cut -f1), $ROWS rows"

run() {
  local store=$1 url=$2
  log "importing into $store"
  KEYWARD_DATABASE_URL="$url" KEYWARD_DATA_DIR="$OUT/data-$store" \
    KEYWARD_MASTER_SECRET=bench-master-secret-0123456789abcdef \
    /usr/bin/time -v -o "$OUT/$store.time" \
    "$BIN" import "$FILE" --source bench --quiet --json >"$OUT/$store.job.json"
  local created started finished secs rss
  created=$(jq -r '.counts.created' "$OUT/$store.job.json")
  started=$(jq -r '.created_at' "$OUT/$store.job.json")
  finished=$(jq -r '.finished_at' "$OUT/$store.job.json")
  secs=$(python3 -c "import sys,datetime as d;p=lambda s:d.datetime.fromisoformat(s.replace('Z','+00:00'));print((p(sys.argv[2])-p(sys.argv[1])).total_seconds())" "$started" "$finished")
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$OUT/$store.time")
  [ "$created" = "$ROWS" ] || die "$store: created $created of $ROWS: $(jq -c '.errors[:3]' "$OUT/$store.job.json")"
  printf '%-10s %10s users in %8.2f s  %9.0f users/s  peak RSS %6.1f MB\n' \
    "$store" "$created" "$secs" "$(python3 -c "print($created/$secs)")" "$(python3 -c "print($rss/1024)")"
}

printf '\n%-10s %s\n' store result
IFS=, read -ra WANT <<<"$STORES"
for store in "${WANT[@]}"; do
  case $store in
    sqlite)
      rm -rf "$OUT/sqlite-db" && mkdir -p "$OUT/sqlite-db"
      run sqlite "sqlite://$OUT/sqlite-db/keyward.db"
      [ "${KEEP:-0}" = 1 ] || rm -rf "$OUT/sqlite-db"
      ;;
    postgres)
      db=kw_bench_import_$$
      psql "$PG_ADMIN_URL" -qc "CREATE DATABASE $db" >/dev/null
      # Start from a clean cluster: no dirty pages of an earlier run still being written.
      psql "$PG_ADMIN_URL" -qc "CHECKPOINT" >/dev/null
      run postgres "${PG_ADMIN_URL%/*}/$db"
      [ "${KEEP:-0}" = 1 ] || psql "$PG_ADMIN_URL" -qc "DROP DATABASE $db WITH (FORCE)" >/dev/null
      ;;
    *) die "unknown store $store" ;;
  esac
done
[ "${KEEP:-0}" = 1 ] || rm -f "$FILE"
