#!/usr/bin/env bash
# The interactive sign-in / authorization-code flow against real `keyward serve` processes,
# on SQLite and PostgreSQL:
#   1. keyward-server/tests/browser: headless Chromium (Debian's, driven by playwright-core)
#      signs up, creates a workspace, consents; then the code exchange, tokens, userinfo,
#      refresh rotation and reuse detection (node --test);
#   2. keyward-server/tests/browser/claim.test.mjs: the `npx create-db` experience through
#      the real binary: `keyward serve` with the local PostgreSQL as region `local`, the
#      reference partner (`keyward partner serve`), `keyward create-db` (JSON, --env file,
#      human output, regions), psql on the new database, then the claim in headless
#      Chromium (claim page, sign-up, new workspace, consent, the partner's success page),
#      the audit log's project.transfer, the spent claim link, the data still readable;
#   3. keyward-server/tests/interop/authlib_flow.py: the same flow as 1 through Authlib's
#      OAuth2Session, the hosted pages driven with plain requests;
#   4. keyward-server/tests/interop/providers_selftest.py: the third-party OAuth 2.0 servers
#      of the external-application test (providers.py) driven by Authlib's client;
#   5. keyward-server/tests/browser/external.test.mjs: external applications (Keyward as an
#      OAuth client) in headless Chromium against providers.py's standard and quirky
#      servers: connect, token, proxy, refresh, one refresh for 50 concurrent requests (and,
#      on PostgreSQL, across two `keyward serve` processes), invalid_grant and reconnect,
#      disable/enable/reset/delete, private-mode templates, the refusals.
#
# Installs what is missing: Chromium (apt), the npm packages (npm ci), a Python venv under
# target/interop-venv with the pinned requirements. Builds the debug binary first
# (cargo build -p keyward) unless SKIP_BUILD=1 and target/debug/keyward exists.
#
# Environment (all optional):
#   SKIP_BUILD=1                  use the existing target/debug/keyward
#   STORES=sqlite,postgres        which stores to run on
#   KEYWARD_TEST_POSTGRES_URL     maintenance database URL (CREATE/DROP DATABASE), default
#                                 postgres://postgres@127.0.0.1:5432/postgres; PostgreSQL must
#                                 be running (scripts/test.sh starts it; this script starts
#                                 the system cluster if it is not). The claim test needs it
#                                 on every store: it hosts the provisioned databases.
#   CLAIM_TEST=0                  skip the create-db / claim test
#   EXTERNAL_TEST=0               skip the providers self-test and the external-application test
#   KEYWARD_BIN                   another server binary
#
# Exit status: 0 when all suites pass; otherwise 1, with the failing suite's output and
# the server logs (printed by the suites; kept under target/browser-tests and
# target/interop-tests).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

STORES=${STORES:-sqlite,postgres}
CLAIM_TEST=${CLAIM_TEST:-1}
EXTERNAL_TEST=${EXTERNAL_TEST:-1}
export KEYWARD_TEST_POSTGRES_URL=${KEYWARD_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
export KEYWARD_BIN=${KEYWARD_BIN:-$ROOT/target/debug/keyward}
BROWSER_DIR=$ROOT/keyward-server/tests/browser
INTEROP_DIR=$ROOT/keyward-server/tests/interop
VENV=$ROOT/target/interop-venv

log() { printf '\n==> %s\n' "$*"; }
die() {
  printf '\nerror: %s\n' "$*" >&2
  exit 1
}
need() { command -v "$1" >/dev/null 2>&1; }

APT_UPDATED=0
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  if [ "$APT_UPDATED" = 0 ]; then
    apt-get update -qq >/dev/null || true
    APT_UPDATED=1
  fi
  apt-get install -y -qq "$@" >/dev/null || die "apt-get install $* failed"
}

# --- tools ------------------------------------------------------------------------------
if [ ! -x /usr/bin/chromium ] && [ -z "${CHROMIUM_PATH:-}" ]; then
  log "installing Chromium (Debian package)"
  apt_install chromium
fi
if ! need node || ! need npm; then
  log "installing Node.js and npm"
  apt_install nodejs npm
fi
need psql || apt_install postgresql-client
need curl || apt_install curl

# PostgreSQL: for the postgres store, and for the claim test on any store (region `local`).
if [[ ",$STORES," == *,postgres,* ]] || [ "$CLAIM_TEST" = 1 ]; then
  if ! pg_isready -d "$KEYWARD_TEST_POSTGRES_URL" -q 2>/dev/null; then
    if [ -d /etc/postgresql ] && [ -n "$(ls /etc/postgresql 2>/dev/null)" ] && need pg_ctlcluster; then
      log "starting the system PostgreSQL cluster"
      pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start || true
      for _ in $(seq 1 30); do pg_isready -d "$KEYWARD_TEST_POSTGRES_URL" -q 2>/dev/null && break; sleep 1; done
    fi
    pg_isready -d "$KEYWARD_TEST_POSTGRES_URL" -q 2>/dev/null ||
      die "PostgreSQL is not reachable at $KEYWARD_TEST_POSTGRES_URL (start it, or STORES=sqlite CLAIM_TEST=0)"
  fi
fi

# npm packages: `npm ci` when node_modules does not match package-lock.json.
LOCK_SUM=$(sha256sum "$BROWSER_DIR/package-lock.json" | cut -d' ' -f1)
if [ ! -f "$BROWSER_DIR/node_modules/.keyward-lock-sum" ] ||
  [ "$(cat "$BROWSER_DIR/node_modules/.keyward-lock-sum")" != "$LOCK_SUM" ]; then
  log "npm ci (keyward-server/tests/browser)"
  (cd "$BROWSER_DIR" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$LOCK_SUM" >"$BROWSER_DIR/node_modules/.keyward-lock-sum"
fi

# Python venv with the pinned requirements, reinstalled when requirements.txt changes.
REQ_SUM=$(sha256sum "$INTEROP_DIR/requirements.txt" | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ] || [ ! -f "$VENV/.keyward-req-sum" ] ||
  [ "$(cat "$VENV/.keyward-req-sum")" != "$REQ_SUM" ]; then
  log "Python venv for the Authlib test and providers.py ($VENV)"
  need python3 || apt_install python3
  if ! python3 -m venv "$VENV" 2>/dev/null; then
    apt_install python3-venv
    python3 -m venv "$VENV"
  fi
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$INTEROP_DIR/requirements.txt"
  echo "$REQ_SUM" >"$VENV/.keyward-req-sum"
fi

# --- the server binary ---------------------------------------------------------------------
if [ "${SKIP_BUILD:-0}" != 1 ] || [ ! -x "$KEYWARD_BIN" ]; then
  log "cargo build -p keyward"
  cargo build -p keyward
fi
[ -x "$KEYWARD_BIN" ] || die "$KEYWARD_BIN is missing"

# --- the suites ----------------------------------------------------------------------------
# Server directories of failed runs are kept; start clean so that only this run's are shown.
rm -rf "$ROOT/target/browser-tests" "$ROOT/target/interop-tests"
FAILED=()

log "browser test (headless Chromium) on: $STORES"
if ! (cd "$BROWSER_DIR" && KEYWARD_BROWSER_STORES=$STORES node --test --test-concurrency=1 --test-reporter=spec interactive.test.mjs); then
  FAILED+=("browser")
fi

if [ "$CLAIM_TEST" = 1 ]; then
  log "create-db and claim test (keyward partner serve, keyward create-db, psql, headless Chromium) on: $STORES"
  if ! (cd "$BROWSER_DIR" && KEYWARD_BROWSER_STORES=$STORES node --test --test-concurrency=1 --test-reporter=spec claim.test.mjs); then
    FAILED+=("claim")
  fi
fi

log "Authlib interop test on: $STORES"
if ! "$VENV/bin/python" "$INTEROP_DIR/authlib_flow.py" --stores "$STORES"; then
  FAILED+=("authlib")
fi

if [ "$EXTERNAL_TEST" = 1 ]; then
  log "providers.py self-test (the third-party OAuth 2.0 servers of the external-application test)"
  if ! "$VENV/bin/python" "$INTEROP_DIR/providers_selftest.py"; then
    FAILED+=("providers")
  fi

  log "external-application test (headless Chromium, providers.py standard and quirky) on: $STORES"
  if ! (cd "$BROWSER_DIR" && KEYWARD_BROWSER_STORES=$STORES KEYWARD_INTEROP_PYTHON="$VENV/bin/python" node --test --test-concurrency=1 --test-reporter=spec external.test.mjs); then
    FAILED+=("external")
  fi
fi

if [ "${#FAILED[@]}" -gt 0 ]; then
  printf '\n!!! interactive tests FAILED: %s\n' "${FAILED[*]}" >&2
  for d in "$ROOT"/target/browser-tests/*/ "$ROOT"/target/interop-tests/*/; do
    [ -f "$d/server.log" ] || continue
    printf '\n--- server log kept: %sserver.log (last 60 lines) ---\n' "$d" >&2
    tail -n 60 "$d/server.log" >&2
    if [ -f "$d/partner.log" ]; then
      printf '\n--- partner log kept: %spartner.log (last 40 lines) ---\n' "$d" >&2
      tail -n 40 "$d/partner.log" >&2
    fi
    for f in "$d"/provider-*.log; do
      [ -f "$f" ] || continue
      printf '\n--- provider log kept: %s (last 40 lines) ---\n' "$f" >&2
      tail -n 40 "$f" >&2
    done
  done
  exit 1
fi
log "interactive tests passed (browser, claim, Authlib, providers and external, on $STORES)"
