//! Browser sessions (stored in the database, so every node sees them) and password
//! sign-in with throttling and a decoy hash.

use axum::http::{HeaderMap, HeaderValue};
use cookie::SameSite;
use keyward_core::id::{new_id, IdKind};
use keyward_core::model::{Session, User};
use keyward_core::secret::{random_token, secret_digest};
use keyward_core::UserStatus;
use time::{Duration, OffsetDateTime};

use super::{cookie_header, read_cookie, SESSION_COOKIE};
use crate::error::ApiError;
use crate::state::AppState;

/// Sessions are touched at most this often, so browsing does not write on every page.
const TOUCH_EVERY: Duration = Duration::minutes(1);

/// The live session of this browser, if any (absolute and idle limits checked).
pub async fn current(state: &AppState, headers: &HeaderMap) -> Result<Option<Session>, ApiError> {
    let Some(handle) = read_cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let now = OffsetDateTime::now_utc();
    let Some(session) = state
        .store
        .find_session(&secret_digest(&handle), now)
        .await?
    else {
        return Ok(None);
    };
    let idle = Duration::seconds(state.settings.session_idle_secs);
    if session.last_seen_at + idle <= now {
        state.store.delete_session(&session.id).await?;
        return Ok(None);
    }
    if now - session.last_seen_at >= TOUCH_EVERY {
        state.store.touch_session(&session.id, now).await?;
    }
    Ok(Some(session))
}

/// Starts a new session for `user_id` and returns it with its cookie. Any previous session
/// of this browser is ended first: a fresh handle at every sign-in prevents session
/// fixation.
pub async fn start(
    state: &AppState,
    headers: &HeaderMap,
    user_id: &str,
) -> Result<(Session, HeaderValue), ApiError> {
    if let Some(old) = read_cookie(headers, SESSION_COOKIE) {
        let now = OffsetDateTime::now_utc();
        if let Some(old) = state.store.find_session(&secret_digest(&old), now).await? {
            state.store.delete_session(&old.id).await?;
        }
    }
    let handle = random_token(32);
    let now = OffsetDateTime::now_utc();
    let session = Session {
        id: new_id(IdKind::Session),
        handle_digest: secret_digest(&handle),
        user_id: user_id.to_owned(),
        auth_time: now,
        created_at: now,
        last_seen_at: now,
        expires_at: now + Duration::seconds(state.settings.session_ttl_secs),
    };
    state.store.create_session(&session).await?;
    let cookie = cookie_header(
        state,
        SESSION_COOKIE,
        &handle,
        SameSite::Lax,
        Some(state.settings.session_ttl_secs),
    );
    Ok((session, cookie))
}

/// Ends this browser's session (if any) and returns the cookie that clears it.
pub async fn end(state: &AppState, headers: &HeaderMap) -> Result<HeaderValue, ApiError> {
    if let Some(session) = current(state, headers).await? {
        state.store.delete_session(&session.id).await?;
    }
    Ok(cookie_header(
        state,
        SESSION_COOKIE,
        "",
        SameSite::Lax,
        Some(0),
    ))
}

/// Outcome of checking a login and password.
pub enum SignIn {
    Success(Box<User>),
    /// Wrong login or password: the same answer whether or not the account exists.
    Invalid,
    /// Too many recent failures for this account or address; nothing was checked.
    Throttled,
    /// The password was right but the account is suspended.
    Suspended,
}

/// The store lookup key for a login: phones in E.164, everything else as typed (the store
/// compares usernames and emails case-insensitively).
fn normalize_login(login: &str) -> String {
    let login = login.trim();
    let looks_like_phone = login.starts_with('+')
        || (login
            .chars()
            .all(|c| c.is_ascii_digit() || " -().".contains(c))
            && login.chars().any(|c| c.is_ascii_digit()));
    if looks_like_phone {
        if let Ok(phone) = keyward_core::validate::phone(login) {
            return phone;
        }
    }
    login.to_owned()
}

/// A correct password on a legacy digest, or on Argon2id at other parameters, is re-hashed
/// at the configured Argon2id in the same request. The write only replaces the digest the
/// sign-in verified, so a password change made meanwhile wins.
async fn upgrade_password(
    state: &AppState,
    user: &mut User,
    old: &str,
    password: &str,
    now: OffsetDateTime,
) -> Result<(), ApiError> {
    let from = user
        .password_algorithm
        .clone()
        .unwrap_or_else(|| "argon2id".into());
    let new = state.hash_password(password.to_owned()).await?;
    if state
        .store
        .upgrade_user_password(&user.id, old, &new, "argon2id", now)
        .await?
    {
        tracing::info!(user = %user.id, from = %from, "password digest upgraded to Argon2id");
        crate::audit::record(
            state,
            &crate::extract::RequestId(None),
            crate::audit::Actor {
                kind: "user",
                id: Some(&user.id),
            },
            "user.password_upgrade",
            "user",
            Some(&user.id),
            keyward_core::AuditOutcome::Success,
            None,
            serde_json::json!({ "from": from, "to": "argon2id" }),
        )
        .await;
        user.password_digest = Some(new);
        user.password_algorithm = Some("argon2id".into());
    }
    Ok(())
}

/// Checks a password sign-in. Unknown users are verified against a decoy hash with the
/// same cost, so time and answer do not reveal whether an account exists; failures count
/// per account (or per login string when there is no account, which behaves the same) and
/// per client address, in the database.
pub async fn verify_credentials(
    state: &AppState,
    login: &str,
    password: &str,
    client_addr: &str,
) -> Result<SignIn, ApiError> {
    let settings = &state.settings;
    let now = OffsetDateTime::now_utc();
    let since = now - Duration::seconds(settings.signin_throttle_window_secs);
    let login = normalize_login(login);
    let user = if login.is_empty() {
        None
    } else {
        state.store.find_user_by_login(&login).await?
    };
    let account_key = match &user {
        Some(user) => format!("user:{}", user.id),
        None => format!("login:{}", login.to_lowercase()),
    };
    let address_key = format!("ip:{client_addr}");
    let account_failures = state.store.count_failures(&account_key, since).await?;
    let address_failures = state.store.count_failures(&address_key, since).await?;
    if account_failures >= settings.signin_max_failures_per_account
        || address_failures >= settings.signin_max_failures_per_address
    {
        return Ok(SignIn::Throttled);
    }
    let stored = user.as_ref().and_then(|u| {
        let algorithm = u.password_algorithm.as_deref().unwrap_or("argon2id");
        u.password_digest
            .clone()
            .map(|d| (d, algorithm == "argon2id"))
    });
    // (matched, the digest to re-hash when it matched)
    let (matches, stale) = match stored {
        Some((digest, true)) => {
            let ok = state
                .verify_password(password.to_owned(), digest.clone())
                .await?;
            let current = keyward_core::password::argon2id_params(&digest) == Some(state.argon2);
            (ok, (ok && !current).then_some(digest))
        }
        Some((digest, false)) => {
            let ok = state
                .verify_legacy_password(password.to_owned(), digest.clone())
                .await?;
            (ok, ok.then_some(digest))
        }
        None => {
            // Unknown users (and users without a password) cost a decoy verification.
            state
                .verify_password(password.to_owned(), state.decoy_hash.to_string())
                .await?;
            (false, None)
        }
    };
    match user {
        Some(mut user) if matches => {
            if account_failures > 0 {
                state.store.clear_failures(&account_key).await?;
            }
            if user.status != UserStatus::Active {
                return Ok(SignIn::Suspended);
            }
            if let Some(old) = stale {
                upgrade_password(state, &mut user, &old, password, now).await?;
            }
            state.store.record_sign_in(&user.id, now).await?;
            Ok(SignIn::Success(Box::new(user)))
        }
        _ => {
            state.store.record_failure(&account_key, now).await?;
            state.store.record_failure(&address_key, now).await?;
            Ok(SignIn::Invalid)
        }
    }
}
