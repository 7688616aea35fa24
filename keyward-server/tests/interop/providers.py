#!/usr/bin/env python3
"""Third-party OAuth 2.0 servers for Keyward's external-application tests.

Keyward acts as an OAuth 2.0 *client* towards "external applications". The end-to-end tests
(Node and Rust) need real authorization servers that we did not write in Rust; this script is
one, built on Authlib's Flask OAuth 2.0 server (AuthorizationServer, AuthorizationCodeGrant
with the RFC 7636 CodeChallenge extension, RefreshTokenGrant, the RFC 7009
RevocationEndpoint, the RFC 9207 IssuerParameter extension, ResourceProtector with a
BearerTokenValidator), with in-memory storage guarded by one lock, served by Flask's
(Werkzeug's) threaded development server on 127.0.0.1. Two kinds:

* ``standard``: an RFC 6749 server: /authorize (code flow, PKCE S256/plain, state, optional
  RFC 9207 ``iss``), /token (authorization_code and refresh_token grants; client_secret_basic,
  client_secret_post, or none for public clients), /revoke (RFC 7009), RFC 8414 metadata,
  Bearer-protected /api/me and /api/echo, plus /redirect and /api/headers for the proxy's
  redirect handling.
* ``quirky``: the non-standard "private" style: /token and /refresh_token accept only JSON
  bodies (form bodies -> 415) and answer ``expires_in`` as a string and ``scope``
  comma-separated; refresh tokens are not rotated by default; no refresh grant at /token.

Usage::

    python providers.py --kind standard|quirky --port 0 [--issuer-in-response]
        [--access-token-ttl SECS] [--client-id ID --client-secret SECRET]
        [--redirect-uri URI ...] [--refresh-delay-ms N] [--quiet]

Prints exactly one line ``READY <port>`` to stdout once listening, then serves until killed
(request logs go to stderr; --quiet silences them). The issuer is ``http://127.0.0.1:<port>``.
The default client is ``keyward-test-client`` / ``keyward-test-secret``; without
--redirect-uri it accepts any http(s) redirect URI, with it only exact matches. More clients
can be registered at runtime through ``POST /control``. ``--access-token-ttl 0`` issues
tokens without ``expires_in`` that do not expire (until ``expire_access_tokens``).

Test control (JSON, no auth, both kinds): ``GET /stats``, ``POST /control``,
``POST /reset-stats``; see ``Provider.control`` and ``Provider.stats_json``.
``providers_selftest.py`` exercises all of it.
"""

from __future__ import annotations

import argparse
import html
import json
import logging
import os
import re
import secrets
import sys
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

# Plain HTTP on loopback: Authlib refuses non-TLS request URLs otherwise.
os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")

from flask import Flask, Response  # noqa: E402
from flask import request as flask_request  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

from authlib.common.security import generate_token  # noqa: E402
from authlib.integrations.flask_oauth2 import (  # noqa: E402
    AuthorizationServer,
    ResourceProtector,
    current_token,
)
from authlib.integrations.flask_oauth2.requests import FlaskOAuth2Request  # noqa: E402
from authlib.oauth2.rfc6749 import (  # noqa: E402
    AuthorizationCodeMixin,
    ClientMixin,
    OAuth2Error,
    OAuth2Request,
    TokenMixin,
)
from authlib.oauth2.rfc6749.grants import (  # noqa: E402
    AuthorizationCodeGrant,
    RefreshTokenGrant,
)
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload  # noqa: E402
from authlib.oauth2.rfc6750 import BearerTokenGenerator, BearerTokenValidator  # noqa: E402
from authlib.oauth2.rfc7009 import RevocationEndpoint  # noqa: E402
from authlib.oauth2.rfc7636 import CodeChallenge  # noqa: E402
from authlib.oauth2.rfc9207 import IssuerParameter  # noqa: E402

DEFAULT_CLIENT_ID = "keyward-test-client"
DEFAULT_CLIENT_SECRET = "keyward-test-secret"
DEFAULT_QUIRKY_SCOPE = "read write"
CODE_TTL = 600
AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
GRANT_TYPES = ("authorization_code", "refresh_token")
REDIRECT_CODES = (301, 302, 303, 307, 308)
CONTROL_KEYS = {
    "access_token_ttl",
    "rotate_refresh_tokens",
    "refresh_delay_ms",
    "invalidate_refresh_tokens",
    "fail_next_refresh_with",
    "register_client",
    "expire_access_tokens",
}


# --- the in-memory model -----------------------------------------------------------------


@dataclass
class User:
    username: str


class Client(ClientMixin):
    def __init__(self, provider, client_id, client_secret, redirect_uris=None, scope=None):
        self.provider = provider
        self.client_id = client_id
        self.client_secret = client_secret or None  # None: a public client (auth method none)
        self.redirect_uris = list(redirect_uris or [])  # empty: any http(s) URI
        self.scope = provider.split_scope(scope) if scope else None  # None: any scope

    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        return self.redirect_uris[0] if self.redirect_uris else None

    def get_allowed_scope(self, scope):
        if scope:
            requested = self.provider.split_scope(scope)
            granted = [s for s in requested if self.scope is None or s in self.scope]
            if requested and not granted:
                return None  # nothing requested is allowed: invalid_scope
        else:
            granted = list(self.scope or [])
        return " ".join(dict.fromkeys(granted))

    def check_redirect_uri(self, redirect_uri):
        if self.redirect_uris:
            return redirect_uri in self.redirect_uris
        parts = urlsplit(redirect_uri)
        return parts.scheme in ("http", "https") and bool(parts.netloc)

    def check_client_secret(self, client_secret):
        return self.client_secret is not None and secrets.compare_digest(
            self.client_secret.encode(), (client_secret or "").encode()
        )

    def check_endpoint_auth_method(self, method, endpoint):
        if self.client_secret is None:
            return method == "none"
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type):
        return response_type == "code"

    def check_grant_type(self, grant_type):
        return grant_type in GRANT_TYPES


@dataclass
class AuthCode(AuthorizationCodeMixin):
    code: str
    client_id: str
    redirect_uri: str | None
    scope: str
    username: str
    code_challenge: str | None
    code_challenge_method: str | None
    expires_at: float

    def get_redirect_uri(self):
        return self.redirect_uri

    def get_scope(self):
        return self.scope


@dataclass
class AccessToken(TokenMixin):
    access_token: str
    client_id: str
    username: str
    scope: str
    grant_id: str
    issued_at: float
    expires_at: float | None  # None: no expiry
    revoked: bool = False

    def check_client(self, client):
        return client.client_id == self.client_id

    def get_scope(self):
        return self.scope

    def get_expires_in(self):
        return 0 if self.expires_at is None else int(self.expires_at - self.issued_at)

    def is_expired(self):
        return self.expires_at is not None and time.time() >= self.expires_at

    def is_revoked(self):
        return self.revoked

    def get_user(self):
        return User(self.username)


@dataclass
class RefreshToken(TokenMixin):
    refresh_token: str
    client_id: str
    username: str
    scope: str
    grant_id: str
    revoked: bool = False

    def check_client(self, client):
        return client.client_id == self.client_id

    def get_scope(self):
        return self.scope

    def get_expires_in(self):
        return 0

    def is_expired(self):
        return False

    def is_revoked(self):
        return self.revoked

    def get_user(self):
        return User(self.username)


# --- Authlib pieces ----------------------------------------------------------------------


class BodyRequest(OAuth2Request):
    """An OAuth2Request over a JSON body (the quirky token endpoints): Authlib validates the
    client, code, redirect_uri, PKCE and refresh token as if the values had come as a form."""

    def __init__(self, data: dict):
        req = flask_request
        super().__init__(req.method, req.url, headers=req.headers)
        self._data = {
            k: (v if isinstance(v, str) else json.dumps(v))
            for k, v in data.items()
            if v is not None
        }
        self.payload = BasicOAuth2Payload(self._data)

    @property
    def args(self):
        return {}

    @property
    def form(self):
        return self._data


class Server(AuthorizationServer):
    def __init__(self, app, provider):
        self.provider = provider
        super().__init__(app, query_client=provider.clients.get, save_token=provider.save_token)

    def create_oauth2_request(self, request):
        if isinstance(request, OAuth2Request):
            return request
        return FlaskOAuth2Request(flask_request)


class CodeGrant(AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS

    def save_authorization_code(self, code, request):
        data = request.payload.data
        self.server.provider.codes[code] = AuthCode(
            code=code,
            client_id=request.client.client_id,
            redirect_uri=request.payload.redirect_uri,
            scope=request.scope or "",
            username=request.user.username,
            code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"),
            expires_at=time.time() + CODE_TTL,
        )

    def query_authorization_code(self, code, client):
        item = self.server.provider.codes.get(code)
        if item and item.client_id == client.client_id and time.time() < item.expires_at:
            return item
        return None

    def delete_authorization_code(self, authorization_code):
        self.server.provider.codes.pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code):
        return User(authorization_code.username)


class RefreshGrant(RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS

    def authenticate_refresh_token(self, refresh_token):
        item = self.server.provider.refresh.get(refresh_token)
        return item if item and not item.revoked else None

    def authenticate_user(self, refresh_token):
        return User(refresh_token.username)

    def issue_token(self, user, refresh_token):
        self.INCLUDE_NEW_REFRESH_TOKEN = self.server.provider.rotate_refresh_tokens
        return super().issue_token(user, refresh_token)

    def revoke_old_credential(self, refresh_token):
        if self.INCLUDE_NEW_REFRESH_TOKEN:
            refresh_token.revoked = True


class LenientCodeChallenge(CodeChallenge):
    """The quirky server: a code_verifier, when sent, must match the code_challenge; when
    absent the code is accepted anyway."""

    def validate_code_verifier(self, grant, result):
        if not grant.request.form.get("code_verifier"):
            return
        return super().validate_code_verifier(grant, result)


class Revocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = AUTH_METHODS

    def query_token(self, token_string, token_type_hint):
        p = self.server.provider
        if token_type_hint == "refresh_token":
            return p.refresh.get(token_string) or p.access.get(token_string)
        return p.access.get(token_string) or p.refresh.get(token_string)

    def revoke_token(self, token, request):
        self.server.provider.revoke(token)


class Issuer(IssuerParameter):
    def __init__(self, provider):
        self.provider = provider

    def get_issuer(self):
        return self.provider.issuer


class AccessTokenValidator(BearerTokenValidator):
    def __init__(self, provider):
        super().__init__()
        self.provider = provider

    def authenticate_token(self, token_string):
        with self.provider.lock:
            return self.provider.access.get(token_string)


# --- the provider ------------------------------------------------------------------------


class Provider:
    def __init__(self, args):
        self.kind = args.kind
        self.quirky = args.kind == "quirky"
        self.issuer_in_response = args.issuer_in_response and not self.quirky
        self.issuer = None  # set once the port is known
        self.lock = threading.RLock()
        # settings (POST /control)
        self.access_token_ttl = args.access_token_ttl
        self.rotate_refresh_tokens = not self.quirky
        self.refresh_delay_ms = args.refresh_delay_ms
        self.fail_next_refresh_with = None
        # storage
        self.clients = {}
        self.codes = {}
        self.access = {}
        self.refresh = {}
        self.reset_stats()
        self.clients[args.client_id] = Client(
            self,
            args.client_id,
            args.client_secret,
            args.redirect_uri,
            DEFAULT_QUIRKY_SCOPE if self.quirky else None,
        )

    # scopes: space-separated per RFC 6749; the quirky server also splits on commas.
    def split_scope(self, scope):
        if isinstance(scope, (list, tuple)):
            scope = " ".join(scope)
        pattern = r"[,\s]+" if self.quirky else r"\s+"
        return [s for s in re.split(pattern, scope or "") if s]

    def display_scope(self, scope):
        return ("," if self.quirky else " ").join(self.split_scope(scope))

    # storage callbacks (called by Authlib with self.lock held)
    def save_token(self, token, request):
        now = time.time()
        grant_id = request.refresh_token.grant_id if request.refresh_token else generate_token(16)
        ttl = token.get("expires_in")
        self.access[token["access_token"]] = AccessToken(
            access_token=token["access_token"],
            client_id=request.client.client_id,
            username=request.user.username,
            scope=token.get("scope", ""),
            grant_id=grant_id,
            issued_at=now,
            expires_at=now + ttl if ttl else None,
        )
        if token.get("refresh_token"):
            self.refresh[token["refresh_token"]] = RefreshToken(
                refresh_token=token["refresh_token"],
                client_id=request.client.client_id,
                username=request.user.username,
                scope=token.get("scope", ""),
                grant_id=grant_id,
            )

    def revoke(self, token):
        """RFC 7009 §2.1: revoking a refresh token also revokes the access tokens of its
        grant; revoking an access token revokes only that token."""
        token.revoked = True
        if isinstance(token, RefreshToken):
            self.revoked_tokens.append(token.refresh_token)
            for item in self.access.values():
                if item.grant_id == token.grant_id:
                    item.revoked = True
        else:
            self.revoked_tokens.append(token.access_token)

    def generate_expires_in(self, client, grant_type):
        return self.access_token_ttl

    # statistics
    def reset_stats(self):
        with self.lock:
            self.token_requests = 0
            self.authorization_code_grants = 0
            self.refresh_grants = 0
            self.token_errors = 0
            self.revocations = 0
            self.revoked_tokens = []
            self.last_token_request = None

    def record_token_request(self):
        req = flask_request
        body = req.get_json(silent=True) if req.is_json else req.form
        auth = req.headers.get("Authorization")
        self.token_requests += 1
        self.last_token_request = {
            "content_type": req.headers.get("Content-Type"),
            "path": req.path,
            "body_keys": sorted(body.keys()) if isinstance(body, dict) or hasattr(body, "keys") else [],
            "auth_scheme": auth.split(None, 1)[0].lower() if auth else None,
        }

    def stats_json(self):
        with self.lock:
            return {
                "kind": self.kind,
                # every POST to /token or /refresh_token
                "token_requests": self.token_requests,
                # token requests per grant type, whatever their outcome
                "authorization_code_grants": self.authorization_code_grants,
                "refresh_grants": self.refresh_grants,
                # token requests answered with a non-200 status
                "token_errors": self.token_errors,
                # POST /revoke answered 200, and the tokens they actually revoked
                "revocations": self.revocations,
                "revoked_tokens": list(self.revoked_tokens),
                "last_token_request": self.last_token_request,
                "settings": {
                    "access_token_ttl": self.access_token_ttl,
                    "rotate_refresh_tokens": self.rotate_refresh_tokens,
                    "refresh_delay_ms": self.refresh_delay_ms,
                    "fail_next_refresh_with": self.fail_next_refresh_with,
                    "clients": sorted(self.clients),
                },
            }

    def control(self, body):
        """Apply a POST /control body. Returns an error string, or None."""
        if not isinstance(body, dict):
            return "the body must be a JSON object"
        unknown = set(body) - CONTROL_KEYS
        if unknown:
            return f"unknown control keys: {sorted(unknown)}"
        with self.lock:
            if "access_token_ttl" in body:
                ttl = body["access_token_ttl"]
                if not isinstance(ttl, int) or isinstance(ttl, bool) or ttl < 0:
                    return "access_token_ttl must be a non-negative integer"
                self.access_token_ttl = ttl
            if "rotate_refresh_tokens" in body:
                if not isinstance(body["rotate_refresh_tokens"], bool):
                    return "rotate_refresh_tokens must be a boolean"
                self.rotate_refresh_tokens = body["rotate_refresh_tokens"]
            if "refresh_delay_ms" in body:
                delay = body["refresh_delay_ms"]
                if not isinstance(delay, int) or isinstance(delay, bool) or delay < 0:
                    return "refresh_delay_ms must be a non-negative integer"
                self.refresh_delay_ms = delay
            if "fail_next_refresh_with" in body:
                fail = body["fail_next_refresh_with"]
                if fail is not None and not isinstance(fail, str):
                    return "fail_next_refresh_with must be an error code string or null"
                self.fail_next_refresh_with = fail
            if "register_client" in body:
                c = body["register_client"]
                if not isinstance(c, dict) or not isinstance(c.get("client_id"), str):
                    return "register_client needs at least a client_id"
                uris = c.get("redirect_uris") or []
                if not isinstance(uris, list) or not all(isinstance(u, str) for u in uris):
                    return "redirect_uris must be a list of strings"
                self.clients[c["client_id"]] = Client(
                    self, c["client_id"], c.get("client_secret"), uris, c.get("scope")
                )
            if body.get("invalidate_refresh_tokens"):
                for item in self.refresh.values():
                    item.revoked = True
            if body.get("expire_access_tokens"):
                past = time.time() - 1
                for item in self.access.values():
                    item.expires_at = past
        return None


# --- the Flask application ---------------------------------------------------------------


def json_response(payload, status=200, headers=None):
    return Response(
        json.dumps(payload),
        status=status,
        headers={"Content-Type": "application/json", "Cache-Control": "no-store", **(headers or {})},
    )


def request_echo():
    headers = {}
    for name, value in flask_request.headers.items():
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return {
        "method": flask_request.method,
        "path": flask_request.path,
        "query": flask_request.query_string.decode("latin-1"),
        "headers": headers,
        "body": flask_request.get_data(as_text=True),
    }


APPROVE_PAGE = """<!doctype html>
<html>
<head><meta charset="utf-8"><title>Authorize {client}</title></head>
<body>
<h1>Authorize {client} for scopes {scopes}?</h1>
<form method="post" action="{action}">
  <label for="username">Username</label>
  <input type="text" id="username" name="username" value="alice">
  <button type="submit" id="approve" name="decision" value="approve">Approve</button>
  <button type="submit" id="deny" name="decision" value="deny">Deny</button>
</form>
</body>
</html>
"""


def create_app(provider: Provider) -> Flask:
    app = Flask(__name__)
    server = Server(app, provider)
    server.register_token_generator(
        "default",
        BearerTokenGenerator(
            lambda **kw: generate_token(42),
            lambda **kw: generate_token(48),
            provider.generate_expires_in,
        ),
    )
    challenge = LenientCodeChallenge(required=False) if provider.quirky else CodeChallenge(required=True)
    server.register_grant(CodeGrant, [challenge])
    server.register_grant(RefreshGrant)
    if not provider.quirky:
        server.register_endpoint(Revocation)
    if provider.issuer_in_response:
        server.register_extension(Issuer(provider))

    require_oauth = ResourceProtector()
    require_oauth.register_token_validator(AccessTokenValidator(provider))

    def add_iss(response):
        if provider.issuer_in_response and response.location:
            Issuer(provider).add_issuer_parameter(server, response)
        return response

    def authorization_error(error):
        return add_iss(server.handle_error_response(None, error))

    # --- authorization endpoint (both kinds) ---
    @app.route("/authorize", methods=["GET", "POST"])
    def authorize():
        if flask_request.method == "GET":
            with provider.lock:
                try:
                    grant = server.get_consent_grant(end_user=None)
                except OAuth2Error as error:
                    return authorization_error(error)
            query = flask_request.query_string.decode("latin-1")
            page = APPROVE_PAGE.format(
                client=html.escape(grant.client.client_id),
                scopes=html.escape(grant.request.scope or "(none)"),
                action=html.escape("/authorize" + (f"?{query}" if query else "")),
            )
            return Response(page, headers={"Content-Type": "text/html; charset=utf-8"})
        username = (flask_request.form.get("username") or "").strip() or "alice"
        approved = flask_request.form.get("decision") == "approve"
        with provider.lock:
            try:
                grant = server.get_consent_grant(end_user=User(username))
            except OAuth2Error as error:
                return authorization_error(error)
            return server.create_authorization_response(
                grant_user=User(username) if approved else None, grant=grant
            )

    # --- token endpoints ---
    def answer_refresh(process):
        """A refresh grant: a one-shot forced failure, or Authlib's processing, atomically
        under the lock; then the configured delay before the answer (the old refresh token
        is already rotated out while the answer is delayed)."""
        with provider.lock:
            provider.refresh_grants += 1
            delay = provider.refresh_delay_ms
            failure, provider.fail_next_refresh_with = provider.fail_next_refresh_with, None
            if failure:
                status = {"server_error": 500, "temporarily_unavailable": 503}.get(failure, 400)
                response = json_response(
                    {"error": failure, "error_description": "forced by POST /control"}, status
                )
            else:
                response = process()
            if response.status_code != 200:
                provider.token_errors += 1
        if delay:
            time.sleep(delay / 1000)
        return response

    def answer_code(process):
        with provider.lock:
            provider.authorization_code_grants += 1
            response = process()
            if response.status_code != 200:
                provider.token_errors += 1
        return response

    def error_answer(error, description, status=400):
        with provider.lock:
            provider.token_errors += 1
        return json_response({"error": error, "error_description": description}, status)

    if not provider.quirky:

        @app.post("/token")
        def token():
            with provider.lock:
                provider.record_token_request()
            grant_type = flask_request.values.get("grant_type")
            if grant_type == "refresh_token":
                return answer_refresh(server.create_token_response)
            if grant_type == "authorization_code":
                return answer_code(server.create_token_response)
            with provider.lock:
                response = server.create_token_response()
                provider.token_errors += 1
            return response

        @app.post("/revoke")
        def revoke():
            with provider.lock:
                response = server.create_endpoint_response(Revocation.ENDPOINT_NAME)
                if response.status_code == 200:
                    provider.revocations += 1
            return response

        @app.get("/.well-known/oauth-authorization-server")
        def metadata():
            issuer = provider.issuer
            doc = {
                "issuer": issuer,
                "authorization_endpoint": f"{issuer}/authorize",
                "token_endpoint": f"{issuer}/token",
                "revocation_endpoint": f"{issuer}/revoke",
                "response_types_supported": ["code"],
                "response_modes_supported": ["query"],
                "grant_types_supported": list(GRANT_TYPES),
                "token_endpoint_auth_methods_supported": AUTH_METHODS,
                "revocation_endpoint_auth_methods_supported": AUTH_METHODS,
                "code_challenge_methods_supported": ["S256", "plain"],
            }
            if provider.issuer_in_response:
                doc["authorization_response_iss_parameter_supported"] = True
            return json_response(doc)

    else:

        def quirky_body(path_grant_type):
            """The JSON body as an Authlib request, or an error response."""
            if flask_request.mimetype != "application/json":
                return error_answer(
                    "unsupported_media_type", "this endpoint only accepts application/json", 415
                )
            body = flask_request.get_json(silent=True)
            if not isinstance(body, dict):
                return error_answer("invalid_request", "the body must be a JSON object")
            grant_type = body.get("grant_type") or path_grant_type
            if grant_type != path_grant_type:
                return error_answer(
                    "unsupported_grant_type",
                    f"grant_type {grant_type!r} is not supported at {flask_request.path}",
                )
            return BodyRequest({**body, "grant_type": grant_type})

        def quirky_shape(response):
            if response.status_code != 200:
                return response
            token = json.loads(response.get_data())
            out = {"access_token": token["access_token"]}
            if token.get("refresh_token"):
                out["refresh_token"] = token["refresh_token"]
            out["token_type"] = "bearer"
            out["scope"] = provider.display_scope(token.get("scope", ""))
            if token.get("expires_in"):
                out["expires_in"] = str(token["expires_in"])
            return json_response(out)

        @app.post("/token")
        def quirky_token():
            with provider.lock:
                provider.record_token_request()
            req = quirky_body("authorization_code")
            if isinstance(req, Response):
                return req
            return quirky_shape(answer_code(lambda: server.create_token_response(req)))

        @app.post("/refresh_token")
        def quirky_refresh():
            with provider.lock:
                provider.record_token_request()
            req = quirky_body("refresh_token")
            if isinstance(req, Response):
                return req
            return quirky_shape(answer_refresh(lambda: server.create_token_response(req)))

    # --- protected resources ---
    @app.get("/api/me")
    @require_oauth()
    def me():
        token = current_token._get_current_object()
        return json_response(
            {
                "user": token.username,
                "scope": provider.display_scope(token.scope),
                "token_suffix": token.access_token[-6:],
            }
        )

    @app.route("/api/echo", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    @app.route("/api/echo/<path:rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    @require_oauth()
    def echo(rest=None):
        return json_response(request_echo())

    # --- redirects (the proxy's redirect re-checking) ---
    @app.route("/redirect", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    def redirect_to():
        target = flask_request.args.get("to")
        try:
            code = int(flask_request.args.get("code", "302"))
        except ValueError:
            code = 0
        if not target or code not in REDIRECT_CODES:
            return json_response({"error": "need ?to=<url>&code=301|302|303|307|308"}, 400)
        return Response("", status=code, headers={"Location": target})

    @app.route("/api/headers", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    def headers():
        return json_response(request_echo())

    # --- test control ---
    @app.get("/stats")
    def stats():
        return json_response(provider.stats_json())

    @app.post("/control")
    def control():
        error = provider.control(flask_request.get_json(silent=True, force=True))
        if error:
            return json_response({"ok": False, "error": error}, 400)
        return json_response({"ok": True})

    @app.post("/reset-stats")
    def reset_stats():
        provider.reset_stats()
        return json_response({"ok": True})

    return app


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=["standard", "quirky"], required=True)
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument(
        "--issuer-in-response",
        action="store_true",
        help="RFC 9207 iss in authorization responses (standard only)",
    )
    parser.add_argument("--access-token-ttl", type=int, default=3600, metavar="SECS")
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
    parser.add_argument("--client-secret", default=DEFAULT_CLIENT_SECRET)
    parser.add_argument(
        "--redirect-uri",
        action="append",
        default=[],
        metavar="URI",
        help="exact redirect URI of the default client (repeatable); none: any http(s) URI",
    )
    parser.add_argument("--refresh-delay-ms", type=int, default=0, metavar="N")
    parser.add_argument("--quiet", action="store_true", help="no request log on stderr")
    args = parser.parse_args(argv)

    if args.quiet:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
    provider = Provider(args)
    app = create_app(provider)
    httpd = make_server("127.0.0.1", args.port, app, threaded=True)
    provider.issuer = f"http://127.0.0.1:{httpd.server_port}"
    sys.stdout.write(f"READY {httpd.server_port}\n")
    sys.stdout.flush()
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
