#!/usr/bin/env python3
"""Interop test: Keyward's authorization-code flow driven by Authlib's OAuth2Session.

Authlib builds the authorization URL (PKCE S256, nonce, resource), the hosted sign-in pages
are driven with plain `requests` (GET the page, read the form's hidden csrf_token and action
with html.parser, POST, follow the 303s by hand until the redirect to the client's
redirect_uri), then Authlib exchanges the code (`fetch_token`), refreshes
(`refresh_token`), calls userinfo through the session, introspects and revokes. The
discovery documents are validated with Authlib's RFC 8414 / OpenID Discovery models and
the id_token with joserfc (Authlib's JOSE library) against the JWKS.

Usage:
    python authlib_flow.py                      # starts target/debug/keyward on SQLite and PostgreSQL
    python authlib_flow.py --stores sqlite      # one store
    KEYWARD_URL=http://127.0.0.1:8080 KEYWARD_ADMIN_CLIENT_ID=... KEYWARD_ADMIN_CLIENT_SECRET=... \
        python authlib_flow.py                  # against a running server instead

Environment: KEYWARD_BIN (server binary), KEYWARD_TEST_POSTGRES_URL (maintenance URL for
CREATE/DROP DATABASE, default postgres://postgres@127.0.0.1:5432/postgres).

Last line on success: "interop: N passed, 0 failed". Exit status 1 on any failure (the
server log is printed).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.parse
from html.parser import HTMLParser
from pathlib import Path

# The server runs on plain HTTP on loopback; Authlib refuses non-TLS endpoints otherwise.
os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")

import requests  # noqa: E402
from authlib.integrations.requests_client import OAuth2Session, OAuthError  # noqa: E402
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata  # noqa: E402
from authlib.oidc.discovery import OpenIDProviderMetadata  # noqa: E402
from joserfc import jwt  # noqa: E402
from joserfc.jwk import KeySet  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[3]
RESOURCE = "https://api.example.test"
SCOPE = "openid profile email offline_access workspace:admin read:things"
PASSWORD = "correct horse battery staple 42"
HOSTED_PAGES = ("/sign-in", "/sign-up", "/workspace", "/consent")
ALGORITHMS = ["EdDSA", "Ed25519", "ES256", "RS256"]
TIMEOUT = 30
STRICT_RS256 = os.environ.get("KEYWARD_INTEROP_STRICT_RS256") == "1"


# --- checks -------------------------------------------------------------------------------


class CheckFailed(AssertionError):
    pass


class Checks:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0
        self.prefix = ""
        self.soft_failures: list[str] = []
        self.warnings: list[str] = []
        self.store = ""

    def ok(self, condition: object, what: str) -> None:
        if condition:
            self.passed += 1
            return
        self.failed += 1
        raise CheckFailed(f"{self.prefix}{what}")

    def eq(self, got: object, expected: object, what: str) -> None:
        self.ok(got == expected, f"{what}: expected {expected!r}, got {got!r}")

    def soft(self, condition: object, what: str) -> None:
        """A check whose failure is counted and reported but does not stop the flow."""
        if condition:
            self.passed += 1
            return
        self.failed += 1
        self.soft_failures.append(f"{self.store}: {self.prefix}{what}")
        log(f"FAIL {self.store}: {self.prefix}{what}")


CHECKS = Checks()


def log(msg: str) -> None:
    print(msg, flush=True)


# --- HTML forms ---------------------------------------------------------------------------


class FormParser(HTMLParser):
    """Collects forms (action, method, inputs, buttons) and links (href, text)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[dict] = []
        self.links: list[dict] = []
        self._form: dict | None = None
        self._link: dict | None = None
        self._button: dict | None = None

    def handle_starttag(self, tag, attrs):
        a = {k: (v if v is not None else "") for k, v in attrs}
        if tag == "form":
            self._form = {"action": a.get("action"), "method": a.get("method", "get").lower(), "inputs": [], "buttons": []}
            self.forms.append(self._form)
        elif tag == "input" and self._form is not None:
            self._form["inputs"].append(
                {"name": a.get("name"), "type": a.get("type", "text").lower(), "value": a.get("value", ""), "checked": "checked" in a}
            )
        elif tag == "button" and self._form is not None:
            self._button = {"name": a.get("name"), "value": a.get("value", ""), "type": a.get("type", "submit").lower(), "text": ""}
            self._form["buttons"].append(self._button)
        elif tag == "a":
            self._link = {"href": a.get("href", ""), "text": ""}
            self.links.append(self._link)

    def handle_endtag(self, tag):
        if tag == "form":
            self._form = None
        elif tag == "a":
            self._link = None
        elif tag == "button":
            self._button = None

    def handle_data(self, data):
        if self._link is not None:
            self._link["text"] += data
        if self._button is not None:
            self._button["text"] += data


def parse_page(html: str) -> FormParser:
    p = FormParser()
    p.feed(html)
    return p


def form_with(page: FormParser, *, input_name: str | None = None, button: tuple[str, str] | None = None) -> dict:
    for form in page.forms:
        if input_name and not any(i["name"] == input_name for i in form["inputs"]):
            continue
        if button and not any((b["name"], b["value"]) == button for b in form["buttons"]):
            continue
        return form
    raise CheckFailed(f"no form with input {input_name!r} / button {button!r}")


def csrf_of(form: dict) -> str:
    for i in form["inputs"]:
        if i["name"] == "csrf_token" and i["type"] == "hidden":
            return i["value"]
    raise CheckFailed("form without a hidden csrf_token")


# --- server process -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_admin_url() -> str:
    return os.environ.get("KEYWARD_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def psql(sql: str) -> None:
    subprocess.run(["psql", pg_admin_url(), "-v", "ON_ERROR_STOP=1", "-qAtc", sql], check=True, capture_output=True, text=True)


class Server:
    """A `keyward serve` process on a free port with a fresh SQLite file or PostgreSQL database."""

    def __init__(self, store: str) -> None:
        self.store = store
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        scratch = REPO_ROOT / "target" / "interop-tests"
        scratch.mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix=f"{store}-", dir=scratch))
        self.db_name = None
        if store == "sqlite":
            database_url = f"sqlite://{self.dir / 'keyward.db'}"
        elif store == "postgres":
            self.db_name = f"kw_test_interop_{secrets.token_hex(6)}"
            psql(f"CREATE DATABASE {self.db_name}")
            u = urllib.parse.urlsplit(pg_admin_url())
            database_url = urllib.parse.urlunsplit((u.scheme, u.netloc, f"/{self.db_name}", u.query, u.fragment))
        else:
            raise ValueError(store)
        self.admin_id = "interop-admin"
        self.admin_secret = "kws_" + secrets.token_urlsafe(32)
        self.log_path = self.dir / "server.log"
        binary = os.environ.get("KEYWARD_BIN", str(REPO_ROOT / "target" / "debug" / "keyward"))
        env = dict(os.environ)
        env.update(
            RUST_LOG=os.environ.get("RUST_LOG", "info"),
            NO_COLOR="1",
            KEYWARD_LISTEN=f"127.0.0.1:{self.port}",
            KEYWARD_ISSUER=self.base,
            KEYWARD_DATA_DIR=str(self.dir),
            KEYWARD_DATABASE_URL=database_url,
            KEYWARD_MASTER_SECRET="interop-master-" + secrets.token_urlsafe(24),
            KEYWARD_BOOTSTRAP_CLIENT_ID=self.admin_id,
            KEYWARD_BOOTSTRAP_CLIENT_SECRET=self.admin_secret,
        )
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([binary, "serve"], env=env, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                self.stop(keep=True)
                raise RuntimeError(f"keyward exited during start-up ({self.proc.returncode}):\n{self.log_tail()}")
            try:
                if requests.get(f"{self.base}/healthz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                self.stop(keep=True)
                raise RuntimeError(f"no 200 from /healthz after 60 s:\n{self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self, chars: int = 8000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, keep: bool = False) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        if self.db_name:
            try:
                psql(f"DROP DATABASE IF EXISTS {self.db_name} WITH (FORCE)")
            except subprocess.CalledProcessError as e:
                log(f"could not drop {self.db_name}: {e.stderr}")
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)


# --- the flow -----------------------------------------------------------------------------


def b64json(part: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def jwt_claims(token: str, keys: KeySet) -> dict:
    """Verifies the signature with joserfc and returns the claims."""
    return dict(jwt.decode(token, keys, algorithms=ALGORITHMS).claims)


def audiences(aud) -> list:
    return aud if isinstance(aud, list) else [aud]


class Target:
    """The server under test (started here or given by KEYWARD_URL) and its metadata."""

    def __init__(self, base: str, admin_id: str, admin_secret: str) -> None:
        self.base = base.rstrip("/")
        self.admin_id = admin_id
        self.admin_secret = admin_secret
        self.meta: dict = {}
        self.keys: KeySet | None = None
        self.admin: OAuth2Session | None = None

    def api(self, method: str, path: str, body=None) -> requests.Response:
        assert self.admin is not None
        return self.admin.request(method, f"{self.base}{path}", json=body, timeout=TIMEOUT, withhold_token=False)


def check_discovery(t: Target) -> None:
    """The discovery documents, validated with Authlib's metadata models. Failures here are
    counted and reported, but the flow goes on (with the contract's endpoint paths)."""
    CHECKS.prefix = "discovery: "
    r = requests.get(f"{t.base}/.well-known/openid-configuration", timeout=TIMEOUT)
    CHECKS.eq(r.status_code, 200, "GET /.well-known/openid-configuration")
    doc = r.json()
    CHECKS.soft(doc.get("issuer") == t.base, f"issuer is {doc.get('issuer')!r}")
    # Authlib's validate() stops at the first broken rule; run every rule to see them all.
    oidc = OpenIDProviderMetadata(doc)
    for key in OpenIDProviderMetadata.REGISTRY_KEYS:
        try:
            object.__getattribute__(oidc, f"validate_{key}")()
            problem = None
        except ValueError as e:  # authlib raises ValueError for each rule
            problem = str(e)
        if problem and '"RS256" MUST be included' in problem and not STRICT_RS256:
            # OpenID Connect Discovery 1.0 §3 makes RS256 mandatory; Keyward signs with
            # EdDSA/ES256 only. Reported, not failed (KEYWARD_INTEROP_STRICT_RS256=1 fails it).
            CHECKS.warnings.append(f"{CHECKS.store}: OpenID discovery: {problem}")
            log(f"warning: {problem} (OpenID Connect Discovery 1.0 section 3)")
            continue
        CHECKS.soft(problem is None, f"Authlib OpenIDProviderMetadata validate_{key}: {problem}")
    r = requests.get(f"{t.base}/.well-known/oauth-authorization-server", timeout=TIMEOUT)
    CHECKS.soft(r.status_code == 200, f"GET /.well-known/oauth-authorization-server: {r.status_code}")
    try:
        AuthorizationServerMetadata(r.json()).validate()
        valid = None
    except Exception as e:
        valid = str(e)
    CHECKS.soft(valid is None, f"Authlib AuthorizationServerMetadata.validate(): {valid}")
    expected = {
        "authorization_endpoint": f"{t.base}/oauth2/authorize",
        "token_endpoint": f"{t.base}/oauth2/token",
        "userinfo_endpoint": f"{t.base}/oauth2/userinfo",
    }
    for name, value in expected.items():
        CHECKS.soft(doc.get(name) == value, f"{name} is {doc.get(name)!r}, expected {value!r}")
    for name, value in (
        ("code_challenge_methods_supported", "S256"),
        ("response_types_supported", "code"),
        ("grant_types_supported", "authorization_code"),
        ("grant_types_supported", "refresh_token"),
    ):
        CHECKS.soft(value in (doc.get(name) or []), f"{name} has {value!r} (got {doc.get(name)!r})")
    # The flow below uses the contract's paths whatever the document says.
    t.meta = {**doc, **expected}
    keys = requests.get(doc["jwks_uri"], timeout=TIMEOUT)
    CHECKS.eq(keys.status_code, 200, "GET jwks_uri")
    t.keys = KeySet.import_key_set(keys.json())


def setup_admin(t: Target) -> None:
    CHECKS.prefix = "admin: "
    token_endpoint = t.meta.get("token_endpoint", f"{t.base}/oauth2/token")
    t.admin = OAuth2Session(t.admin_id, t.admin_secret, token_endpoint_auth_method="client_secret_post")
    token = t.admin.fetch_token(token_endpoint, grant_type="client_credentials", audience=f"{t.base}/api", timeout=TIMEOUT)
    CHECKS.ok(token.get("access_token"), "client-credentials token through Authlib")
    existing = t.api("GET", "/api/resources?limit=100")
    CHECKS.eq(existing.status_code, 200, "GET /api/resources")
    if not any(res["identifier"] == RESOURCE for res in existing.json()["data"]):
        r = t.api("POST", "/api/resources", {"identifier": RESOURCE, "name": "Example API", "scopes": [{"name": "read:things"}]})
        CHECKS.eq(r.status_code, 201, f"POST /api/resources {r.text}")


def create_app(t: Target, kind: str, redirect_uri: str) -> dict:
    r = t.api(
        "POST",
        "/api/applications",
        {
            "name": f"authlib-{kind}-{secrets.token_hex(3)}",
            "kind": kind,
            "redirect_uris": [redirect_uri],
            "post_logout_redirect_uris": [],
            "grant_types": ["authorization_code", "refresh_token"],
            "grants": [{"resource": RESOURCE, "scopes": ["read:things"]}],
            "first_party": False,
        },
    )
    CHECKS.eq(r.status_code, 201, f"POST /api/applications ({kind}) {r.text}")
    body = r.json()
    CHECKS.eq(bool(body.get("client_secret")), kind == "web", f"{kind}: a client_secret only for the confidential app")
    return {"id": body["application"]["id"], "client_id": body["application"]["client_id"], "client_secret": body.get("client_secret")}


def check_page_headers(resp: requests.Response, where: str) -> None:
    csp = resp.headers.get("content-security-policy", "")
    CHECKS.ok("frame-ancestors 'none'" in csp, f"{where}: CSP frame-ancestors 'none' (got {csp!r})")
    CHECKS.eq(resp.headers.get("x-frame-options", "").upper(), "DENY", f"{where}: X-Frame-Options")
    CHECKS.eq(resp.headers.get("referrer-policy", "").lower(), "no-referrer", f"{where}: Referrer-Policy")


def drive(t: Target, http: requests.Session, start: str, redirect_uri: str, plan: dict) -> tuple[str, list[str]]:
    """Follows the hosted pages with plain requests until the redirect to redirect_uri.

    plan: signup={username,email,password,name} | signin={login,password};
          workspace={"create": name} | {"select": account_id}; consent="allow"|"deny".
    Returns the final redirect URL and the hosted pages visited.
    """
    visited: list[str] = []
    resp = http.get(start, allow_redirects=False, timeout=TIMEOUT)
    for _ in range(20):
        if resp.status_code in (302, 303):
            location = urllib.parse.urljoin(resp.url, resp.headers["location"])
            if location.startswith(redirect_uri):
                return location, visited
            resp = http.get(location, allow_redirects=False, timeout=TIMEOUT)
            continue
        url = urllib.parse.urlsplit(resp.url)
        CHECKS.eq(resp.status_code, 200, f"GET {url.path} {resp.text[:500]}")
        CHECKS.ok("text/html" in resp.headers.get("content-type", ""), f"{url.path} is HTML")
        check_page_headers(resp, url.path)
        visited.append(url.path)
        if visited.count(url.path) > 2:
            raise CheckFailed(f"stuck on {url.path}: {resp.text[:1500]}")
        page = parse_page(resp.text)
        for form in page.forms:
            csrf_of(form)  # raises when missing
        if url.path == "/sign-in" and "signup" in plan:
            links = [a for a in page.links if "create an account" in a["text"].strip().lower()]
            CHECKS.ok(links, "sign-in page links to 'Create an account'")
            resp = http.get(urllib.parse.urljoin(resp.url, links[0]["href"]), allow_redirects=False, timeout=TIMEOUT)
            continue
        if url.path == "/sign-in":
            form = form_with(page, input_name="password")
            data = {"login": plan["signin"]["login"], "password": plan["signin"]["password"]}
        elif url.path == "/sign-up":
            form = form_with(page, input_name="password")
            data = {k: plan["signup"][k] for k in ("username", "email", "password", "name")}
        elif url.path == "/workspace":
            if "create" in plan["workspace"]:
                form = form_with(page, input_name="workspace_name", button=("action", "create"))
                data = {"workspace_name": plan["workspace"]["create"], "action": "create"}
            else:
                form = form_with(page, input_name="account_id", button=("action", "select"))
                offered = [i["value"] for i in form["inputs"] if i["name"] == "account_id"]
                CHECKS.ok(plan["workspace"]["select"] in offered, f"workspace {plan['workspace']['select']} offered (got {offered})")
                data = {"account_id": plan["workspace"]["select"], "action": "select"}
        elif url.path == "/consent":
            form = form_with(page, button=("decision", plan["consent"]))
            data = {"decision": plan["consent"]}
        else:
            raise CheckFailed(f"unexpected page {resp.url}: {resp.text[:1500]}")
        CHECKS.eq(form["method"], "post", f"{url.path}: form method")
        # As a browser does: every hidden input goes along (csrf_token, interaction, ...).
        hidden = {i["name"]: i["value"] for i in form["inputs"] if i["type"] == "hidden" and i["name"]}
        CHECKS.ok(hidden.get("csrf_token"), f"{url.path}: the form has a csrf_token")
        data = {**hidden, **data}
        action = urllib.parse.urljoin(resp.url, form["action"]) if form["action"] else resp.url
        resp = http.post(action, data=data, allow_redirects=False, timeout=TIMEOUT)
        CHECKS.eq(resp.status_code, 303, f"POST {urllib.parse.urlsplit(action).path} answers 303 ({resp.text[:500]})")
    raise CheckFailed("did not reach the redirect_uri")


def session_cookie_flags(http: requests.Session) -> None:
    cookie = next((c for c in http.cookies if c.name == "kw_session"), None)
    CHECKS.ok(cookie is not None, "kw_session cookie set")
    rest = {k.lower(): v for k, v in cookie._rest.items()}  # non-standard attributes, as sent
    CHECKS.ok("httponly" in rest, "kw_session is HttpOnly")
    samesite = rest.get("samesite")
    CHECKS.eq((samesite or "").lower(), "lax", "kw_session SameSite")


def run_kind(t: Target, kind: str) -> None:
    CHECKS.prefix = f"{kind}: "
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    app = create_app(t, kind, redirect_uri)
    auth_endpoint = t.meta.get("authorization_endpoint", f"{t.base}/oauth2/authorize")
    token_endpoint = t.meta["token_endpoint"]
    userinfo_endpoint = t.meta.get("userinfo_endpoint", f"{t.base}/oauth2/userinfo")

    def new_session() -> OAuth2Session:
        return OAuth2Session(
            app["client_id"],
            app["client_secret"],
            scope=SCOPE,
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            token_endpoint_auth_method="client_secret_basic" if app["client_secret"] else "none",
        )

    client = new_session()
    verifier = secrets.token_urlsafe(48)
    nonce = secrets.token_urlsafe(16)
    uri, state = client.create_authorization_url(auth_endpoint, code_verifier=verifier, nonce=nonce, resource=RESOURCE)
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(uri).query))
    CHECKS.eq(q.get("code_challenge_method"), "S256", "Authlib sent code_challenge_method")

    username = f"authlib{kind}{secrets.token_hex(4)}"
    user = {"username": username, "email": f"{username}@example.test", "password": PASSWORD, "name": f"Authlib {kind}"}
    workspace = f"authlib {kind} workspace"
    browser = requests.Session()
    callback, visited = drive(
        t, browser, uri, redirect_uri, {"signup": user, "workspace": {"create": workspace}, "consent": "allow"}
    )
    CHECKS.eq(visited, ["/sign-in", "/sign-up", "/workspace", "/consent"], "hosted pages of a new user")
    session_cookie_flags(browser)
    cq = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(callback).query))
    CHECKS.ok(cq.get("code") and "error" not in cq, f"callback has a code: {cq}")
    CHECKS.eq(cq.get("state"), state, "callback state")
    CHECKS.eq(cq.get("iss"), t.base, "callback iss (RFC 9207)")

    token = client.fetch_token(token_endpoint, authorization_response=callback, code_verifier=verifier, state=state, timeout=TIMEOUT)
    CHECKS.ok(token.get("access_token") and token.get("id_token") and token.get("refresh_token"), f"fetch_token: {list(token)}")
    CHECKS.eq(str(token.get("token_type")).lower(), "bearer", "token_type")
    id_claims = jwt_claims(token["id_token"], t.keys)
    CHECKS.eq(id_claims.get("iss"), t.base, "id_token iss")
    CHECKS.ok(app["client_id"] in audiences(id_claims.get("aud")), f"id_token aud {id_claims.get('aud')}")
    CHECKS.eq(id_claims.get("nonce"), nonce, "id_token nonce")
    CHECKS.ok(id_claims.get("exp", 0) > time.time(), "id_token not expired")
    at = jwt_claims(token["access_token"], t.keys)
    CHECKS.eq(at.get("sub"), id_claims.get("sub"), "access token sub")
    CHECKS.eq(at.get("client_id"), app["client_id"], "access token client_id")
    CHECKS.ok(RESOURCE in audiences(at.get("aud")), f"access token aud {at.get('aud')}")
    CHECKS.ok(isinstance(at.get("acc"), str), f"access token acc: {at}")
    CHECKS.eq(at.get("role"), "owner", "access token role")
    account = t.api("GET", f"/api/accounts/{at.get('acc')}")
    CHECKS.ok(account.status_code == 200 and account.json().get("name") == workspace, f"workspace account: {account.text}")

    info = client.get(userinfo_endpoint, timeout=TIMEOUT)
    CHECKS.eq(info.status_code, 200, f"userinfo through the session {info.text}")
    info = info.json()
    CHECKS.eq(info.get("sub"), id_claims.get("sub"), "userinfo sub")
    CHECKS.eq(info.get("preferred_username"), username, "userinfo preferred_username")
    CHECKS.eq(info.get("email"), user["email"], "userinfo email")
    CHECKS.eq(info.get("name"), user["name"], "userinfo name")

    old_refresh = token["refresh_token"]
    new = client.refresh_token(token_endpoint, timeout=TIMEOUT)
    CHECKS.ok(new.get("access_token") and new.get("refresh_token"), f"refresh_token: {list(new)}")
    CHECKS.ok(new["refresh_token"] != old_refresh, "the refresh token rotated")
    CHECKS.eq(client.token["refresh_token"], new["refresh_token"], "the session holds the new token")
    CHECKS.eq(jwt_claims(new["access_token"], t.keys).get("acc"), at.get("acc"), "refreshed access token keeps acc")
    info = client.get(userinfo_endpoint, timeout=TIMEOUT)
    CHECKS.eq(info.status_code, 200, "userinfo with the refreshed token")

    if kind == "web":
        # Introspection and revocation (RFC 7662 / RFC 7009) with the confidential client.
        intro = client.introspect_token(t.meta.get("introspection_endpoint", f"{t.base}/oauth2/introspect"), token=new["access_token"], timeout=TIMEOUT)
        CHECKS.eq(intro.status_code, 200, f"introspect {intro.text}")
        CHECKS.ok(intro.json().get("active") is True and intro.json().get("sub") == id_claims.get("sub"), f"introspection: {intro.text}")
        # A second client in the same family: revoke its refresh token, then it is refused.
        other = new_session()
        v2 = secrets.token_urlsafe(48)
        n2 = secrets.token_urlsafe(16)
        uri2, state2 = other.create_authorization_url(auth_endpoint, code_verifier=v2, nonce=n2, resource=RESOURCE)
        returning = requests.Session()
        cb2, visited2 = drive(
            t,
            returning,
            uri2,
            redirect_uri,
            {"signin": {"login": user["email"], "password": PASSWORD}, "workspace": {"select": at.get("acc")}},
        )
        CHECKS.eq(visited2, ["/sign-in", "/workspace"], "returning user: sign-in and workspace; consent remembered")
        tok2 = other.fetch_token(token_endpoint, authorization_response=cb2, code_verifier=v2, state=state2, timeout=TIMEOUT)
        CHECKS.eq(jwt_claims(tok2["id_token"], t.keys).get("nonce"), n2, "returning user's id_token nonce")
        CHECKS.eq(jwt_claims(tok2["access_token"], t.keys).get("acc"), at.get("acc"), "returning user's acc")
        rev = other.revoke_token(t.meta.get("revocation_endpoint", f"{t.base}/oauth2/revoke"), token=tok2["refresh_token"], token_type_hint="refresh_token", timeout=TIMEOUT)
        CHECKS.eq(rev.status_code, 200, f"revoke {rev.text}")
        try:
            other.refresh_token(token_endpoint, refresh_token=tok2["refresh_token"], timeout=TIMEOUT)
            refused = None
        except OAuthError as e:
            refused = e.error
        CHECKS.eq(refused, "invalid_grant", "a revoked refresh token is refused")
        intro = client.introspect_token(t.meta.get("introspection_endpoint", f"{t.base}/oauth2/introspect"), token=tok2["refresh_token"], timeout=TIMEOUT)
        CHECKS.ok(intro.status_code == 200 and intro.json().get("active") is False, f"introspection of a revoked token: {intro.text}")

    # Reuse of the rotated-out refresh token: invalid_grant, and the whole family is revoked.
    try:
        client.refresh_token(token_endpoint, refresh_token=old_refresh, timeout=TIMEOUT)
        reuse = None
    except OAuthError as e:
        reuse = e.error
    CHECKS.eq(reuse, "invalid_grant", "reusing the old refresh token")
    try:
        client.refresh_token(token_endpoint, refresh_token=new["refresh_token"], timeout=TIMEOUT)
        family = None
    except OAuthError as e:
        family = e.error
    CHECKS.eq(family, "invalid_grant", "the newest refresh token after reuse (family revoked)")

    # The code is single-use.
    again = new_session()
    try:
        again.fetch_token(token_endpoint, authorization_response=callback, code_verifier=verifier, state=state, timeout=TIMEOUT)
        code_reuse = None
    except OAuthError as e:
        code_reuse = e.error
    CHECKS.eq(code_reuse, "invalid_grant", "a second exchange of the code")


def run_target(t: Target) -> None:
    check_discovery(t)
    setup_admin(t)
    for kind in ("web", "spa"):
        run_kind(t, kind)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stores", default=os.environ.get("KEYWARD_INTEROP_STORES", "sqlite,postgres"))
    args = parser.parse_args()

    failures: list[str] = []
    if os.environ.get("KEYWARD_URL"):
        targets = [("external", None)]
    else:
        targets = [(s.strip(), s.strip()) for s in args.stores.split(",") if s.strip()]
    for name, store in targets:
        server = None
        before = CHECKS.passed
        CHECKS.store = name
        try:
            if store is None:
                t = Target(os.environ["KEYWARD_URL"], os.environ["KEYWARD_ADMIN_CLIENT_ID"], os.environ["KEYWARD_ADMIN_CLIENT_SECRET"])
            else:
                server = Server(store)
                t = Target(server.base, server.admin_id, server.admin_secret)
            log(f"==> authlib flow on {name} ({t.base})")
            run_target(t)
            log(f"ok {name}: {CHECKS.passed - before} checks passed")
        except Exception as e:  # noqa: BLE001 - report everything, including Authlib errors
            if not isinstance(e, CheckFailed):
                CHECKS.failed += 1
            failures.append(f"{name}: {e}")
            log(f"FAIL {name}: {e}")
            if not isinstance(e, CheckFailed):
                traceback.print_exc()
            if server is not None:
                log(f"--- server log ({name}, {server.log_path}) ---\n{server.log_tail()}")
        finally:
            if server is not None:
                server.stop(keep=bool(failures))
    for w in CHECKS.warnings:
        log(f"warning: {w}")
    for f in failures + CHECKS.soft_failures:
        log(f"failed: {f}")
    print(f"interop: {CHECKS.passed} passed, {CHECKS.failed} failed", flush=True)
    return 1 if failures or CHECKS.soft_failures else 0


if __name__ == "__main__":
    sys.exit(main())
