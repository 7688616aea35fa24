//! Keyward's domain: entities and their rules, the storage traits the domain needs, and the
//! token protocol logic (secrets, key management, JWT access tokens).
//!
//! Invariant: this crate never imports axum, sqlx or any other I/O framework. It is driven
//! by `keyward-server` (HTTP) and `keyward` (CLI), and persisted by `keyward-store`.

pub mod authz;
pub mod crypto;
pub mod error;
pub mod external;
pub mod id;
pub mod import;
pub mod keys;
pub mod model;
pub mod password;
pub mod project;
pub mod scope;
pub mod secret;
pub mod store;
pub mod token;
pub mod validate;

pub use error::{StoreError, ValidationError};
pub use keyward_proto::{ApplicationKind, AuditOutcome, Role, UserStatus};
