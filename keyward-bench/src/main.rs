//! `token-baseline`: the least a client-credentials token endpoint can do, to measure
//! Keyward's token endpoint against.
//!
//! One route, `POST /oauth2/token`: parse the form body, compare the client secret's
//! SHA-256 digest with the configured one in constant time, sign an EdDSA access token
//! (RFC 9068 shape, with a key parsed once at start) and answer a `TokenResponse`. No
//! database, no cache, no logging, no middleware.
//!
//! ```text
//! token-baseline --listen 127.0.0.1:8081 --client-id bench --client-secret s3cret
//! curl -d grant_type=client_credentials -d client_id=bench -d client_secret=s3cret \
//!      -d audience=http://127.0.0.1:8081/api http://127.0.0.1:8081/oauth2/token
//! ```

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::rejection::FormRejection;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Form, Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use clap::Parser;
use keyward_proto::{AccessTokenClaims, OAuthErrorBody, TokenResponse};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

#[derive(Debug, Parser)]
#[command(
    name = "token-baseline",
    about = "Bare client-credentials token endpoint (benchmark baseline)"
)]
struct Args {
    /// Socket address to listen on.
    #[arg(long, env = "TOKEN_BASELINE_LISTEN", default_value = "127.0.0.1:8081")]
    listen: String,
    /// The one client id accepted.
    #[arg(long, env = "TOKEN_BASELINE_CLIENT_ID")]
    client_id: String,
    /// Its secret (only its SHA-256 digest is kept).
    #[arg(long, env = "TOKEN_BASELINE_CLIENT_SECRET")]
    client_secret: String,
    /// `iss` of the tokens; defaults to `http://{listen}`.
    #[arg(long, env = "TOKEN_BASELINE_ISSUER")]
    issuer: Option<String>,
    /// When set, the only audience accepted; otherwise any non-empty audience.
    #[arg(long, env = "TOKEN_BASELINE_AUDIENCE")]
    audience: Option<String>,
    /// `scope` of the tokens.
    #[arg(
        long,
        env = "TOKEN_BASELINE_SCOPE",
        default_value = "applications:read applications:write users:read users:write accounts:read accounts:write"
    )]
    scope: String,
    /// Token lifetime in seconds.
    #[arg(long, env = "TOKEN_BASELINE_TTL_SECS", default_value_t = 3600)]
    ttl_secs: u64,
}

struct Baseline {
    client_id: String,
    secret_digest: [u8; 32],
    issuer: String,
    audience: Option<String>,
    scope: String,
    ttl_secs: u64,
    key: Ed25519KeyPair,
    /// base64url of `{"alg":"EdDSA","typ":"at+jwt","kid":…}`, fixed for the key.
    encoded_header: String,
    rng: SystemRandom,
}

#[derive(Debug, Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    audience: Option<String>,
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let body = OAuthErrorBody {
        error: error.to_owned(),
        error_description: Some(description.to_owned()),
    };
    (
        status,
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(body),
    )
        .into_response()
}

fn sha256(value: &[u8]) -> [u8; 32] {
    Sha256::digest(value).into()
}

impl Baseline {
    fn new(args: Args) -> Result<Self, String> {
        let rng = SystemRandom::new();
        let pkcs8 =
            Ed25519KeyPair::generate_pkcs8(&rng).map_err(|e| format!("key generation: {e}"))?;
        let key =
            Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|e| format!("key parsing: {e}"))?;
        let thumb = sha256(key.public_key().as_ref());
        let kid = format!("baseline-{}", URL_SAFE_NO_PAD.encode(&thumb[..8]));
        let header = serde_json::json!({ "alg": "EdDSA", "typ": "at+jwt", "kid": kid });
        Ok(Self {
            secret_digest: sha256(args.client_secret.as_bytes()),
            issuer: args
                .issuer
                .unwrap_or_else(|| format!("http://{}", args.listen))
                .trim_end_matches('/')
                .to_owned(),
            client_id: args.client_id,
            audience: args.audience,
            scope: args.scope,
            ttl_secs: args.ttl_secs,
            key,
            encoded_header: URL_SAFE_NO_PAD.encode(header.to_string()),
            rng,
        })
    }

    fn sign(&self, claims: &AccessTokenClaims) -> Result<String, String> {
        let payload = serde_json::to_vec(claims).map_err(|e| e.to_string())?;
        let mut jwt = String::with_capacity(self.encoded_header.len() + payload.len() * 4 / 3 + 96);
        jwt.push_str(&self.encoded_header);
        jwt.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut jwt);
        let signature = self.key.sign(jwt.as_bytes());
        jwt.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.as_ref(), &mut jwt);
        Ok(jwt)
    }

    fn issue(&self, form: TokenForm) -> Response {
        if form.grant_type.as_deref() != Some("client_credentials") {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only client_credentials is supported",
            );
        }
        let (Some(client_id), Some(secret)) = (form.client_id, form.client_secret) else {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client authentication failed",
            );
        };
        let secret_ok: bool = sha256(secret.as_bytes()).ct_eq(&self.secret_digest).into();
        if client_id != self.client_id || !secret_ok {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client authentication failed",
            );
        }
        let audience = match (form.audience, &self.audience) {
            (Some(requested), Some(allowed)) if &requested == allowed => requested,
            (Some(requested), None) if !requested.is_empty() => requested,
            _ => {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_target",
                    "unknown audience",
                )
            }
        };
        let mut jti = [0u8; 16];
        if self.rng.fill(&mut jti).is_err() {
            return oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "no randomness",
            );
        }
        let iat = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let iat = i64::try_from(iat).unwrap_or(i64::MAX);
        let ttl = i64::try_from(self.ttl_secs).unwrap_or(i64::MAX);
        let claims = AccessTokenClaims {
            iss: self.issuer.clone(),
            sub: client_id.clone(),
            aud: audience,
            exp: iat.saturating_add(ttl),
            iat,
            jti: URL_SAFE_NO_PAD.encode(jti),
            scope: self.scope.clone(),
            app: Some(client_id.clone()),
            client_id,
            uid: None,
            acc: None,
            role: None,
            gid: None,
        };
        match self.sign(&claims) {
            Ok(access_token) => {
                let body = TokenResponse {
                    access_token,
                    token_type: "Bearer".to_owned(),
                    expires_in: self.ttl_secs,
                    scope: Some(claims.scope),
                    refresh_token: None,
                    id_token: None,
                };
                (
                    [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
                    Json(body),
                )
                    .into_response()
            }
            Err(e) => oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", &e),
        }
    }
}

async fn token(
    State(baseline): State<Arc<Baseline>>,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Response {
    match form {
        Ok(Form(form)) => baseline.issue(form),
        Err(rejection) => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &rejection.body_text(),
        ),
    }
}

/// The same allocator as the `keyward` binary, so that the ratio measures the work each
/// does per token and not the allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = Args::parse();
    let listen = args.listen.clone();
    let baseline = match Baseline::new(args) {
        Ok(baseline) => Arc::new(baseline),
        Err(e) => {
            eprintln!("token-baseline: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("token-baseline: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let app = Router::new()
        .route("/oauth2/token", post(token))
        .with_state(baseline);
    let result = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        eprintln!("token-baseline listening on {listen}");
        axum::serve(listener, app).await.map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("token-baseline: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn baseline(audience: Option<&str>) -> Baseline {
        Baseline::new(Args {
            listen: "127.0.0.1:1".into(),
            client_id: "bench".into(),
            client_secret: "s3cret".into(),
            issuer: None,
            audience: audience.map(str::to_owned),
            scope: "a b".into(),
            ttl_secs: 60,
        })
        .unwrap()
    }

    fn form(secret: &str, audience: &str) -> TokenForm {
        TokenForm {
            grant_type: Some("client_credentials".into()),
            client_id: Some("bench".into()),
            client_secret: Some(secret.into()),
            audience: Some(audience.into()),
        }
    }

    #[test]
    fn signed_tokens_verify_with_the_public_key() {
        let b = baseline(None);
        let claims = AccessTokenClaims {
            iss: b.issuer.clone(),
            sub: "bench".into(),
            aud: "x".into(),
            exp: 2,
            iat: 1,
            jti: "j".into(),
            scope: "a".into(),
            client_id: "bench".into(),
            uid: None,
            app: None,
            acc: None,
            role: None,
            gid: None,
        };
        let jwt = b.sign(&claims).unwrap();
        let (signed, signature) = jwt.rsplit_once('.').unwrap();
        let public = ring::signature::UnparsedPublicKey::new(
            &ring::signature::ED25519,
            b.key.public_key().as_ref(),
        );
        public
            .verify(
                signed.as_bytes(),
                &URL_SAFE_NO_PAD.decode(signature).unwrap(),
            )
            .unwrap();
        let header: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(jwt.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(header["alg"], "EdDSA");
        assert_eq!(header["typ"], "at+jwt");
        assert_eq!(b.issuer, "http://127.0.0.1:1");
    }

    #[test]
    fn credentials_grant_type_and_audience_are_checked() {
        let b = baseline(Some("https://api"));
        assert_eq!(
            b.issue(form("s3cret", "https://api")).status(),
            StatusCode::OK
        );
        assert_eq!(
            b.issue(form("wrong", "https://api")).status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            b.issue(form("s3cret", "https://other")).status(),
            StatusCode::BAD_REQUEST
        );
        let mut bad_grant = form("s3cret", "https://api");
        bad_grant.grant_type = Some("password".into());
        assert_eq!(b.issue(bad_grant).status(), StatusCode::BAD_REQUEST);
        let open = baseline(None);
        assert_eq!(
            open.issue(form("s3cret", "anything")).status(),
            StatusCode::OK
        );
        assert_eq!(
            open.issue(form("s3cret", "")).status(),
            StatusCode::BAD_REQUEST
        );
    }
}
