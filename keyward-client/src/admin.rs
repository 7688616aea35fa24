//! The typed management API client (`/api/...`).

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use keyward_proto::{
    Account, AddMember, ApiResource, Application, ApplicationWithSecret, AuditEvent, AuditOutcome,
    CreateAccount, CreateApiResource, CreateApplication, CreateChildAccount, CreateUser,
    CreatedSecret, Membership, Page, Role, RotateSecret, UpdateAccount, UpdateApiResource,
    UpdateApplication, UpdateMember, UpdateUser, User, UserStatus,
};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::oauth::OAuthClient;
use crate::transport::{decode, execute, json_body, without_nulls, Auth};
use crate::urls::build_url;
use crate::Error;

/// `cursor`/`limit` of the list endpoints without other filters.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ListQuery {
    /// The `next_cursor` of the previous page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Page size, 1–100 (server default 20).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// Filters of `GET /api/users`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UserQuery {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub application_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<UserStatus>,
    /// Free-text search.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// Filters of `GET /api/accounts`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AccountQuery {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_account_id: Option<String>,
    /// Accounts this user is a member of.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// Filters of `GET /api/audit-logs`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditQuery {
    /// For example `user.delete`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<AuditOutcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

#[derive(Serialize)]
struct ForceQuery {
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    force: bool,
}

#[derive(Serialize)]
struct CascadeQuery {
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    cascade: bool,
}

/// Typed client of the Keyward management API.
pub struct AdminClient {
    http: reqwest::Client,
    base_url: String,
    auth: Auth,
}

impl fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = self.auth.describe();
        f.debug_struct("AdminClient")
            .field("base_url", &self.base_url)
            .field("auth", &auth)
            .finish_non_exhaustive()
    }
}

impl AdminClient {
    /// `base_url` is the server root (the management API lives under `{base_url}/api`).
    pub fn new(base_url: impl Into<String>, bearer_token: impl Into<String>) -> Self {
        Self {
            http: reqwest::Client::new(),
            base_url: base_url.into(),
            auth: Auth::Static(bearer_token.into()),
        }
    }

    /// Obtains (and caches) tokens for `audience` from `oauth` as needed. A request refused
    /// with 401 is retried once with a fresh token.
    pub fn with_oauth(
        base_url: impl Into<String>,
        oauth: Arc<OAuthClient>,
        audience: impl Into<String>,
    ) -> Self {
        Self {
            http: oauth.http().clone(),
            base_url: base_url.into(),
            auth: Auth::OAuth {
                client: oauth,
                audience: audience.into(),
                scope: None,
            },
        }
    }

    /// Requests only these scopes (space-separated) when tokens come from an OAuth client.
    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        if let Auth::OAuth { scope: s, .. } = &mut self.auth {
            *s = Some(scope.into());
        }
        self
    }

    /// Uses this HTTP client instead of the default one.
    pub fn with_http(mut self, http: reqwest::Client) -> Self {
        self.http = http;
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    // -----------------------------------------------------------------------------------
    // Applications
    // -----------------------------------------------------------------------------------

    /// `POST /api/applications`. The client secret is only returned here.
    pub async fn create_application(
        &self,
        body: &CreateApplication,
    ) -> Result<ApplicationWithSecret, Error> {
        let url = self.url(&["api", "applications"])?;
        self.send(Method::POST, url, Some(json_body(body)?)).await
    }

    /// `GET /api/applications`.
    pub async fn list_applications(&self, query: &ListQuery) -> Result<Page<Application>, Error> {
        let url = self.url_with(&["api", "applications"], query)?;
        self.send(Method::GET, url, None).await
    }

    /// `GET /api/applications/{id}`.
    pub async fn get_application(&self, id: &str) -> Result<Application, Error> {
        let url = self.url(&["api", "applications", id])?;
        self.send(Method::GET, url, None).await
    }

    /// `PATCH /api/applications/{id}`.
    pub async fn update_application(
        &self,
        id: &str,
        body: &UpdateApplication,
    ) -> Result<Application, Error> {
        let url = self.url(&["api", "applications", id])?;
        let body = patch_body(
            body,
            &[
                (
                    "description",
                    body.description.as_ref().is_some_and(Option::is_none),
                ),
                (
                    "access_token_ttl_secs",
                    body.access_token_ttl_secs
                        .as_ref()
                        .is_some_and(Option::is_none),
                ),
            ],
        )?;
        self.send(Method::PATCH, url, Some(body)).await
    }

    /// `DELETE /api/applications/{id}`.
    pub async fn delete_application(&self, id: &str) -> Result<(), Error> {
        let url = self.url(&["api", "applications", id])?;
        self.send_no_content(Method::DELETE, url, None).await
    }

    /// `POST /api/applications/{id}/secrets`: a new secret, shown only in this response.
    pub async fn rotate_application_secret(
        &self,
        id: &str,
        body: &RotateSecret,
    ) -> Result<CreatedSecret, Error> {
        let url = self.url(&["api", "applications", id, "secrets"])?;
        self.send(Method::POST, url, Some(json_body(body)?)).await
    }

    /// `DELETE /api/applications/{id}/secrets/{secret_id}`.
    pub async fn delete_application_secret(&self, id: &str, secret_id: &str) -> Result<(), Error> {
        let url = self.url(&["api", "applications", id, "secrets", secret_id])?;
        self.send_no_content(Method::DELETE, url, None).await
    }

    // -----------------------------------------------------------------------------------
    // Users
    // -----------------------------------------------------------------------------------

    /// `POST /api/applications/{application_id}/users`: a user registered through that
    /// application.
    pub async fn create_application_user(
        &self,
        application_id: &str,
        body: &CreateUser,
    ) -> Result<User, Error> {
        let url = self.url(&["api", "applications", application_id, "users"])?;
        self.send(Method::POST, url, Some(json_body(body)?)).await
    }

    /// `POST /api/users`.
    pub async fn create_user(&self, body: &CreateUser) -> Result<User, Error> {
        let url = self.url(&["api", "users"])?;
        self.send(Method::POST, url, Some(json_body(body)?)).await
    }

    /// `GET /api/users` with filters: one page.
    pub async fn list_users(&self, query: &UserQuery) -> Result<Page<User>, Error> {
        let url = self.url_with(&["api", "users"], query)?;
        self.send(Method::GET, url, None).await
    }

    /// Every user matching `query`, following `next_cursor` from `query.cursor` on.
    pub async fn list_all_users(&self, query: &UserQuery) -> Result<Vec<User>, Error> {
        collect_pages(query.cursor.clone(), |cursor| {
            let page_query = UserQuery {
                cursor,
                ..query.clone()
            };
            async move { self.list_users(&page_query).await }
        })
        .await
    }

    /// `GET /api/users/{id}`.
    pub async fn get_user(&self, id: &str) -> Result<User, Error> {
        let url = self.url(&["api", "users", id])?;
        self.send(Method::GET, url, None).await
    }

    /// `PATCH /api/users/{id}`. `Some(None)` clears a field; `None` leaves it unchanged.
    pub async fn update_user(&self, id: &str, body: &UpdateUser) -> Result<User, Error> {
        let url = self.url(&["api", "users", id])?;
        let cleared = |field: &Option<Option<String>>| field.as_ref().is_some_and(Option::is_none);
        let body = patch_body(
            body,
            &[
                ("username", cleared(&body.username)),
                ("primary_email", cleared(&body.primary_email)),
                ("primary_phone", cleared(&body.primary_phone)),
                ("name", cleared(&body.name)),
                ("avatar", cleared(&body.avatar)),
                ("external_id", cleared(&body.external_id)),
            ],
        )?;
        self.send(Method::PATCH, url, Some(body)).await
    }

    /// `DELETE /api/users/{id}`; `force` deletes a user who is the last owner of an account.
    pub async fn delete_user(&self, id: &str, force: bool) -> Result<(), Error> {
        let url = self.url_with(&["api", "users", id], &ForceQuery { force })?;
        self.send_no_content(Method::DELETE, url, None).await
    }

    // -----------------------------------------------------------------------------------
    // Accounts
    // -----------------------------------------------------------------------------------

    /// `POST /api/accounts`.
    pub async fn create_account(&self, body: &CreateAccount) -> Result<Account, Error> {
        let url = self.url(&["api", "accounts"])?;
        self.send(Method::POST, url, Some(json_body(body)?)).await
    }

    /// `POST /api/accounts/{parent_id}/accounts`.
    pub async fn create_child_account(
        &self,
        parent_id: &str,
        body: &CreateChildAccount,
    ) -> Result<Account, Error> {
        let url = self.url(&["api", "accounts", parent_id, "accounts"])?;
        self.send(Method::POST, url, Some(json_body(body)?)).await
    }

    /// `GET /api/accounts` with filters: one page.
    pub async fn list_accounts(&self, query: &AccountQuery) -> Result<Page<Account>, Error> {
        let url = self.url_with(&["api", "accounts"], query)?;
        self.send(Method::GET, url, None).await
    }

    /// Every account matching `query`, following `next_cursor`.
    pub async fn list_all_accounts(&self, query: &AccountQuery) -> Result<Vec<Account>, Error> {
        collect_pages(query.cursor.clone(), |cursor| {
            let page_query = AccountQuery {
                cursor,
                ..query.clone()
            };
            async move { self.list_accounts(&page_query).await }
        })
        .await
    }

    /// `GET /api/accounts/{id}`.
    pub async fn get_account(&self, id: &str) -> Result<Account, Error> {
        let url = self.url(&["api", "accounts", id])?;
        self.send(Method::GET, url, None).await
    }

    /// `PATCH /api/accounts/{id}`.
    pub async fn update_account(&self, id: &str, body: &UpdateAccount) -> Result<Account, Error> {
        let url = self.url(&["api", "accounts", id])?;
        self.send(Method::PATCH, url, Some(json_body(body)?)).await
    }

    /// `DELETE /api/accounts/{id}`; without `cascade` an account with children is refused
    /// (409 `account_has_children`).
    pub async fn delete_account(&self, id: &str, cascade: bool) -> Result<(), Error> {
        let url = self.url_with(&["api", "accounts", id], &CascadeQuery { cascade })?;
        self.send_no_content(Method::DELETE, url, None).await
    }

    // -----------------------------------------------------------------------------------
    // Members
    // -----------------------------------------------------------------------------------

    /// `GET /api/accounts/{account_id}/members`: one page.
    pub async fn list_account_members(
        &self,
        account_id: &str,
        query: &ListQuery,
    ) -> Result<Page<Membership>, Error> {
        let url = self.url_with(&["api", "accounts", account_id, "members"], query)?;
        self.send(Method::GET, url, None).await
    }

    /// `POST /api/accounts/{account_id}/members`.
    pub async fn add_account_member(
        &self,
        account_id: &str,
        user_id: &str,
        role: Role,
    ) -> Result<Membership, Error> {
        let url = self.url(&["api", "accounts", account_id, "members"])?;
        let body = AddMember {
            user_id: user_id.to_owned(),
            role,
        };
        self.send(Method::POST, url, Some(json_body(&body)?)).await
    }

    /// `PATCH /api/accounts/{account_id}/members/{member_id}`; `member_id` is the
    /// membership id (`mem_…`) or the user id (`usr_…`).
    pub async fn update_account_member(
        &self,
        account_id: &str,
        member_id: &str,
        role: Role,
    ) -> Result<Membership, Error> {
        let url = self.url(&["api", "accounts", account_id, "members", member_id])?;
        self.send(Method::PATCH, url, Some(json_body(&UpdateMember { role })?))
            .await
    }

    /// `DELETE /api/accounts/{account_id}/members/{member_id}`.
    pub async fn remove_account_member(
        &self,
        account_id: &str,
        member_id: &str,
    ) -> Result<(), Error> {
        let url = self.url(&["api", "accounts", account_id, "members", member_id])?;
        self.send_no_content(Method::DELETE, url, None).await
    }

    // -----------------------------------------------------------------------------------
    // API resources
    // -----------------------------------------------------------------------------------

    /// `POST /api/resources`.
    pub async fn create_resource(&self, body: &CreateApiResource) -> Result<ApiResource, Error> {
        let url = self.url(&["api", "resources"])?;
        self.send(Method::POST, url, Some(json_body(body)?)).await
    }

    /// `GET /api/resources`.
    pub async fn list_resources(&self, query: &ListQuery) -> Result<Page<ApiResource>, Error> {
        let url = self.url_with(&["api", "resources"], query)?;
        self.send(Method::GET, url, None).await
    }

    /// `GET /api/resources/{id}`.
    pub async fn get_resource(&self, id: &str) -> Result<ApiResource, Error> {
        let url = self.url(&["api", "resources", id])?;
        self.send(Method::GET, url, None).await
    }

    /// `PATCH /api/resources/{id}`.
    pub async fn update_resource(
        &self,
        id: &str,
        body: &UpdateApiResource,
    ) -> Result<ApiResource, Error> {
        let url = self.url(&["api", "resources", id])?;
        self.send(Method::PATCH, url, Some(json_body(body)?)).await
    }

    /// `DELETE /api/resources/{id}`.
    pub async fn delete_resource(&self, id: &str) -> Result<(), Error> {
        let url = self.url(&["api", "resources", id])?;
        self.send_no_content(Method::DELETE, url, None).await
    }

    // -----------------------------------------------------------------------------------
    // Audit log
    // -----------------------------------------------------------------------------------

    /// `GET /api/audit-logs` with filters: one page, newest first.
    pub async fn list_audit_logs(&self, query: &AuditQuery) -> Result<Page<AuditEvent>, Error> {
        let url = self.url_with(&["api", "audit-logs"], query)?;
        self.send(Method::GET, url, None).await
    }

    // -----------------------------------------------------------------------------------
    // Plumbing
    // -----------------------------------------------------------------------------------

    fn url(&self, segments: &[&str]) -> Result<String, Error> {
        build_url::<()>(&self.base_url, segments, None)
    }

    fn url_with<Q: Serialize>(&self, segments: &[&str], query: &Q) -> Result<String, Error> {
        build_url(&self.base_url, segments, Some(query))
    }

    async fn execute(
        &self,
        method: Method,
        url: String,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Vec<u8>), Error> {
        execute(&self.http, &self.auth, method, &url, body).await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        url: String,
        body: Option<Vec<u8>>,
    ) -> Result<T, Error> {
        let (status, bytes) = self.execute(method, url, body).await?;
        decode(status, &bytes)
    }

    async fn send_no_content(
        &self,
        method: Method,
        url: String,
        body: Option<Vec<u8>>,
    ) -> Result<(), Error> {
        self.execute(method, url, body).await.map(|_| ())
    }
}

/// A PATCH body: absent fields are left out and fields explicitly cleared (`Some(None)`)
/// are sent as `null`. The proto types serialize both as `null`, which the server would
/// read as "clear" for every untouched nullable field.
fn patch_body<T: Serialize>(body: &T, cleared: &[(&str, bool)]) -> Result<Vec<u8>, Error> {
    let mut value = without_nulls(body)?;
    if let Value::Object(map) = &mut value {
        for (field, is_cleared) in cleared {
            if *is_cleared {
                map.insert((*field).to_owned(), Value::Null);
            }
        }
    }
    serde_json::to_vec(&value).map_err(|e| Error::InvalidArgument(e.to_string()))
}

/// Follows `next_cursor` until the last page. Stops with an error if the server repeats a
/// cursor, instead of looping forever.
async fn collect_pages<T, F, Fut>(start: Option<String>, mut fetch: F) -> Result<Vec<T>, Error>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<Page<T>, Error>>,
{
    let mut items = Vec::new();
    let mut cursor = start;
    loop {
        let page = fetch(cursor.clone()).await?;
        items.extend(page.data);
        match page.pagination.next_cursor {
            Some(next) if page.pagination.has_more => {
                if cursor.as_deref() == Some(next.as_str()) {
                    return Err(Error::Unexpected {
                        status: 200,
                        body: format!("the server returned the same cursor twice ({next})"),
                    });
                }
                cursor = Some(next);
            }
            _ => return Ok(items),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use keyward_proto::Pagination;
    use serde_json::Map;

    fn as_object(bytes: &[u8]) -> Map<String, Value> {
        match serde_json::from_slice(bytes) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        }
    }

    fn client() -> AdminClient {
        AdminClient::new("http://127.0.0.1:8080/", "tok")
    }

    #[test]
    fn urls_of_the_seed_calls() {
        let c = client();
        assert_eq!(
            c.url(&["api", "applications", "app_1", "users"]).unwrap(),
            "http://127.0.0.1:8080/api/applications/app_1/users"
        );
        assert_eq!(
            c.url(&["api", "accounts", "acc 1", "members", "usr/2"])
                .unwrap(),
            "http://127.0.0.1:8080/api/accounts/acc%201/members/usr%2F2"
        );
        assert_eq!(
            c.url_with(
                &["api", "accounts", "acc_1"],
                &CascadeQuery { cascade: true }
            )
            .unwrap(),
            "http://127.0.0.1:8080/api/accounts/acc_1?cascade=true"
        );
        assert_eq!(
            c.url_with(&["api", "users", "usr_1"], &ForceQuery { force: false })
                .unwrap(),
            "http://127.0.0.1:8080/api/users/usr_1"
        );
        let audit = AuditQuery {
            action: Some("user.delete".into()),
            target_id: Some("usr_1".into()),
            outcome: Some(AuditOutcome::Success),
            ..Default::default()
        };
        assert_eq!(
            c.url_with(&["api", "audit-logs"], &audit).unwrap(),
            "http://127.0.0.1:8080/api/audit-logs?action=user.delete&target_id=usr_1&outcome=success"
        );
        let accounts = AccountQuery {
            parent_account_id: Some("acc_1".into()),
            limit: Some(100),
            ..Default::default()
        };
        assert_eq!(
            c.url_with(&["api", "accounts"], &accounts).unwrap(),
            "http://127.0.0.1:8080/api/accounts?parent_account_id=acc_1&limit=100"
        );
    }

    #[test]
    fn create_bodies_leave_out_absent_fields() {
        let body = CreateUser {
            status: Some(UserStatus::Active),
            ..Default::default()
        };
        assert_eq!(json_body(&body).unwrap(), br#"{"status":"active"}"#);
        let member = AddMember {
            user_id: "usr_1".into(),
            role: Role::Viewer,
        };
        assert_eq!(
            as_object(&json_body(&member).unwrap()),
            as_object(br#"{"user_id":"usr_1","role":"viewer"}"#)
        );
    }

    #[test]
    fn patch_bodies_distinguish_unchanged_from_cleared() {
        let body = UpdateUser {
            name: Some(Some("Ada".into())),
            primary_phone: Some(None),
            ..Default::default()
        };
        let cleared = |field: &Option<Option<String>>| field.as_ref().is_some_and(Option::is_none);
        let bytes = patch_body(
            &body,
            &[
                ("name", cleared(&body.name)),
                ("primary_phone", cleared(&body.primary_phone)),
                ("username", cleared(&body.username)),
            ],
        )
        .unwrap();
        assert_eq!(
            as_object(&bytes),
            as_object(br#"{"name":"Ada","primary_phone":null}"#)
        );
        let rename = UpdateAccount {
            name: Some("ops-provisioned-renamed".into()),
            custom_data: None,
        };
        assert_eq!(
            json_body(&rename).unwrap(),
            br#"{"name":"ops-provisioned-renamed"}"#
        );
    }

    fn page(items: &[u32], next: Option<&str>) -> Page<u32> {
        Page {
            data: items.to_vec(),
            pagination: Pagination {
                next_cursor: next.map(str::to_owned),
                has_more: next.is_some(),
            },
        }
    }

    #[tokio::test]
    async fn pages_are_followed_to_the_end() {
        let seen = std::sync::Mutex::new(Vec::new());
        let all = collect_pages(None, |cursor| {
            seen.lock().unwrap().push(cursor.clone());
            async move {
                Ok(match cursor.as_deref() {
                    None => page(&[1, 2], Some("c1")),
                    Some("c1") => page(&[3, 4], Some("c2")),
                    _ => page(&[5], None),
                })
            }
        })
        .await
        .unwrap();
        assert_eq!(all, vec![1, 2, 3, 4, 5]);
        assert_eq!(
            *seen.lock().unwrap(),
            vec![None, Some("c1".to_owned()), Some("c2".to_owned())]
        );
    }

    #[tokio::test]
    async fn a_repeated_cursor_is_an_error() {
        let result = collect_pages(None, |_| async { Ok(page(&[1], Some("same"))) }).await;
        // First page: cursor None → "same"; second: "same" → "same" again.
        assert!(matches!(result, Err(Error::Unexpected { .. })));
    }
}
