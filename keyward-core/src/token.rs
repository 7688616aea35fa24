//! Access tokens: JWTs per RFC 9068 (`typ: at+jwt`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{decode, decode_header, Validation};
use keyward_proto::{AccessTokenClaims, IdTokenClaims};
use sha2::{Digest, Sha256};
use thiserror::Error;
use time::OffsetDateTime;

use crate::id::{new_id, IdKind};
use crate::keys::{KeyError, KeySet};

/// Clock skew tolerated when checking `exp` and `iat`.
pub const LEEWAY_SECS: u64 = 30;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("no active signing key")]
    NoSigningKey,
    #[error("signing failed: {0}")]
    Signing(String),
    #[error("the token is malformed")]
    Malformed,
    #[error("the token is not an access token (typ must be at+jwt)")]
    WrongType,
    #[error("the token was signed by an unknown key")]
    UnknownKey,
    #[error("the token is invalid: {0}")]
    Invalid(String),
    #[error("the token has expired")]
    Expired,
}

impl From<KeyError> for TokenError {
    fn from(e: KeyError) -> Self {
        Self::Signing(e.to_string())
    }
}

/// What a token is minted for; the minting function fills iat/exp/jti.
pub struct TokenGrant<'a> {
    pub issuer: &'a str,
    pub subject: &'a str,
    pub audience: &'a str,
    pub client_id: &'a str,
    pub scope: String,
    pub ttl_secs: i64,
    pub user_id: Option<String>,
    pub application_id: Option<String>,
    pub account_id: Option<String>,
    pub role: Option<String>,
    /// The user grant this token comes from (authorization code / refresh flows).
    pub grant_id: Option<String>,
}

/// Signs an access token with the key set's current signing key.
pub fn mint_access_token(
    keys: &KeySet,
    grant: TokenGrant<'_>,
    now: OffsetDateTime,
) -> Result<(String, AccessTokenClaims), TokenError> {
    let key = keys.signing_key(now).ok_or(TokenError::NoSigningKey)?;
    let iat = now.unix_timestamp();
    let claims = AccessTokenClaims {
        iss: grant.issuer.to_owned(),
        sub: grant.subject.to_owned(),
        aud: grant.audience.to_owned(),
        exp: iat + grant.ttl_secs,
        iat,
        // The ULID part is unique and unpredictable enough for a token id.
        jti: new_id(IdKind::AuditEvent).replacen("evt_", "", 1),
        scope: grant.scope,
        client_id: grant.client_id.to_owned(),
        uid: grant.user_id,
        app: grant.application_id,
        acc: grant.account_id,
        role: grant.role,
        gid: grant.grant_id,
    };
    let token = key.sign_compact(&claims)?;
    Ok((token, claims))
}

/// What an ID token is minted for; `iat`/`exp` come from `now` and `ttl_secs`.
pub struct IdTokenGrant<'a> {
    pub issuer: &'a str,
    pub subject: &'a str,
    pub client_id: &'a str,
    pub auth_time: i64,
    pub nonce: Option<String>,
    /// The access token issued alongside, for `at_hash`.
    pub access_token: Option<&'a str>,
    pub session_id: Option<String>,
    pub account_id: Option<String>,
    pub role: Option<String>,
    pub ttl_secs: i64,
}

/// Signs an ID token (OpenID Connect Core §2, §3.1.3.6) with the current key.
pub fn mint_id_token(
    keys: &KeySet,
    grant: IdTokenGrant<'_>,
    now: OffsetDateTime,
) -> Result<String, TokenError> {
    let key = keys.signing_key(now).ok_or(TokenError::NoSigningKey)?;
    let iat = now.unix_timestamp();
    let claims = IdTokenClaims {
        iss: grant.issuer.to_owned(),
        sub: grant.subject.to_owned(),
        aud: grant.client_id.to_owned(),
        exp: iat + grant.ttl_secs,
        iat,
        auth_time: grant.auth_time,
        nonce: grant.nonce,
        azp: grant.client_id.to_owned(),
        at_hash: grant.access_token.map(at_hash),
        sid: grant.session_id,
        acc: grant.account_id,
        role: grant.role,
    };
    Ok(key.sign_id_token(&claims)?)
}

/// Left half of SHA-256 of the token, base64url (both EdDSA and ES256 keys use SHA-256 here;
/// for EdDSA OpenID Connect leaves the hash open and SHA-256 is what libraries expect).
pub fn at_hash(access_token: &str) -> String {
    let digest = Sha256::digest(access_token.as_bytes());
    URL_SAFE_NO_PAD.encode(&digest[..16])
}

/// Verifies an `id_token_hint` we issued (end-session): signature and issuer; an expired
/// hint is still accepted (OpenID Connect RP-Initiated Logout §2), the audience is returned
/// for the caller to check.
pub fn verify_id_token_hint(
    keys: &KeySet,
    token: &str,
    issuer: &str,
) -> Result<IdTokenClaims, TokenError> {
    let header = decode_header(token).map_err(|_| TokenError::Malformed)?;
    let kid = header.kid.ok_or(TokenError::UnknownKey)?;
    let key = keys.get(&kid).ok_or(TokenError::UnknownKey)?;
    if header.alg != key.jwt_algorithm() {
        return Err(TokenError::Invalid("algorithm mismatch".into()));
    }
    if header
        .typ
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case("at+jwt"))
    {
        return Err(TokenError::WrongType);
    }
    let mut validation = Validation::new(key.jwt_algorithm());
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.set_issuer(&[issuer]);
    validation.set_required_spec_claims(&["iss", "sub", "aud"]);
    decode::<IdTokenClaims>(token, key.decoding_key(), &validation)
        .map(|data| data.claims)
        .map_err(|e| TokenError::Invalid(format!("{:?}", e.kind())))
}

/// Verifies signature, `typ`, `iss`, `aud` and `exp` (RFC 9068 §4).
pub fn verify_access_token(
    keys: &KeySet,
    token: &str,
    issuer: &str,
    audience: &str,
) -> Result<AccessTokenClaims, TokenError> {
    verify_access_token_for(keys, token, issuer, Some(audience))
}

/// Like [`verify_access_token`], for endpoints of this server that accept a token for any
/// audience we issue (userinfo, introspection); the caller checks what it needs.
pub fn verify_access_token_any_audience(
    keys: &KeySet,
    token: &str,
    issuer: &str,
) -> Result<AccessTokenClaims, TokenError> {
    verify_access_token_for(keys, token, issuer, None)
}

fn verify_access_token_for(
    keys: &KeySet,
    token: &str,
    issuer: &str,
    audience: Option<&str>,
) -> Result<AccessTokenClaims, TokenError> {
    let header = decode_header(token).map_err(|_| TokenError::Malformed)?;
    if !header.typ.as_deref().is_some_and(|typ| {
        typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("application/at+jwt")
    }) {
        return Err(TokenError::WrongType);
    }
    let kid = header.kid.ok_or(TokenError::UnknownKey)?;
    let key = keys.get(&kid).ok_or(TokenError::UnknownKey)?;
    // The algorithm comes from our key, never from the token header (no alg confusion).
    if header.alg != key.jwt_algorithm() {
        return Err(TokenError::Invalid("algorithm mismatch".into()));
    }
    let mut validation = Validation::new(key.jwt_algorithm());
    validation.leeway = LEEWAY_SECS;
    match audience {
        Some(audience) => validation.set_audience(&[audience]),
        None => validation.validate_aud = false,
    }
    validation.set_issuer(&[issuer]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    decode::<AccessTokenClaims>(token, key.decoding_key(), &validation)
        .map(|data| data.claims)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
            other => TokenError::Invalid(format!("{other:?}")),
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::crypto::MasterKey;
    use crate::keys::{generate_signing_key, KeyAlgorithm, LoadedKey};

    fn key_set(alg: KeyAlgorithm) -> KeySet {
        let master = MasterKey::new("0123456789abcdef0123456789abcdef").unwrap();
        let now = OffsetDateTime::now_utc();
        let activated = now - time::Duration::hours(2);
        let key = generate_signing_key(alg, &master, activated, activated).unwrap();
        KeySet::new(vec![LoadedKey::from_stored(&key, &master).unwrap()])
    }

    fn grant(ttl_secs: i64) -> TokenGrant<'static> {
        TokenGrant {
            issuer: "https://auth.example.com",
            subject: "app_1",
            audience: "https://api.example.com",
            client_id: "app_1",
            scope: "users:read".into(),
            ttl_secs,
            user_id: None,
            application_id: Some("app_1".into()),
            account_id: None,
            role: None,
            grant_id: None,
        }
    }

    #[test]
    fn minted_tokens_verify_for_both_algorithms() {
        for alg in [KeyAlgorithm::EdDsa, KeyAlgorithm::Es256] {
            let keys = key_set(alg);
            let (token, claims) =
                mint_access_token(&keys, grant(60), OffsetDateTime::now_utc()).unwrap();
            let verified = verify_access_token(
                &keys,
                &token,
                "https://auth.example.com",
                "https://api.example.com",
            )
            .unwrap();
            assert_eq!(verified, claims);
            let header: serde_json::Value = serde_json::from_slice(
                &URL_SAFE_NO_PAD
                    .decode(token.split('.').next().unwrap())
                    .unwrap(),
            )
            .unwrap();
            assert_eq!(header["typ"], "at+jwt");
            assert_eq!(header["alg"], alg.as_str());
        }
    }

    #[test]
    fn wrong_audience_issuer_expiry_and_foreign_keys_are_refused() {
        let keys = key_set(KeyAlgorithm::EdDsa);
        let now = OffsetDateTime::now_utc();
        let (token, _) = mint_access_token(&keys, grant(60), now).unwrap();
        assert!(
            verify_access_token(&keys, &token, "https://auth.example.com", "https://other")
                .is_err()
        );
        assert!(
            verify_access_token(&keys, &token, "https://evil", "https://api.example.com").is_err()
        );
        let other = key_set(KeyAlgorithm::EdDsa);
        assert_eq!(
            verify_access_token(
                &other,
                &token,
                "https://auth.example.com",
                "https://api.example.com"
            ),
            Err(TokenError::UnknownKey)
        );
        let (old, _) = mint_access_token(&keys, grant(60), now - time::Duration::hours(1)).unwrap();
        assert_eq!(
            verify_access_token(
                &keys,
                &old,
                "https://auth.example.com",
                "https://api.example.com"
            ),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn tampered_payload_is_refused() {
        let keys = key_set(KeyAlgorithm::EdDsa);
        let (token, _) = mint_access_token(&keys, grant(60), OffsetDateTime::now_utc()).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let mut claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        claims["scope"] = "users:write".into();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(claims.to_string()),
            parts[2]
        );
        assert!(matches!(
            verify_access_token(
                &keys,
                &forged,
                "https://auth.example.com",
                "https://api.example.com"
            ),
            Err(TokenError::Invalid(_))
        ));
    }
}
