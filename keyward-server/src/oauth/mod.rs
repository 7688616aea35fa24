//! OAuth 2.0 / OpenID Connect endpoints: the authorization endpoint, the token endpoint
//! (one module per grant), userinfo, revocation, introspection, end-session, discovery.

pub mod authorization_code;
pub mod authorize;
pub mod client_auth;
pub mod discovery;
pub mod endpoints;
pub mod refresh;
pub mod token;
pub mod user_tokens;
