//! OAuth 2.0 endpoints: token issuance (one handler per grant) and discovery.

pub mod client_auth;
pub mod discovery;
pub mod token;
