#!/usr/bin/env python3
"""Self-test of providers.py: starts each kind as a subprocess on port 0 and drives it the
way Keyward will (authorization request with PKCE S256, the approve page, code exchange,
/api/me, refresh, revocation, the test controls and statistics). The standard server's code
exchange, refresh and revocation go through Authlib's OAuth2Session, so a standards-compliant
client is known to work against it; the quirky server is driven with plain requests.

Usage: python providers_selftest.py   (with the interop venv's python)
Last line on success: "providers selftest: N passed, 0 failed". Exit status 1 on any failure.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
from html.parser import HTMLParser
from pathlib import Path

os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")

import requests  # noqa: E402
from authlib.integrations.requests_client import OAuth2Session, OAuthError  # noqa: E402
from authlib.oauth2 import rfc9207  # noqa: E402
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata  # noqa: E402

HERE = Path(__file__).resolve().parent
PROVIDERS = HERE / "providers.py"
TIMEOUT = 10
CLIENT_ID = "selftest-client"
CLIENT_SECRET = "selftest-secret"
REDIRECT_URI = "http://127.0.0.1:9/callback"

RESULTS: list[tuple[str, str | None]] = []


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def case(name):
    def decorator(fn):
        def run(*args, **kwargs):
            try:
                fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001
                RESULTS.append((name, f"{type(exc).__name__}: {exc}"))
                traceback.print_exc()
                print(f"  FAIL {name}: {exc}")
            else:
                RESULTS.append((name, None))
                print(f"  ok   {name}")

        return run

    return decorator


# --- the provider subprocess ---------------------------------------------------------------


class Provider:
    def __init__(self, *args):
        # stderr (request log off with --quiet; warnings, tracebacks) goes to a file.
        self.kind = args[args.index("--kind") + 1]
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-W", "default", str(PROVIDERS), "--port", "0", "--quiet", *args],
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
        )
        line = self.proc.stdout.readline().strip()
        if not line.startswith("READY "):
            self.proc.kill()
            raise RuntimeError(f"no READY line, got {line!r}; stderr: {self.stderr_text()}")
        self.port = int(line.split()[1])
        self.base = f"http://127.0.0.1:{self.port}"
        self.stdout_rest = []
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for line in self.proc.stdout:
            self.stdout_rest.append(line)

    def url(self, path):
        return self.base + path

    def control(self, **body):
        r = requests.post(self.url("/control"), json=body, timeout=TIMEOUT)
        check(r.status_code == 200 and r.json() == {"ok": True}, f"control {body}: {r.status_code} {r.text}")

    def stats(self):
        return requests.get(self.url("/stats"), timeout=TIMEOUT).json()

    def reset_stats(self):
        requests.post(self.url("/reset-stats"), timeout=TIMEOUT).raise_for_status()

    def stderr_text(self):
        self.stderr.seek(0)
        return self.stderr.read()

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        err = self.stderr_text().strip()
        if err:
            # Warnings or tracebacks from the server: shown, and a failure.
            print(f"--- provider stderr ---\n{err}\n---")
            RESULTS.append((f"provider {self.kind}: stderr is empty", "see above"))


# --- helpers -----------------------------------------------------------------------------


def pkce_pair():
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


class PageParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.form_action = None
        self.ids = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.form_action = a.get("action")
        if "id" in a:
            self.ids[a["id"]] = (tag, a)


def approve(url, username="alice", decision="approve"):
    """GET the authorization page, check its elements, POST the decision; returns the
    Location of the redirect (not followed) and its query parameters."""
    page = requests.get(url, timeout=TIMEOUT, allow_redirects=False)
    check(page.status_code == 200, f"authorize page: {page.status_code} {page.text[:300]}")
    parser = PageParser()
    parser.feed(page.text)
    check("Authorize " in page.text and "for scopes" in page.text, "the page asks to authorize")
    check(parser.ids.get("username", (None, {}))[0] == "input", "input#username")
    check(parser.ids["username"][1].get("value") == "alice", "username defaults to alice")
    for button in ("approve", "deny"):
        tag, attrs = parser.ids.get(button, (None, {}))
        check(tag == "button" and attrs.get("name") == "decision" and attrs.get("value") == button, f"button#{button}")
    action = urllib.parse.urljoin(url, parser.form_action)
    r = requests.post(action, data={"username": username, "decision": decision}, timeout=TIMEOUT, allow_redirects=False)
    check(r.status_code == 302, f"authorize POST: {r.status_code} {r.text[:300]}")
    location = r.headers["Location"]
    return location, dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))


def authorize_url(p, client_id=CLIENT_ID, redirect_uri=REDIRECT_URI, scope="read write", challenge=None, state=None):
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "scope": scope}
    if state:
        params["state"] = state
    if challenge:
        params.update(code_challenge=challenge, code_challenge_method="S256")
    return p.url("/authorize?" + urllib.parse.urlencode(params))


def form_token(p, data, auth=None):
    return requests.post(p.url("/token"), data=data, auth=auth, timeout=TIMEOUT)


def basic(client_id=CLIENT_ID, secret=CLIENT_SECRET):
    """client_secret_basic per RFC 6749 §2.3.1 (form-urlencoded id and secret)."""
    enc = urllib.parse.quote_plus
    raw = f"{enc(client_id)}:{enc(secret)}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def me(p, access_token):
    return requests.get(p.url("/api/me"), headers={"Authorization": f"Bearer {access_token}"}, timeout=TIMEOUT)


def session(p, method="client_secret_basic"):
    return OAuth2Session(
        CLIENT_ID,
        CLIENT_SECRET,
        token_endpoint_auth_method=method,
        revocation_endpoint_auth_method=method,
        redirect_uri=REDIRECT_URI,
        scope="read write",
        code_challenge_method="S256",
    )


def authlib_code_flow(p, method, username):
    """Authlib builds the URL (PKCE S256, state) and exchanges the code."""
    sess = session(p, method)
    verifier = secrets.token_urlsafe(48)
    url, state = sess.create_authorization_url(p.url("/authorize"), code_verifier=verifier)
    location, params = approve(url, username)
    check(params.get("state") == state, "state echoed")
    token = sess.fetch_token(p.url("/token"), authorization_response=location, code_verifier=verifier)
    return sess, token, params


# --- the standard server -----------------------------------------------------------------


def standard_suite():
    print("standard (--issuer-in-response):")
    p = Provider(
        "--kind", "standard", "--issuer-in-response", "--access-token-ttl", "120",
        "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET, "--redirect-uri", REDIRECT_URI,
    )
    try:
        run_standard(p)
    finally:
        p.stop()


def run_standard(p):
    state = {}

    @case("standard: RFC 8414 metadata (Authlib's validator, RFC 9207 flag)")
    def _():
        doc = requests.get(p.url("/.well-known/oauth-authorization-server"), timeout=TIMEOUT).json()
        meta = AuthorizationServerMetadata(doc)
        meta.validate(metadata_classes=[rfc9207.AuthorizationServerMetadata])
        check(doc["issuer"] == p.base, "issuer")
        check(doc["token_endpoint"] == p.url("/token") and doc["revocation_endpoint"] == p.url("/revoke"), "endpoints")
        check(doc["authorization_response_iss_parameter_supported"] is True, "iss supported")
        check("S256" in doc["code_challenge_methods_supported"], "S256")

    _()

    @case("standard: code flow via Authlib OAuth2Session, PKCE S256, client_secret_basic, iss")
    def _():
        p.reset_stats()
        sess, token, params = authlib_code_flow(p, "client_secret_basic", "bob")
        check(params.get("iss") == p.base, f"iss={params.get('iss')}")
        check(token["token_type"].lower() == "bearer", "token_type")
        check(token["expires_in"] == 120, f"expires_in {token['expires_in']}")
        check(token["scope"] == "read write", f"scope {token['scope']!r}")
        check(token.get("refresh_token"), "refresh_token issued")
        last = p.stats()["last_token_request"]
        check(last["path"] == "/token" and last["content_type"].startswith("application/x-www-form-urlencoded"), f"last {last}")
        check(last["auth_scheme"] == "basic" and "client_secret" not in last["body_keys"], f"basic auth: {last}")
        check({"code", "code_verifier", "grant_type", "redirect_uri"} <= set(last["body_keys"]), f"body keys {last}")
        state["sess"], state["token"] = sess, token

    _()

    @case("standard: /api/me through the Authlib session")
    def _():
        r = state["sess"].get(p.url("/api/me"))
        check(r.status_code == 200, f"{r.status_code} {r.text}")
        body = r.json()
        check(body == {"user": "bob", "scope": "read write", "token_suffix": state["token"]["access_token"][-6:]}, f"{body}")

    _()

    @case("standard: refresh via Authlib rotates; the old refresh token is invalid_grant")
    def _():
        sess, old = state["sess"], dict(state["token"])
        new = sess.refresh_token(p.url("/token"))
        check(new["access_token"] != old["access_token"], "new access token")
        check(new.get("refresh_token") and new["refresh_token"] != old["refresh_token"], "rotated refresh token")
        check(new["scope"] == "read write" and new["expires_in"] == 120, f"{new}")
        check(me(p, new["access_token"]).json()["user"] == "bob", "new token works")
        r = form_token(p, {"grant_type": "refresh_token", "refresh_token": old["refresh_token"]}, auth=(CLIENT_ID, CLIENT_SECRET))
        check(r.status_code == 400 and r.json()["error"] == "invalid_grant", f"old refresh token: {r.status_code} {r.text}")
        state["token"] = new

    _()

    @case("standard: rotation off: refresh without a new refresh_token, the old one stays valid")
    def _():
        p.control(rotate_refresh_tokens=False)
        rt = state["token"]["refresh_token"]
        for _ in range(2):
            r = form_token(p, {"grant_type": "refresh_token", "refresh_token": rt}, auth=(CLIENT_ID, CLIENT_SECRET))
            check(r.status_code == 200, f"{r.status_code} {r.text}")
            check("refresh_token" not in r.json(), f"no new refresh token: {r.json()}")
        sess = state["sess"]
        sess.token = state["token"]
        tok = sess.refresh_token(p.url("/token"))  # Authlib keeps the old one
        check(tok["refresh_token"] == rt, "Authlib kept the refresh token")
        p.control(rotate_refresh_tokens=True)

    _()

    @case("standard: client_secret_post via Authlib; wrong secret -> invalid_client")
    def _():
        _sess, token, _params = authlib_code_flow(p, "client_secret_post", "carol")
        last = p.stats()["last_token_request"]
        check(last["auth_scheme"] is None and {"client_id", "client_secret"} <= set(last["body_keys"]), f"{last}")
        check(me(p, token["access_token"]).json()["user"] == "carol", "carol")
        r = form_token(p, {"grant_type": "refresh_token", "refresh_token": token["refresh_token"], "client_id": CLIENT_ID, "client_secret": "nope"})
        check(r.status_code in (400, 401) and r.json()["error"] == "invalid_client", f"{r.status_code} {r.text}")
        r = form_token(p, {"grant_type": "refresh_token", "refresh_token": token["refresh_token"]}, auth=(CLIENT_ID, "nope"))
        check(r.status_code == 401 and r.json()["error"] == "invalid_client", f"{r.status_code} {r.text}")

    _()

    @case("standard: PKCE: no PKCE works; wrong verifier invalid_grant; missing verifier invalid_request; code single-use")
    def _():
        _loc, params = approve(authorize_url(p, state="s1"))
        data = {"grant_type": "authorization_code", "code": params["code"], "redirect_uri": REDIRECT_URI}
        r = requests.post(p.url("/token"), data=data, headers=basic(), timeout=TIMEOUT)
        check(r.status_code == 200, f"no PKCE: {r.status_code} {r.text}")
        r = requests.post(p.url("/token"), data=data, headers=basic(), timeout=TIMEOUT)
        check(r.status_code == 400 and r.json()["error"] == "invalid_grant", f"code reuse: {r.text}")
        verifier, challenge = pkce_pair()
        _loc, params = approve(authorize_url(p, challenge=challenge, state="s2"))
        data = {"grant_type": "authorization_code", "code": params["code"], "redirect_uri": REDIRECT_URI}
        r = requests.post(p.url("/token"), data=data, headers=basic(), timeout=TIMEOUT)
        check(r.status_code == 400 and r.json()["error"] == "invalid_request", f"missing verifier: {r.text}")
        r = requests.post(p.url("/token"), data={**data, "code_verifier": pkce_pair()[0]}, headers=basic(), timeout=TIMEOUT)
        check(r.status_code == 400 and r.json()["error"] == "invalid_grant", f"wrong verifier: {r.text}")
        _loc, params = approve(authorize_url(p, challenge=challenge, state="s3"))
        data = {"grant_type": "authorization_code", "code": params["code"], "redirect_uri": "http://127.0.0.1:9/other", "code_verifier": verifier}
        r = requests.post(p.url("/token"), data=data, headers=basic(), timeout=TIMEOUT)
        check(r.status_code == 400 and r.json()["error"] == "invalid_grant", f"redirect_uri mismatch: {r.text}")

    _()

    @case("standard: deny -> access_denied with state and iss; unknown redirect_uri -> 400, no redirect")
    def _():
        loc, params = approve(authorize_url(p, state="deny-me"), decision="deny")
        check(loc.startswith(REDIRECT_URI + "?"), loc)
        check(params["error"] == "access_denied" and params["state"] == "deny-me" and params["iss"] == p.base, f"{params}")
        check(urllib.parse.urlsplit(loc).query.count("iss=") == 1, f"one iss: {loc}")
        r = requests.get(authorize_url(p, redirect_uri="http://127.0.0.1:9/evil"), timeout=TIMEOUT, allow_redirects=False)
        check(r.status_code == 400 and "Location" not in r.headers, f"{r.status_code} {r.headers}")
        r = requests.get(authorize_url(p, client_id="nobody"), timeout=TIMEOUT, allow_redirects=False)
        check(r.status_code in (400, 401) and "Location" not in r.headers, f"{r.status_code}")

    _()

    @case("standard: revoke (Authlib) access token -> 401 with WWW-Authenticate; refresh token -> invalid_grant")
    def _():
        p.reset_stats()
        sess, token, _ = authlib_code_flow(p, "client_secret_basic", "dave")
        r = sess.revoke_token(p.url("/revoke"), token=token["access_token"], token_type_hint="access_token")
        check(r.status_code == 200, f"revoke: {r.status_code} {r.text}")
        r = me(p, token["access_token"])
        check(r.status_code == 401 and 'error="invalid_token"' in r.headers.get("WWW-Authenticate", ""), f"{r.status_code} {r.headers}")
        fresh = sess.refresh_token(p.url("/token"), refresh_token=token["refresh_token"])
        check(me(p, fresh["access_token"]).status_code == 200, "refreshed token works")
        r = requests.post(p.url("/revoke"), data={"token": fresh["refresh_token"], "token_type_hint": "refresh_token", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}, timeout=TIMEOUT)
        check(r.status_code == 200, f"revoke post: {r.status_code} {r.text}")
        check(me(p, fresh["access_token"]).status_code == 401, "access tokens of a revoked grant are revoked")
        r = form_token(p, {"grant_type": "refresh_token", "refresh_token": fresh["refresh_token"]}, auth=(CLIENT_ID, CLIENT_SECRET))
        check(r.status_code == 400 and r.json()["error"] == "invalid_grant", f"{r.text}")
        r = requests.post(p.url("/revoke"), data={"token": "unknown"}, auth=(CLIENT_ID, CLIENT_SECRET), timeout=TIMEOUT)
        check(r.status_code == 200, "unknown token: 200 per RFC 7009")
        r = requests.post(p.url("/revoke"), data={"token": "unknown"}, auth=(CLIENT_ID, "bad"), timeout=TIMEOUT)
        check(r.status_code == 401, f"bad client auth at /revoke: {r.status_code}")
        s = p.stats()
        check(s["revocations"] == 3, f"revocations {s['revocations']}")
        check(s["revoked_tokens"] == [token["access_token"], fresh["refresh_token"]], f"revoked_tokens {s['revoked_tokens']}")
        check(me(p, "garbage").status_code == 401, "unknown token 401")
        r = requests.get(p.url("/api/me"), timeout=TIMEOUT)
        check(r.status_code == 401 and "WWW-Authenticate" in r.headers, "no token: 401 with WWW-Authenticate")

    _()

    @case("standard: stats counts")
    def _():
        p.reset_stats()
        s = p.stats()
        check((s["token_requests"], s["authorization_code_grants"], s["refresh_grants"], s["revocations"]) == (0, 0, 0, 0), f"{s}")
        sess, _token, _ = authlib_code_flow(p, "client_secret_basic", "erin")
        sess.refresh_token(p.url("/token"))
        sess.refresh_token(p.url("/token"))
        form_token(p, {"grant_type": "refresh_token", "refresh_token": "nope"}, auth=(CLIENT_ID, CLIENT_SECRET))
        s = p.stats()
        check(s["token_requests"] == 4 and s["authorization_code_grants"] == 1 and s["refresh_grants"] == 3, f"{s}")
        check(s["token_errors"] == 1, f"token_errors {s['token_errors']}")

    _()

    @case("standard: access_token_ttl and expire_access_tokens controls")
    def _():
        p.control(access_token_ttl=1)
        sess, token, _ = authlib_code_flow(p, "client_secret_basic", "frank")
        check(token["expires_in"] == 1, f"{token['expires_in']}")
        check(me(p, token["access_token"]).status_code == 200, "valid first")
        time.sleep(1.3)
        check(me(p, token["access_token"]).status_code == 401, "expired after 1 s")
        p.control(access_token_ttl=120)
        new = sess.refresh_token(p.url("/token"))
        check(new["expires_in"] == 120 and me(p, new["access_token"]).status_code == 200, "new ttl")
        p.control(expire_access_tokens=True)
        r = me(p, new["access_token"])
        check(r.status_code == 401 and "invalid_token" in r.headers.get("WWW-Authenticate", ""), "expired by control")
        state["sess"] = sess

    _()

    @case("standard: fail_next_refresh_with (server_error, invalid_grant) is one-shot")
    def _():
        sess = state["sess"]
        rt = sess.token["refresh_token"]
        p.control(fail_next_refresh_with="server_error")
        r = form_token(p, {"grant_type": "refresh_token", "refresh_token": rt}, auth=(CLIENT_ID, CLIENT_SECRET))
        check(r.status_code == 500 and r.json()["error"] == "server_error", f"{r.status_code} {r.text}")
        p.control(fail_next_refresh_with="invalid_grant")
        try:
            sess.refresh_token(p.url("/token"))
            raise AssertionError("expected invalid_grant")
        except OAuthError as exc:
            check(exc.error == "invalid_grant", f"{exc.error}")
        tok = sess.refresh_token(p.url("/token"))  # the refresh token was not consumed
        check(me(p, tok["access_token"]).status_code == 200, "works afterwards")

    _()

    @case("standard: invalidate_refresh_tokens -> invalid_grant; new grants unaffected")
    def _():
        sess = state["sess"]
        p.control(invalidate_refresh_tokens=True)
        try:
            sess.refresh_token(p.url("/token"))
            raise AssertionError("expected invalid_grant")
        except OAuthError as exc:
            check(exc.error == "invalid_grant", f"{exc.error}")
        sess2, _token, _ = authlib_code_flow(p, "client_secret_basic", "gina")
        check(sess2.refresh_token(p.url("/token"))["access_token"], "new grant refreshes")

    _()

    @case("standard: refresh_delay_ms; concurrent refreshes with rotation: exactly one wins")
    def _():
        _sess, token, _ = authlib_code_flow(p, "client_secret_basic", "hank")
        p.control(refresh_delay_ms=400)
        p.reset_stats()
        results = []

        def refresh():
            r = form_token(p, {"grant_type": "refresh_token", "refresh_token": token["refresh_token"]}, auth=(CLIENT_ID, CLIENT_SECRET))
            results.append((r.status_code, r.json().get("error")))

        started = time.monotonic()
        threads = [threading.Thread(target=refresh) for _ in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
        p.control(refresh_delay_ms=0)
        check(sorted(results) == [(200, None)] + [(400, "invalid_grant")] * 4, f"{results}")
        check(0.4 <= elapsed < 1.5, f"the delays overlap (threaded server): {elapsed:.2f}s")
        check(p.stats()["refresh_grants"] == 5, "5 refresh grants counted")

    _()

    @case("standard: register_client at runtime (exact redirect URIs, scope limit)")
    def _():
        p.control(register_client={"client_id": "rt-client", "client_secret": "rt-secret", "redirect_uris": ["http://127.0.0.1:9/rt"], "scope": "read"})
        verifier, challenge = pkce_pair()
        loc, params = approve(authorize_url(p, client_id="rt-client", redirect_uri="http://127.0.0.1:9/rt", scope="read write", challenge=challenge, state="rt"))
        check(loc.startswith("http://127.0.0.1:9/rt?"), loc)
        r = requests.post(p.url("/token"), data={"grant_type": "authorization_code", "code": params["code"], "redirect_uri": "http://127.0.0.1:9/rt", "code_verifier": verifier}, headers=basic("rt-client", "rt-secret"), timeout=TIMEOUT)
        check(r.status_code == 200 and r.json()["scope"] == "read", f"{r.status_code} {r.text}")
        r = requests.get(authorize_url(p, client_id="rt-client", redirect_uri="http://127.0.0.1:9/rt2"), timeout=TIMEOUT, allow_redirects=False)
        check(r.status_code == 400, "other redirect URI refused")
        r = requests.post(p.url("/control"), json={"no_such_key": 1}, timeout=TIMEOUT)
        check(r.status_code == 400 and r.json()["ok"] is False, "unknown control key refused")

    _()

    @case("standard: /api/echo, /redirect, /api/headers")
    def _():
        _sess, token, _ = authlib_code_flow(p, "client_secret_basic", "ivy")
        r = requests.post(p.url("/api/echo"), data=b"hello body", headers={"Authorization": f"Bearer {token['access_token']}", "Cookie": "a=b", "X-Custom": "1", "Content-Type": "text/plain"}, timeout=TIMEOUT)
        check(r.status_code == 200, f"{r.status_code} {r.text}")
        body = r.json()
        check(body["method"] == "POST" and body["body"] == "hello body", f"{body}")
        h = body["headers"]
        check(h["authorization"] == f"Bearer {token['access_token']}" and h["cookie"] == "a=b" and h["x-custom"] == "1", f"{h}")
        check(all(k == k.lower() for k in h), "lower-case names")
        check(requests.post(p.url("/api/echo"), timeout=TIMEOUT).status_code == 401, "echo needs a token")
        target = p.url("/api/headers")
        for code in (302, 307):
            r = requests.get(p.url("/redirect"), params={"to": target, "code": code}, timeout=TIMEOUT, allow_redirects=False)
            check(r.status_code == code and r.headers["Location"] == target, f"{r.status_code} {r.headers}")
        r = requests.get(target, headers={"X-Probe": "yes"}, timeout=TIMEOUT)
        check(r.status_code == 200 and r.json()["headers"]["x-probe"] == "yes" and "authorization" not in r.json()["headers"], f"{r.text}")

    _()


# --- the quirky server -------------------------------------------------------------------


def quirky_suite():
    print("quirky:")
    p = Provider(
        "--kind", "quirky", "--issuer-in-response", "--access-token-ttl", "300",
        "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET, "--redirect-uri", REDIRECT_URI,
    )
    try:
        run_quirky(p)
    finally:
        p.stop()


def quirky_code(p, challenge=None, scope="read,write"):
    loc, params = approve(authorize_url(p, scope=scope, challenge=challenge, state="q-state"), username="quinn")
    check(params.get("state") == "q-state" and "iss" not in params and "code" in params, f"{loc}")
    return params["code"]


def run_quirky(p):
    state = {}

    @case("quirky: approve page, code+state without iss; /token JSON with PKCE; string expires_in, comma scope")
    def _():
        p.reset_stats()
        verifier, challenge = pkce_pair()
        code = quirky_code(p, challenge)
        body = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "code": code, "redirect_uri": REDIRECT_URI, "code_verifier": verifier}
        r = requests.post(p.url("/token"), data=body, timeout=TIMEOUT)
        check(r.status_code == 415, f"form body: {r.status_code}")
        r = requests.post(p.url("/token"), json=body, timeout=TIMEOUT)
        check(r.status_code == 200, f"{r.status_code} {r.text}")
        tok = r.json()
        check(set(tok) == {"access_token", "refresh_token", "token_type", "scope", "expires_in"}, f"{tok}")
        check(tok["token_type"] == "bearer" and tok["scope"] == "read,write" and tok["expires_in"] == "300", f"{tok}")
        last = p.stats()["last_token_request"]
        check(last["content_type"] == "application/json" and last["path"] == "/token", f"{last}")
        check(last["body_keys"] == sorted(body), f"{last}")
        state["tok"] = tok

    _()

    @case("quirky: /api/me with the token")
    def _():
        r = me(p, state["tok"]["access_token"])
        check(r.status_code == 200 and r.json()["user"] == "quinn" and r.json()["token_suffix"] == state["tok"]["access_token"][-6:], f"{r.text}")

    _()

    @case("quirky: JSON /refresh_token without a new refresh token; the old one keeps working")
    def _():
        rt = state["tok"]["refresh_token"]
        for _ in range(2):
            r = requests.post(p.url("/refresh_token"), json={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "refresh_token": rt}, timeout=TIMEOUT)
            check(r.status_code == 200, f"{r.status_code} {r.text}")
            tok = r.json()
            check("refresh_token" not in tok and tok["expires_in"] == "300" and tok["scope"] == "read,write", f"{tok}")
            check(me(p, tok["access_token"]).status_code == 200, "refreshed token works")
        last = p.stats()["last_token_request"]
        check(last["path"] == "/refresh_token" and last["body_keys"] == ["client_id", "client_secret", "refresh_token"], f"{last}")

    _()

    @case("quirky: refresh at /token -> 400; form at /refresh_token -> 415; wrong secret -> invalid_client")
    def _():
        rt = state["tok"]["refresh_token"]
        r = requests.post(p.url("/token"), json={"grant_type": "refresh_token", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "refresh_token": rt}, timeout=TIMEOUT)
        check(r.status_code == 400, f"{r.status_code} {r.text}")
        r = requests.post(p.url("/refresh_token"), data={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "refresh_token": rt}, timeout=TIMEOUT)
        check(r.status_code == 415, f"{r.status_code}")
        r = requests.post(p.url("/refresh_token"), json={"client_id": CLIENT_ID, "client_secret": "wrong", "refresh_token": rt}, timeout=TIMEOUT)
        check(r.status_code in (400, 401) and r.json()["error"] == "invalid_client", f"{r.status_code} {r.text}")
        check(requests.get(p.url("/.well-known/oauth-authorization-server"), timeout=TIMEOUT).status_code == 404, "no metadata")

    _()

    @case("quirky: PKCE optional (no verifier accepted); a wrong verifier -> invalid_grant")
    def _():
        _verifier, challenge = pkce_pair()
        code = quirky_code(p, challenge)
        body = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "code": code, "redirect_uri": REDIRECT_URI, "code_verifier": pkce_pair()[0]}
        r = requests.post(p.url("/token"), json=body, timeout=TIMEOUT)
        check(r.status_code == 400 and r.json()["error"] == "invalid_grant", f"{r.text}")
        code = quirky_code(p, challenge, scope="read")
        body = {"grant_type": "authorization_code", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "code": code, "redirect_uri": REDIRECT_URI}
        r = requests.post(p.url("/token"), json=body, timeout=TIMEOUT)
        check(r.status_code == 200 and r.json()["scope"] == "read", f"{r.text}")

    _()

    @case("quirky: rotation on by control; invalidate_refresh_tokens; fail_next_refresh_with; stats")
    def _():
        p.reset_stats()
        p.control(rotate_refresh_tokens=True)
        rt = state["tok"]["refresh_token"]
        refresh = lambda token: requests.post(p.url("/refresh_token"), json={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "refresh_token": token}, timeout=TIMEOUT)  # noqa: E731
        r = refresh(rt)
        check(r.status_code == 200 and r.json().get("refresh_token") not in (None, rt), f"{r.text}")
        new_rt = r.json()["refresh_token"]
        check(refresh(rt).json()["error"] == "invalid_grant", "old one rotated out")
        p.control(fail_next_refresh_with="server_error")
        check(refresh(new_rt).status_code == 500, "forced server_error")
        p.control(invalidate_refresh_tokens=True)
        r = refresh(new_rt)
        check(r.status_code == 400 and r.json()["error"] == "invalid_grant", f"{r.text}")
        s = p.stats()
        check((s["token_requests"], s["refresh_grants"], s["authorization_code_grants"], s["token_errors"]) == (4, 4, 0, 3), f"{s}")

    _()


def defaults_suite():
    print("standard (defaults: no --issuer-in-response, default client, any redirect URI):")
    p = Provider("--kind", "standard")
    try:

        @case("standard defaults: no iss, default client and secret, any http(s) redirect URI, ttl 3600")
        def _():
            doc = requests.get(p.url("/.well-known/oauth-authorization-server"), timeout=TIMEOUT).json()
            check("authorization_response_iss_parameter_supported" not in doc, f"{doc}")
            redirect_uri = "http://127.0.0.1:4567/anything/cb"
            verifier, challenge = pkce_pair()
            loc, params = approve(authorize_url(p, client_id="keyward-test-client", redirect_uri=redirect_uri, challenge=challenge, state="d"))
            check(loc.startswith(redirect_uri + "?") and "iss" not in params and params["state"] == "d", loc)
            r = requests.post(p.url("/token"), data={"grant_type": "authorization_code", "code": params["code"], "redirect_uri": redirect_uri, "code_verifier": verifier}, headers=basic("keyward-test-client", "keyward-test-secret"), timeout=TIMEOUT)
            check(r.status_code == 200 and r.json()["expires_in"] == 3600 and r.json()["scope"] == "read write", f"{r.text}")
            check(me(p, r.json()["access_token"]).json()["user"] == "alice", "default username alice")
            check(p.stdout_rest == [], f"nothing but READY on stdout: {p.stdout_rest}")

        _()
    finally:
        p.stop()


def main():
    for suite in (standard_suite, defaults_suite, quirky_suite):
        try:
            suite()
        except Exception as exc:  # noqa: BLE001
            traceback.print_exc()
            RESULTS.append((suite.__name__, f"{type(exc).__name__}: {exc}"))
    failed = [(n, e) for n, e in RESULTS if e]
    print(f"providers selftest: {len(RESULTS) - len(failed)} passed, {len(failed)} failed")
    for name, error in failed:
        print(f"  FAILED {name}: {error}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
