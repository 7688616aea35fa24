//! The provisioning API (`/v1/...`): regions, projects, databases, connections, transfer.
//!
//! Unlike the management API, these bodies use camelCase field names: the API follows the
//! shape of the Prisma Postgres Management API that partner integrations are written
//! against (`recipientAccessToken`, `connectionString`, `claimUrl`), so such code ports
//! over unchanged. Every response wraps its payload in `data`.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

/// `{"data": …}`: the envelope of every provisioning response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Data<T> {
    pub data: T,
}

/// A page of a provisioning list.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct DataPage<T> {
    pub data: Vec<T>,
    pub pagination: CursorPagination,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CursorPagination {
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
    pub has_more: bool,
}

/// A region: one PostgreSQL cluster databases are created in.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Region {
    pub id: String,
    pub name: String,
    /// `available` when the cluster answered its last check, else `unavailable`.
    pub status: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RegionRef {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceRef {
    pub id: String,
    pub name: String,
}

/// `POST /v1/projects`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateProject {
    pub name: String,
    /// A region id from `GET /v1/regions`; the first configured region when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Seconds until the project is deleted unless claimed: 1800 to 86400, default 86400.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<i64>,
}

/// `PATCH /v1/projects/:id`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateProject {
    pub name: Option<String>,
}

/// `POST /v1/projects/:id/databases`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateDatabase {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `POST /v1/databases/:id/connections`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateConnection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `POST /v1/projects/:id/transfer`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TransferProject {
    /// An access token the recipient user granted this same partner application with the
    /// `workspace:admin` scope, for the workspace the project moves into.
    #[serde(rename = "recipientAccessToken", alias = "recipient_access_token")]
    pub recipient_access_token: String,
}

/// `POST /v1/claims/lookup`: what a claim link refers to (the partner's claim page).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimLookup {
    pub token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClaimInfo {
    pub project_id: String,
    pub project_name: String,
    /// The partner application's name.
    pub partner_name: String,
    pub region: RegionRef,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// A project: a container of databases owned by one workspace.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Project {
    pub id: String,
    /// Always `project`.
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    /// `active`, or `deleting` while its databases are being dropped.
    pub status: String,
    pub workspace: WorkspaceRef,
    pub region: RegionRef,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When an unclaimed project is deleted; null once claimed.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub claimed_at: Option<OffsetDateTime>,
    /// Only in the response that created the project: the link the user claims it with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_url: Option<String>,
    /// The default database; in the create response with its connection string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<Database>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Database {
    pub id: String,
    /// Always `database`.
    #[serde(rename = "type")]
    pub kind: String,
    pub project_id: String,
    pub name: String,
    /// `ready`, `provisioning` or `deleting`.
    pub status: String,
    pub is_default: bool,
    pub region: RegionRef,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Only in the response that created the database (or its first connection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_string: Option<String>,
    /// Connections without their secrets; the new one with its password when just created.
    pub connections: Vec<Connection>,
}

/// A set of credentials for one database (a PostgreSQL login role).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Connection {
    pub id: String,
    pub database_id: String,
    pub name: String,
    pub endpoints: Endpoints,
    pub user: String,
    pub database: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub rotated_at: Option<OffsetDateTime>,
    /// Only when the credentials were just created or rotated: shown once, never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_string: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Endpoints {
    pub direct: Endpoint,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}
