//! Access tokens: JWTs per RFC 9068 (`typ: at+jwt`).

use jsonwebtoken::{decode, decode_header, Validation};
use keyward_proto::AccessTokenClaims;
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
    };
    let token = key.sign_compact(&claims)?;
    Ok((token, claims))
}

/// Verifies signature, `typ`, `iss`, `aud` and `exp` (RFC 9068 §4).
pub fn verify_access_token(
    keys: &KeySet,
    token: &str,
    issuer: &str,
    audience: &str,
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
    validation.set_audience(&[audience]);
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
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

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
