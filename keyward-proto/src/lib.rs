//! Wire types of Keyward's HTTP APIs.
//!
//! Everything here is plain data: what goes over the wire as JSON or form bodies. No
//! behaviour, no I/O. The server and the client crate both depend on it, so a change to a
//! field name is a change to the public API.
//!
//! JSON field names are snake_case, except in the provisioning API (`provisioning`), which
//! follows the camelCase shape of the API partner integrations are written against.

pub mod external;
pub mod import;
pub mod management;
pub mod oauth;
pub mod problem;
pub mod provisioning;

pub use external::*;
pub use import::*;
pub use management::*;
pub use oauth::*;
pub use problem::*;

/// Deserializes a field that distinguishes "absent" (`None`) from "null" (`Some(None)`),
/// which PATCH bodies need to clear a value.
pub fn double_option<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    T: serde::Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    serde::Deserialize::deserialize(deserializer).map(Some)
}
