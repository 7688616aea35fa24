//! Rust client for Keyward.
//!
//! - [`OAuthClient`]: OAuth 2.0 client credentials (`client_secret_basic`), with tokens
//!   cached per (audience, scope) until shortly before they expire.
//! - [`AdminClient`]: typed calls of the management API (`/api/...`), authenticated with a
//!   fixed bearer token or with tokens from an [`OAuthClient`].
//! - [`ProvisioningClient`]: typed calls of the provisioning API (`/v1/...`) partner
//!   applications create databases and hand projects over with.
//! - [`OAuthClient::exchange_authorization_code`] and [`Pkce`]: the authorization-code
//!   grant with PKCE (`S256`), for applications that act for a user.
//!
//! ```no_run
//! # async fn run() -> Result<(), keyward_client::Error> {
//! use std::sync::Arc;
//! use keyward_client::{AdminClient, OAuthClient};
//! use keyward_client::proto::{CreateChildAccount, CreateUser, Role, UserStatus};
//!
//! let oauth = Arc::new(OAuthClient::new(
//!     "https://auth.example.com/oauth2/token",
//!     "backend-admin",
//!     "kws_…",
//! ));
//! let api = AdminClient::with_oauth("https://auth.example.com", oauth, "https://auth.example.com/api");
//! let user = api
//!     .create_application_user("app_…", &CreateUser { status: Some(UserStatus::Active), ..Default::default() })
//!     .await?;
//! let account = api
//!     .create_child_account("acc_…", &CreateChildAccount { name: "ops-provisioned".into(), custom_data: None })
//!     .await?;
//! api.add_account_member(&account.id, &user.id, Role::Viewer).await?;
//! # Ok(())
//! # }
//! ```

mod admin;
mod error;
mod oauth;
mod pkce;
mod provisioning;
mod transport;
mod urls;

pub use admin::{AccountQuery, AdminClient, AuditQuery, ListQuery, UserQuery};
pub use error::Error;
pub use oauth::{AccessToken, OAuthClient};
pub use pkce::{pkce_challenge, random_token, Pkce};
pub use provisioning::{provisioning_audience, ProvisioningClient, PROVISIONING_SCOPE};
pub use urls::{basic_authorization, build_url, form_urlencode, path_segment};

/// The wire types, re-exported so that users need no direct dependency on `keyward-proto`.
pub use keyward_proto as proto;
