//! The reference partner of Keyward's provisioning API: the `npx create-db` experience.
//!
//! A partner application (an OAuth client with the `partner` flag, in the partner's
//! workspace) creates real PostgreSQL databases in its own workspace with an integration
//! token (client credentials, audience `{issuer}/v1`). The end user gets a connection
//! string at once and a claim URL; claiming moves the project into the user's own
//! workspace after an OAuth authorization-code flow with PKCE.
//!
//! - [`serve`] / [`router`]: the partner service ("the create and claim workers"):
//!   `POST /create`, `GET /regions`, `GET /claim`, `POST /claim/start`,
//!   `GET /claim/callback`, `GET /healthz`.
//! - [`create_db`]: the `create-db` command line, a client of that service.
//!
//! Starting the service from a test:
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! use keyward_partner::{serve_listener, PartnerConfig};
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let public_url = format!("http://{}", listener.local_addr()?);
//! let config = PartnerConfig::new("http://127.0.0.1:8080", "app_…", "kws_…", public_url);
//! tokio::spawn(serve_listener(listener, config));
//! # Ok(())
//! # }
//! ```

mod claim;
mod cli;
mod config;
mod names;
mod pages;
mod rate_limit;
mod service;
mod wire;

pub use cli::{create_db, parse_ttl, CreateDbArgs, CreateDbCommand};
pub use config::{PartnerConfig, PartnerServeArgs};
pub use service::{router, serve, serve_listener};
pub use wire::{CreateRequest, CreatedDatabase};
