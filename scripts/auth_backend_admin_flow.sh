#!/usr/bin/env bash
# The seed's "auth backend admin flow" against a running Keyward server, with curl:
# a machine-to-machine token (client credentials, JSON body), then the eight
# user/account/member administration calls, each checked for its exact status, then the
# audit log. Creates its own web application and root account and removes them at the end.
#
# Requires: curl and jq.
#
# Environment:
#   KEYWARD_URL                       server root (default http://127.0.0.1:8080)
#   AUTH_BACKEND_ADMIN_CLIENT_ID      an M2M client holding the management scopes
#   AUTH_BACKEND_ADMIN_CLIENT_SECRET  its secret
#   AUDIENCE                          token audience (default "$KEYWARD_URL/api")
#   APPLICATION_ID, PARENT_ACCOUNT_ID optional: use these instead of creating them
#
# Prints "ok <METHOD> <path> <status>" per call; on an unexpected status prints the body to
# stderr and exits 1. Last line on success: "admin flow: 8 passed, 0 failed".
set -euo pipefail

for tool in curl jq; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "error: $tool is required (apt-get install -y $tool)" >&2
    exit 2
  fi
done

KEYWARD_URL=${KEYWARD_URL:-http://127.0.0.1:8080}
KEYWARD_URL=${KEYWARD_URL%/}
: "${AUTH_BACKEND_ADMIN_CLIENT_ID:?AUTH_BACKEND_ADMIN_CLIENT_ID must be set}"
: "${AUTH_BACKEND_ADMIN_CLIENT_SECRET:?AUTH_BACKEND_ADMIN_CLIENT_SECRET must be set}"
AUDIENCE=${AUDIENCE:-$KEYWARD_URL/api}

WORK=$(mktemp -d)
PASSED=0
TOTAL=8
APPLICATION_ID=${APPLICATION_ID:-}
PARENT_ACCOUNT_ID=${PARENT_ACCOUNT_ID:-}
CREATED_APPLICATION=""
CREATED_PARENT=""
USER_ID=""
CHILD_ID=""

quiet_delete() {
  if [ -n "$1" ]; then
    curl -sS -o /dev/null -H @"$WORK/auth" -X DELETE "$KEYWARD_URL$1" 2>/dev/null || true
  fi
}

# Best-effort removal of whatever a failed run left behind; quiet.
cleanup() {
  local status=$?
  if [ -f "$WORK/auth" ]; then
    quiet_delete "${CHILD_ID:+/api/accounts/$CHILD_ID?cascade=true}"
    quiet_delete "${USER_ID:+/api/users/$USER_ID?force=true}"
    quiet_delete "${CREATED_PARENT:+/api/accounts/$CREATED_PARENT?cascade=true}"
    quiet_delete "${CREATED_APPLICATION:+/api/applications/$CREATED_APPLICATION}"
  fi
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT

fail() {
  echo "FAIL $*" >&2
  echo "admin flow: $PASSED passed, 1 failed" >&2
  exit 1
}

# call METHOD PATH EXPECTED_STATUS [JSON_BODY]
# Sends the request with the bearer token; the response body is left in $RESPONSE.
call() {
  local method=$1 path=$2 expected=$3 body=${4-}
  local args=(-sS -X "$method" -o "$WORK/body" -w '%{http_code}' -H @"$WORK/auth"
    -H 'accept: application/json, application/problem+json')
  if [ -n "$body" ]; then
    args+=(-H 'content-type: application/json' --data-binary "$body")
  fi
  local status
  status=$(curl "${args[@]}" "$KEYWARD_URL$path") || fail "$method $path: request failed (is $KEYWARD_URL up?)"
  RESPONSE=$(cat "$WORK/body")
  if [ "$status" != "$expected" ]; then
    printf '%s\n' "$RESPONSE" >&2
    fail "$method $path: expected $expected, got $status"
  fi
  echo "ok $method $path $status"
}

# field JQ_FILTER: a string from $RESPONSE; fails when absent.
field() {
  local value
  value=$(printf '%s' "$RESPONSE" | jq -er "$1") || {
    printf '%s\n' "$RESPONSE" >&2
    fail "response has no $1"
  }
  printf '%s' "$value"
}

step() {
  PASSED=$((PASSED + 1))
}

# --- 0. token: client credentials with a JSON body, exactly like the seed's curl ---------
jq -n \
  --arg client_id "$AUTH_BACKEND_ADMIN_CLIENT_ID" \
  --arg client_secret "$AUTH_BACKEND_ADMIN_CLIENT_SECRET" \
  --arg audience "$AUDIENCE" \
  '{grant_type: "client_credentials", client_id: $client_id, client_secret: $client_secret, audience: $audience}' \
  >"$WORK/token_request"
status=$(curl -sS -X POST "$KEYWARD_URL/oauth2/token" \
  -H "content-type: application/json" \
  --data-binary @"$WORK/token_request" \
  -o "$WORK/token" -w '%{http_code}') || fail "POST /oauth2/token: request failed (is $KEYWARD_URL up?)"
if [ "$status" != 200 ]; then
  cat "$WORK/token" >&2
  echo >&2
  fail "POST /oauth2/token: expected 200, got $status"
fi
ACCESS_TOKEN=$(jq -er '.access_token' "$WORK/token") || fail "token response has no access_token"
TOKEN_TYPE=$(jq -r '.token_type' "$WORK/token")
[ "${TOKEN_TYPE,,}" = bearer ] || fail "token_type is $TOKEN_TYPE, not Bearer"
rm -f "$WORK/token_request"
# The Authorization header lives in a file so that the token is not in any argv.
printf 'authorization: Bearer %s\n' "$ACCESS_TOKEN" >"$WORK/auth"
echo "ok POST /oauth2/token 200 (expires_in $(jq -r '.expires_in' "$WORK/token")s, audience $AUDIENCE)"

# --- setup: the application the user registers through, and the parent account ---------
if [ -z "$APPLICATION_ID" ]; then
  call POST /api/applications 201 \
    '{"name":"auth-backend-admin-flow","kind":"web","redirect_uris":["http://127.0.0.1:3000/callback"]}'
  APPLICATION_ID=$(field '.application.id')
  CREATED_APPLICATION=$APPLICATION_ID
fi
if [ -z "$PARENT_ACCOUNT_ID" ]; then
  call POST /api/accounts 201 '{"name":"ops-root"}'
  PARENT_ACCOUNT_ID=$(field '.id')
  CREATED_PARENT=$PARENT_ACCOUNT_ID
fi

# --- the seed's eight calls ---------------------------------------------------------------
# 1. POST /api/applications/:application_id/users
call POST "/api/applications/$APPLICATION_ID/users" 201 '{"status":"active"}'
USER_ID=$(field '.id')
[ "$(field '.status')" = active ] || fail "new user is not active"
step

# 2. POST /api/accounts/:account_id/accounts
call POST "/api/accounts/$PARENT_ACCOUNT_ID/accounts" 201 '{"name":"ops-provisioned"}'
CHILD_ID=$(field '.id')
[ "$(field '.parent_account_id')" = "$PARENT_ACCOUNT_ID" ] || fail "child account has the wrong parent"
step

# 3. POST /api/accounts/:account_id/members
call POST "/api/accounts/$CHILD_ID/members" 201 "$(jq -cn --arg user_id "$USER_ID" '{user_id: $user_id, role: "viewer"}')"
MEMBER_ID=$(field '.id')
[ "$(field '.role')" = viewer ] || fail "membership role is not viewer"
step

# 4. PATCH /api/accounts/:account_id/members/:member_id
call PATCH "/api/accounts/$CHILD_ID/members/$MEMBER_ID" 200 '{"role":"member"}'
[ "$(field '.role')" = member ] || fail "membership role is not member after the update"
step

# 5. DELETE /api/accounts/:account_id/members/:member_id
call DELETE "/api/accounts/$CHILD_ID/members/$MEMBER_ID" 204
step

# 6. PATCH /api/accounts/:account_id
call PATCH "/api/accounts/$CHILD_ID" 200 '{"name":"ops-provisioned-renamed"}'
[ "$(field '.name')" = ops-provisioned-renamed ] || fail "account was not renamed"
step

# 7. DELETE /api/accounts/:account_id
call DELETE "/api/accounts/$CHILD_ID" 204
DELETED_CHILD=$CHILD_ID
CHILD_ID=""
step

# 8. DELETE /api/users/:user_id
call DELETE "/api/users/$USER_ID" 204
DELETED_USER=$USER_ID
USER_ID=""
step

# --- audit log ----------------------------------------------------------------------------
# expect_audit TARGET_ID ACTION...: each action was recorded with outcome success.
expect_audit() {
  local target=$1
  shift
  call GET "/api/audit-logs?target_id=$target&limit=100" 200
  local action
  for action in "$@"; do
    printf '%s' "$RESPONSE" | jq -e --arg action "$action" --arg target "$target" \
      'any(.data[]; .action == $action and .target_id == $target and .outcome == "success")' >/dev/null || {
      printf '%s\n' "$RESPONSE" >&2
      fail "audit log has no successful $action for $target"
    }
  done
  echo "ok audit $target: $*"
}

call GET "/api/audit-logs?limit=100" 200
[ "$(printf '%s' "$RESPONSE" | jq '.data | length')" -gt 0 ] || fail "the audit log is empty"
expect_audit "$DELETED_USER" user.create user.delete
expect_audit "$MEMBER_ID" member.add member.update member.remove
expect_audit "$DELETED_CHILD" account.update account.delete

# --- cleanup ------------------------------------------------------------------------------
if [ -n "$CREATED_PARENT" ]; then
  call DELETE "/api/accounts/$CREATED_PARENT" 204
  CREATED_PARENT=""
fi
if [ -n "$CREATED_APPLICATION" ]; then
  call DELETE "/api/applications/$CREATED_APPLICATION" 204
  CREATED_APPLICATION=""
fi

echo "admin flow: $PASSED passed, $((TOTAL - PASSED)) failed"
