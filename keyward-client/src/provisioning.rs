//! The typed provisioning API client (`/v1/...`): regions, projects, databases,
//! connections, claim lookup and transfer.
//!
//! Partner applications call it with an integration token: a client-credentials token for
//! the provisioning audience (`{issuer}/v1` by default) with the scopes
//! [`PROVISIONING_SCOPE`].

use std::fmt;
use std::sync::Arc;

use keyward_proto::provisioning::{
    ClaimInfo, ClaimLookup, Connection, CreateConnection, CreateDatabase, CreateProject,
    CursorPagination, Data, DataPage, Database, Project, Region, TransferProject, UpdateProject,
};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::admin::ListQuery;
use crate::oauth::OAuthClient;
use crate::transport::{decode, execute, json_body, Auth};
use crate::urls::build_url;
use crate::Error;

/// The scopes a partner's integration token asks for.
pub const PROVISIONING_SCOPE: &str = "projects:read projects:write";

/// The provisioning API's audience for the issuer `issuer`: `{issuer}/v1`.
pub fn provisioning_audience(issuer: &str) -> String {
    format!("{}/v1", issuer.trim_end_matches('/'))
}

/// A list answer: `{"data": [...]}`, with `pagination` when the endpoint pages.
#[derive(Deserialize)]
struct ListBody<T> {
    data: Vec<T>,
    #[serde(default)]
    pagination: Option<CursorPagination>,
}

impl<T> From<ListBody<T>> for DataPage<T> {
    fn from(body: ListBody<T>) -> Self {
        Self {
            data: body.data,
            pagination: body.pagination.unwrap_or(CursorPagination {
                next_cursor: None,
                has_more: false,
            }),
        }
    }
}

/// Typed client of the Keyward provisioning API.
pub struct ProvisioningClient {
    http: reqwest::Client,
    base_url: String,
    auth: Auth,
}

impl fmt::Debug for ProvisioningClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProvisioningClient")
            .field("base_url", &self.base_url)
            .field("auth", &self.auth.describe())
            .finish_non_exhaustive()
    }
}

impl ProvisioningClient {
    /// `base_url` is the server root, the issuer (the API lives under `{base_url}/v1`).
    pub fn new(base_url: impl Into<String>, bearer_token: impl Into<String>) -> Self {
        Self {
            http: reqwest::Client::new(),
            base_url: base_url.into(),
            auth: Auth::Static(bearer_token.into()),
        }
    }

    /// Obtains (and caches) integration tokens for `audience` with the scopes
    /// [`PROVISIONING_SCOPE`] from `oauth` as needed. A request refused with 401 is retried
    /// once with a fresh token.
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
                scope: Some(PROVISIONING_SCOPE.to_owned()),
            },
        }
    }

    /// Requests these scopes (space-separated) instead of [`PROVISIONING_SCOPE`] when
    /// tokens come from an OAuth client.
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

    /// `GET /v1/regions`.
    pub async fn regions(&self) -> Result<Vec<Region>, Error> {
        let url = self.url(&["v1", "regions"])?;
        let body: ListBody<Region> = self.send(Method::GET, url, None).await?;
        Ok(body.data)
    }

    /// `POST /v1/projects`: a project with its default database; the answer carries the
    /// database's connection string and the claim URL, shown only here.
    pub async fn create_project(&self, body: &CreateProject) -> Result<Project, Error> {
        let url = self.url(&["v1", "projects"])?;
        self.data(Method::POST, url, Some(json_body(body)?)).await
    }

    /// `GET /v1/projects`.
    pub async fn list_projects(&self, query: &ListQuery) -> Result<DataPage<Project>, Error> {
        let url = build_url(&self.base_url, &["v1", "projects"], Some(query))?;
        self.list(url).await
    }

    /// `GET /v1/projects/{id}`.
    pub async fn get_project(&self, id: &str) -> Result<Project, Error> {
        let url = self.url(&["v1", "projects", id])?;
        self.data(Method::GET, url, None).await
    }

    /// `PATCH /v1/projects/{id}`.
    pub async fn update_project(&self, id: &str, body: &UpdateProject) -> Result<Project, Error> {
        let url = self.url(&["v1", "projects", id])?;
        self.data(Method::PATCH, url, Some(json_body(body)?)).await
    }

    /// `DELETE /v1/projects/{id}`: the project and all its databases.
    pub async fn delete_project(&self, id: &str) -> Result<(), Error> {
        let url = self.url(&["v1", "projects", id])?;
        self.no_content(Method::DELETE, url).await
    }

    /// `GET /v1/projects/{id}/databases`.
    pub async fn list_databases(&self, project_id: &str) -> Result<DataPage<Database>, Error> {
        let url = self.url(&["v1", "projects", project_id, "databases"])?;
        self.list(url).await
    }

    /// `POST /v1/projects/{id}/databases`.
    pub async fn create_database(
        &self,
        project_id: &str,
        body: &CreateDatabase,
    ) -> Result<Database, Error> {
        let url = self.url(&["v1", "projects", project_id, "databases"])?;
        self.data(Method::POST, url, Some(json_body(body)?)).await
    }

    /// `GET /v1/databases/{id}`.
    pub async fn get_database(&self, id: &str) -> Result<Database, Error> {
        let url = self.url(&["v1", "databases", id])?;
        self.data(Method::GET, url, None).await
    }

    /// `DELETE /v1/databases/{id}`.
    pub async fn delete_database(&self, id: &str) -> Result<(), Error> {
        let url = self.url(&["v1", "databases", id])?;
        self.no_content(Method::DELETE, url).await
    }

    /// `POST /v1/databases/{id}/connections`: new credentials, with the password and the
    /// connection string shown only here.
    pub async fn create_connection(
        &self,
        database_id: &str,
        body: &CreateConnection,
    ) -> Result<Connection, Error> {
        let url = self.url(&["v1", "databases", database_id, "connections"])?;
        self.data(Method::POST, url, Some(json_body(body)?)).await
    }

    /// `POST /v1/connections/{id}/rotate`: a new password for the connection.
    pub async fn rotate_connection(&self, id: &str) -> Result<Connection, Error> {
        let url = self.url(&["v1", "connections", id, "rotate"])?;
        self.data(Method::POST, url, None).await
    }

    /// `DELETE /v1/connections/{id}`.
    pub async fn delete_connection(&self, id: &str) -> Result<(), Error> {
        let url = self.url(&["v1", "connections", id])?;
        self.no_content(Method::DELETE, url).await
    }

    /// `POST /v1/claims/lookup`: what a claim token refers to. A 404 (`claim_not_found`)
    /// for an unknown or already claimed token, 410 (`claim_expired`) for an expired one.
    pub async fn lookup_claim(&self, token: &str) -> Result<ClaimInfo, Error> {
        let url = self.url(&["v1", "claims", "lookup"])?;
        let body = ClaimLookup {
            token: token.to_owned(),
        };
        self.data(Method::POST, url, Some(json_body(&body)?)).await
    }

    /// `POST /v1/projects/{id}/transfer`: moves the project into the workspace of the user
    /// who granted `recipient_access_token` (`workspace:admin`) to this same application.
    pub async fn transfer_project(
        &self,
        project_id: &str,
        recipient_access_token: &str,
    ) -> Result<Project, Error> {
        let url = self.url(&["v1", "projects", project_id, "transfer"])?;
        let body = TransferProject {
            recipient_access_token: recipient_access_token.to_owned(),
        };
        self.data(Method::POST, url, Some(json_body(&body)?)).await
    }

    // -----------------------------------------------------------------------------------
    // Plumbing
    // -----------------------------------------------------------------------------------

    fn url(&self, segments: &[&str]) -> Result<String, Error> {
        build_url::<()>(&self.base_url, segments, None)
    }

    async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        url: String,
        body: Option<Vec<u8>>,
    ) -> Result<T, Error> {
        let (status, bytes) = execute(&self.http, &self.auth, method, &url, body).await?;
        decode(status, &bytes)
    }

    /// A `{"data": T}` answer, unwrapped.
    async fn data<T: DeserializeOwned>(
        &self,
        method: Method,
        url: String,
        body: Option<Vec<u8>>,
    ) -> Result<T, Error> {
        let data: Data<T> = self.send(method, url, body).await?;
        Ok(data.data)
    }

    async fn list<T: DeserializeOwned>(&self, url: String) -> Result<DataPage<T>, Error> {
        let body: ListBody<T> = self.send(Method::GET, url, None).await?;
        Ok(body.into())
    }

    async fn no_content(&self, method: Method, url: String) -> Result<(), Error> {
        execute(&self.http, &self.auth, method, &url, None)
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn audience_and_urls() {
        assert_eq!(
            provisioning_audience("http://127.0.0.1:8080/"),
            "http://127.0.0.1:8080/v1"
        );
        let c = ProvisioningClient::new("https://h/auth/", "secret-bearer");
        assert_eq!(
            c.url(&["v1", "projects", "prj 1/x", "transfer"]).unwrap(),
            "https://h/auth/v1/projects/prj%201%2Fx/transfer"
        );
        assert!(c.url(&["v1", "databases", ""]).is_err());
        assert!(!format!("{c:?}").contains("secret-bearer"));
    }

    #[test]
    fn bodies_are_camel_case_without_nulls() {
        let create = CreateProject {
            name: "p".into(),
            region: None,
            ttl_seconds: Some(3600),
        };
        assert_eq!(
            json_body(&create).unwrap(),
            br#"{"name":"p","ttlSeconds":3600}"#
        );
        assert_eq!(json_body(&UpdateProject { name: None }).unwrap(), b"{}");
        let transfer = TransferProject {
            recipient_access_token: "at".into(),
        };
        assert_eq!(
            json_body(&transfer).unwrap(),
            br#"{"recipientAccessToken":"at"}"#
        );
    }

    #[test]
    fn lists_without_pagination_are_one_last_page() {
        let body: ListBody<u32> = serde_json::from_str(r#"{"data":[1,2]}"#).unwrap();
        let page: DataPage<u32> = body.into();
        assert_eq!(page.data, vec![1, 2]);
        assert!(!page.pagination.has_more);
        let body: ListBody<u32> = serde_json::from_str(
            r#"{"data":[3],"pagination":{"nextCursor":"c","hasMore":true},"extra":1}"#,
        )
        .unwrap();
        let page: DataPage<u32> = body.into();
        assert_eq!(page.pagination.next_cursor.as_deref(), Some("c"));
    }
}
