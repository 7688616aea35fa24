//! Wire types of Keyward's HTTP APIs.
//!
//! Everything here is plain data: what goes over the wire as JSON or form bodies. No
//! behaviour, no I/O. The server and the client crate both depend on it, so a change to a
//! field name is a change to the public API.
//!
//! JSON field names are snake_case throughout.

pub mod management;
pub mod oauth;
pub mod problem;

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
