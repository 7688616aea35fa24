//! Sign-in with an emailed one-time code, and the forced set-password step that follows
//! for users without a password (users imported without one).
//!
//! - `GET|POST /auth/sign-in/code`: the email address. The answer is the same whether or
//!   not an account exists: the lookup, the code and the mail happen after the response,
//!   in a background task, so neither the page nor its timing tells. Sends are throttled
//!   per client address (a refusal there says nothing about accounts) and, silently, per
//!   account (1 a minute, 5 an hour), counted in the store like failed sign-ins.
//! - `GET|POST /auth/sign-in/code/verify`: the 8-digit code (10 minutes, 5 attempts, one
//!   use; SHA-256 digest in the store, compared in constant time by
//!   `OneTimeCodeStore::redeem_one_time_code`). Every refusal has the same message.
//! - `GET|POST /auth/set-password`: for a signed-in user whose password digest is NULL.
//!   `flow::advance` sends every authorization request here until the password is set.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;
use keyward_core::id::{new_id, IdKind};
use keyward_core::model::{OneTimeCode, User};
use keyward_core::password::MIN_PASSWORD_LEN;
use keyward_core::secret::secret_digest;
use keyward_core::store::OneTimeCodeRedemption;
use keyward_core::{validate, AuditOutcome, UserStatus};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::{Duration, OffsetDateTime};

use super::flow;
use super::pages::{client_name, csrf_refused, failed, signed_in, Next};
use super::templates::page;
use super::{enc, see_other, session, ClientAddr, Csrf};
use crate::audit::{self, Actor};
use crate::error::ApiError;
use crate::extract::RequestId;
use crate::state::AppState;

/// The `purpose` of sign-in codes in the one-time code store.
pub const SIGN_IN_PURPOSE: &str = "sign_in";
pub const CODE_LENGTH: usize = 8;
pub const CODE_TTL: Duration = Duration::minutes(10);
pub const MAX_ATTEMPTS: u32 = 5;
/// At most one code a minute and five an hour per account (silently: the page is the same).
const ACCOUNT_SEND_INTERVAL: Duration = Duration::seconds(60);
const ACCOUNT_SENDS_PER_HOUR: u32 = 5;
/// Code requests per client address and hour (answered with 429: it tells nothing about
/// accounts).
const ADDRESS_SENDS_PER_HOUR: u32 = 20;
/// How long send records are kept (the purge in `spawn_key_refresh` keeps at least this).
pub const SEND_WINDOW: Duration = Duration::hours(1);

const WRONG_CODE: &str =
    "That code is not right, or it has expired or been used. Check the latest email, or send a new code.";

fn send_key_account(user_id: &str) -> String {
    format!("code-send:user:{user_id}")
}

fn send_key_address(addr: &str) -> String {
    format!("code-send:ip:{addr}")
}

/// A uniformly random code of `CODE_LENGTH` digits (leading zeros kept).
fn new_code() -> String {
    let n: u32 = rand::rngs::OsRng.gen_range(0..100_000_000);
    format!("{n:08}")
}

/// The user whose *primary email* is `email` (case-insensitive); not a username or phone.
async fn user_by_email(state: &AppState, email: &str) -> Result<Option<User>, ApiError> {
    let Ok(email) = validate::email(email) else {
        return Ok(None);
    };
    let user = state.store.find_user_by_login(&email).await?;
    Ok(user.filter(|u| {
        u.primary_email
            .as_deref()
            .is_some_and(|e| e.eq_ignore_ascii_case(&email))
    }))
}

fn location(path: &str, interaction: &str) -> String {
    if interaction.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?interaction={}", enc(interaction))
    }
}

// ---- asking for a code -------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
pub struct CodeQuery {
    #[serde(default)]
    interaction: String,
    #[serde(default)]
    email: String,
}

#[derive(Serialize)]
struct RequestPage<'a> {
    csrf_token: &'a str,
    interaction: &'a str,
    email: &'a str,
    error: Option<&'a str>,
    client_name: Option<String>,
}

async fn render_request(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    interaction: &str,
    email: &str,
    error: Option<&str>,
) -> Response {
    let csrf = Csrf::for_request(state, headers);
    let client_name = match flow::load(state, interaction).await {
        Ok(Some(p)) => client_name(state, &p).await,
        _ => None,
    };
    let mut response = page(
        status,
        "sign_in_code.html",
        RequestPage {
            csrf_token: &csrf.token,
            interaction,
            email,
            error,
            client_name,
        },
    );
    csrf.apply(&mut response);
    response
}

/// `GET /auth/sign-in/code`
pub async fn request_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<CodeQuery>,
) -> Response {
    let email = if query.email.is_empty() {
        match flow::load(&state, &query.interaction).await {
            Ok(Some(p)) => p
                .request
                .login_hint
                .filter(|h| validate::email(h).is_ok())
                .unwrap_or_default(),
            _ => String::new(),
        }
    } else {
        query.email
    };
    render_request(
        &state,
        &headers,
        StatusCode::OK,
        &query.interaction,
        &email,
        None,
    )
    .await
}

#[derive(Debug, Deserialize)]
pub struct RequestForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    interaction: String,
    #[serde(default)]
    email: String,
}

/// `POST /auth/sign-in/code`
pub async fn request_submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    request_id: RequestId,
    ClientAddr(addr): ClientAddr,
    Form(form): Form<RequestForm>,
) -> Response {
    if !Csrf::verify(&headers, &form.csrf_token) {
        return csrf_refused();
    }
    let Ok(email) = validate::email(&form.email) else {
        return render_request(
            &state,
            &headers,
            StatusCode::UNPROCESSABLE_ENTITY,
            &form.interaction,
            &form.email,
            Some("Enter the email address of your account."),
        )
        .await;
    };
    let result = async {
        let now = OffsetDateTime::now_utc();
        let address_key = send_key_address(&addr);
        let recent = state
            .store
            .count_failures(&address_key, now - SEND_WINDOW)
            .await?;
        if recent >= ADDRESS_SENDS_PER_HOUR {
            return Ok(render_request(
                &state,
                &headers,
                StatusCode::TOO_MANY_REQUESTS,
                &form.interaction,
                &email,
                Some(
                    "Too many codes were requested from your network. Wait a while and try again.",
                ),
            )
            .await);
        }
        state.store.record_failure(&address_key, now).await?;
        // Everything that depends on the account happens after the answer.
        let task_state = state.clone();
        let task_email = email.clone();
        let task_request_id = request_id.clone();
        tokio::spawn(async move {
            if let Err(e) = send_code(&task_state, &task_request_id, &task_email).await {
                tracing::error!(error = ?e, "could not issue a sign-in code");
            }
        });
        Ok::<_, ApiError>(see_other(&format!(
            "/auth/sign-in/code/verify?interaction={}&email={}",
            enc(&form.interaction),
            enc(&email)
        )))
    }
    .await;
    result.unwrap_or_else(|e| failed(e, &request_id))
}

/// Issues a code to the account with this primary email, if there is one that may have it,
/// and mails it. Runs after the response.
async fn send_code(state: &AppState, request_id: &RequestId, email: &str) -> Result<(), ApiError> {
    let Some(user) = user_by_email(state, email).await? else {
        return Ok(());
    };
    let denied = |reason: &'static str| {
        let user_id = user.id.clone();
        async move {
            audit::record(
                state,
                request_id,
                Actor {
                    kind: "anonymous",
                    id: None,
                },
                "auth.sign_in_code",
                "user",
                Some(&user_id),
                AuditOutcome::Denied,
                Some(reason),
                json!({}),
            )
            .await;
        }
    };
    if user.status != UserStatus::Active {
        denied("suspended").await;
        return Ok(());
    }
    let now = OffsetDateTime::now_utc();
    let account_key = send_key_account(&user.id);
    let last_minute = state
        .store
        .count_failures(&account_key, now - ACCOUNT_SEND_INTERVAL)
        .await?;
    let last_hour = state
        .store
        .count_failures(&account_key, now - SEND_WINDOW)
        .await?;
    if last_minute > 0 || last_hour >= ACCOUNT_SENDS_PER_HOUR {
        denied("throttled").await;
        return Ok(());
    }
    state.store.record_failure(&account_key, now).await?;
    let code = new_code();
    state
        .store
        .issue_one_time_code(&OneTimeCode {
            id: new_id(IdKind::OneTimeCode),
            user_id: user.id.clone(),
            purpose: SIGN_IN_PURPOSE.to_owned(),
            digest: secret_digest(&code),
            created_at: now,
            expires_at: now + CODE_TTL,
            attempts: 0,
            consumed_at: None,
        })
        .await?;
    // Short lines: the message stays 7-bit plain text, readable as it is in the outbox.
    let body = format!(
        "Your Keyward sign-in code is:\n\n    {code}\n\n\
         It works once, for {} minutes.\n\n\
         If you did not ask to sign in, ignore this email:\n\
         no one can sign in without the code.\n",
        CODE_TTL.whole_minutes()
    );
    let (outcome, reason) = match state
        .mailer
        .send(email, "Your Keyward sign-in code", body)
        .await
    {
        Ok(()) => (AuditOutcome::Success, None),
        Err(e) => {
            tracing::warn!(user = %user.id, error = %e, "could not send a sign-in code");
            (AuditOutcome::Failure, Some("mail_failed"))
        }
    };
    audit::record(
        state,
        request_id,
        Actor {
            kind: "anonymous",
            id: None,
        },
        "auth.sign_in_code",
        "user",
        Some(&user.id),
        outcome,
        reason,
        json!({}),
    )
    .await;
    Ok(())
}

// ---- entering the code -------------------------------------------------------------------

#[derive(Serialize)]
struct VerifyPage<'a> {
    csrf_token: &'a str,
    interaction: &'a str,
    email: &'a str,
    error: Option<&'a str>,
    client_name: Option<String>,
    ttl_minutes: i64,
    code_length: usize,
}

async fn render_verify(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    interaction: &str,
    email: &str,
    error: Option<&str>,
) -> Response {
    let csrf = Csrf::for_request(state, headers);
    let client_name = match flow::load(state, interaction).await {
        Ok(Some(p)) => client_name(state, &p).await,
        _ => None,
    };
    let mut response = page(
        status,
        "sign_in_code_verify.html",
        VerifyPage {
            csrf_token: &csrf.token,
            interaction,
            email,
            error,
            client_name,
            ttl_minutes: CODE_TTL.whole_minutes(),
            code_length: CODE_LENGTH,
        },
    );
    csrf.apply(&mut response);
    response
}

/// `GET /auth/sign-in/code/verify`
pub async fn verify_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<CodeQuery>,
) -> Response {
    if validate::email(&query.email).is_err() {
        return see_other(&location("/auth/sign-in/code", &query.interaction));
    }
    render_verify(
        &state,
        &headers,
        StatusCode::OK,
        &query.interaction,
        &query.email,
        None,
    )
    .await
}

#[derive(Debug, Deserialize)]
pub struct VerifyForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    interaction: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    code: String,
}

/// `POST /auth/sign-in/code/verify`
pub async fn verify_submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    request_id: RequestId,
    ClientAddr(addr): ClientAddr,
    Form(form): Form<VerifyForm>,
) -> Response {
    if !Csrf::verify(&headers, &form.csrf_token) {
        return csrf_refused();
    }
    let result = async {
        let settings = &state.settings;
        let now = OffsetDateTime::now_utc();
        // Wrong codes count as failed sign-ins of the address (the same throttle as
        // passwords), so guessing across many accounts is bounded too.
        let address_key = format!("ip:{addr}");
        let since = now - Duration::seconds(settings.signin_throttle_window_secs);
        if state.store.count_failures(&address_key, since).await?
            >= settings.signin_max_failures_per_address
        {
            return Ok(render_verify(
                &state,
                &headers,
                StatusCode::TOO_MANY_REQUESTS,
                &form.interaction,
                &form.email,
                Some("Too many failed attempts. Wait a few minutes and try again."),
            )
            .await);
        }
        let code: String = form.code.chars().filter(|c| !c.is_whitespace()).collect();
        let user = user_by_email(&state, &form.email).await?;
        // Any other input is simply a wrong code (and counted as one).
        let outcome = match &user {
            Some(user) => {
                state
                    .store
                    .redeem_one_time_code(
                        &user.id,
                        SIGN_IN_PURPOSE,
                        &secret_digest(&code),
                        MAX_ATTEMPTS,
                        now,
                    )
                    .await?
            }
            None => OneTimeCodeRedemption::NoCode,
        };
        let user = match (outcome, user) {
            (OneTimeCodeRedemption::Redeemed, Some(user)) => user,
            (outcome, user) => {
                let reason = match outcome {
                    OneTimeCodeRedemption::Wrong { .. } => "wrong_code",
                    OneTimeCodeRedemption::Locked => "locked",
                    OneTimeCodeRedemption::Expired => "expired",
                    _ => "no_code",
                };
                state.store.record_failure(&address_key, now).await?;
                if let Some(user) = &user {
                    state
                        .store
                        .record_failure(&format!("user:{}", user.id), now)
                        .await?;
                }
                audit::record(
                    &state,
                    &request_id,
                    Actor {
                        kind: "anonymous",
                        id: None,
                    },
                    "auth.sign_in",
                    "user",
                    None,
                    AuditOutcome::Denied,
                    Some(reason),
                    json!({ "method": "email_code", "client_address": addr }),
                )
                .await;
                return Ok(render_verify(
                    &state,
                    &headers,
                    StatusCode::UNAUTHORIZED,
                    &form.interaction,
                    &form.email,
                    Some(WRONG_CODE),
                )
                .await);
            }
        };
        if user.status != UserStatus::Active {
            return Ok(render_verify(
                &state,
                &headers,
                StatusCode::FORBIDDEN,
                &form.interaction,
                &form.email,
                Some("This account is suspended."),
            )
            .await);
        }
        state
            .store
            .clear_failures(&format!("user:{}", user.id))
            .await?;
        state.store.record_sign_in(&user.id, now).await?;
        Ok::<_, ApiError>(
            signed_in(
                &state,
                &headers,
                &request_id,
                &user,
                Next {
                    interaction: &form.interaction,
                    return_to: None,
                },
                "auth.sign_in",
                json!({ "method": "email_code" }),
            )
            .await,
        )
    }
    .await;
    result.unwrap_or_else(|e| failed(e, &request_id))
}

// ---- the forced set-password step --------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
pub struct InteractionOnly {
    #[serde(default)]
    interaction: String,
}

#[derive(Serialize)]
struct SetPasswordPage<'a> {
    csrf_token: &'a str,
    interaction: &'a str,
    user_label: &'a str,
    error: Option<&'a str>,
    min_password: usize,
    client_name: Option<String>,
}

/// Where to go once the user has a password (or already had one).
fn after_password(interaction: &str) -> Response {
    if interaction.is_empty() {
        see_other("/")
    } else {
        see_other(&format!(
            "/oauth2/authorize/resume?interaction={}",
            enc(interaction)
        ))
    }
}

/// The signed-in user of this browser, if any.
async fn session_user(state: &AppState, headers: &HeaderMap) -> Result<Option<User>, ApiError> {
    match session::current(state, headers).await? {
        Some(s) => Ok(state.store.get_user(&s.user_id).await?),
        None => Ok(None),
    }
}

async fn render_set_password(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    interaction: &str,
    user: &User,
    error: Option<&str>,
) -> Response {
    let csrf = Csrf::for_request(state, headers);
    let client_name = match flow::load(state, interaction).await {
        Ok(Some(p)) => client_name(state, &p).await,
        _ => None,
    };
    let label = user
        .primary_email
        .as_deref()
        .or(user.username.as_deref())
        .unwrap_or("");
    let mut response = page(
        status,
        "set_password.html",
        SetPasswordPage {
            csrf_token: &csrf.token,
            interaction,
            user_label: label,
            error,
            min_password: MIN_PASSWORD_LEN,
            client_name,
        },
    );
    csrf.apply(&mut response);
    response
}

/// `GET /auth/set-password`
pub async fn set_password_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    request_id: RequestId,
    Query(query): Query<InteractionOnly>,
) -> Response {
    let result = async {
        let Some(user) = session_user(&state, &headers).await? else {
            return Ok(see_other(&location("/sign-in", &query.interaction)));
        };
        if user.password_digest.is_some() {
            return Ok(after_password(&query.interaction));
        }
        Ok::<_, ApiError>(
            render_set_password(
                &state,
                &headers,
                StatusCode::OK,
                &query.interaction,
                &user,
                None,
            )
            .await,
        )
    }
    .await;
    result.unwrap_or_else(|e| failed(e, &request_id))
}

#[derive(Debug, Deserialize)]
pub struct SetPasswordForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    interaction: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_confirm: String,
}

/// `POST /auth/set-password`
pub async fn set_password_submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    request_id: RequestId,
    Form(form): Form<SetPasswordForm>,
) -> Response {
    if !Csrf::verify(&headers, &form.csrf_token) {
        return csrf_refused();
    }
    let result = async {
        let Some(user) = session_user(&state, &headers).await? else {
            return Ok(see_other(&location("/sign-in", &form.interaction)));
        };
        // Only the forced step: changing an existing password is not done here.
        if user.password_digest.is_some() {
            return Ok(after_password(&form.interaction));
        }
        let problem = if form.password.chars().count() < MIN_PASSWORD_LEN {
            Some(format!(
                "Choose a password of at least {MIN_PASSWORD_LEN} characters."
            ))
        } else if form.password != form.password_confirm {
            Some("The two passwords differ.".to_owned())
        } else {
            None
        };
        if let Some(problem) = problem {
            return Ok(render_set_password(
                &state,
                &headers,
                StatusCode::UNPROCESSABLE_ENTITY,
                &form.interaction,
                &user,
                Some(&problem),
            )
            .await);
        }
        let digest = state.hash_password(form.password.clone()).await?;
        state
            .store
            .set_user_password(&user.id, &digest, "argon2id", OffsetDateTime::now_utc())
            .await?;
        audit::record(
            &state,
            &request_id,
            Actor {
                kind: "user",
                id: Some(&user.id),
            },
            "user.password_set",
            "user",
            Some(&user.id),
            AuditOutcome::Success,
            None,
            json!({ "via": "email_code_sign_in" }),
        )
        .await;
        Ok::<_, ApiError>(after_password(&form.interaction))
    }
    .await;
    result.unwrap_or_else(|e| failed(e, &request_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_eight_digits() {
        for _ in 0..200 {
            let code = new_code();
            assert_eq!(code.len(), CODE_LENGTH);
            assert!(code.bytes().all(|b| b.is_ascii_digit()));
        }
    }
}
