//! URL and header building: pure functions, unit-tested without a server.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Serialize;

use crate::Error;

/// Everything but RFC 3986 unreserved characters is encoded in a path segment, so an id
/// can never add a segment (`/`), a query (`?`) or a fragment (`#`).
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The `application/x-www-form-urlencoded` byte set (WHATWG URL §5.2): alphanumerics and
/// `*-._` stay, space becomes `+`, everything else is percent-encoded.
const FORM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'*')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b' ');

/// Form-urlencodes one value.
pub fn form_urlencode(value: &str) -> String {
    utf8_percent_encode(value, FORM)
        .to_string()
        .replace(' ', "+")
}

/// The `Authorization` header value of `client_secret_basic` (RFC 6749 §2.3.1): client id
/// and secret are form-urlencoded, joined by `:` and base64-encoded.
pub fn basic_authorization(client_id: &str, client_secret: &str) -> String {
    let credentials = format!(
        "{}:{}",
        form_urlencode(client_id),
        form_urlencode(client_secret)
    );
    format!("Basic {}", STANDARD.encode(credentials))
}

/// Percent-encodes one path segment. Empty segments and `.`/`..` are refused: URL
/// normalization would drop or resolve them, silently addressing another resource.
pub fn path_segment(segment: &str) -> Result<String, Error> {
    if segment.is_empty() || segment.chars().all(|c| c == '.') {
        return Err(Error::InvalidArgument(format!(
            "{segment:?} is not a valid path segment"
        )));
    }
    Ok(utf8_percent_encode(segment, PATH_SEGMENT).to_string())
}

/// `{base}/{segment}/{segment}…?{query}`; `base` may carry a path prefix and a trailing
/// slash. `query` is any struct that serializes to flat key/value pairs; `None` fields
/// must be skipped by the struct (`skip_serializing_if`).
pub fn build_url<Q: Serialize + ?Sized>(
    base: &str,
    segments: &[&str],
    query: Option<&Q>,
) -> Result<String, Error> {
    let mut url = base.trim_end_matches('/').to_owned();
    for segment in segments {
        url.push('/');
        url.push_str(&path_segment(segment)?);
    }
    if let Some(query) = query {
        let encoded = serde_urlencoded::to_string(query)
            .map_err(|e| Error::InvalidArgument(format!("cannot encode the query: {e}")))?;
        if !encoded.is_empty() {
            url.push('?');
            url.push_str(&encoded);
        }
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[derive(Serialize, Default)]
    struct Q {
        #[serde(skip_serializing_if = "Option::is_none")]
        email: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        status: Option<keyward_proto::UserStatus>,
    }

    #[test]
    fn segments_are_percent_encoded() {
        let url =
            build_url::<()>("http://h:1/", &["api", "users", "usr_1/../x?y#z %"], None).unwrap();
        assert_eq!(url, "http://h:1/api/users/usr_1%2F..%2Fx%3Fy%23z%20%25");
        assert_eq!(path_segment("mem_01ABC").unwrap(), "mem_01ABC");
        assert_eq!(path_segment("é").unwrap(), "%C3%A9");
    }

    #[test]
    fn empty_and_dot_segments_are_refused() {
        for bad in ["", ".", ".."] {
            assert!(matches!(path_segment(bad), Err(Error::InvalidArgument(_))));
        }
        assert!(build_url::<()>("http://h", &["api", "users", ""], None).is_err());
        assert_eq!(path_segment("a.b").unwrap(), "a.b");
    }

    #[test]
    fn base_path_prefix_is_kept() {
        let url = build_url::<()>("https://h/auth", &["api", "accounts"], None).unwrap();
        assert_eq!(url, "https://h/auth/api/accounts");
    }

    #[test]
    fn query_skips_absent_filters_and_encodes_values() {
        let none = build_url("http://h", &["api", "users"], Some(&Q::default())).unwrap();
        assert_eq!(none, "http://h/api/users");
        let q = Q {
            email: Some("a+b@example.com".into()),
            limit: Some(5),
            status: Some(keyward_proto::UserStatus::Suspended),
        };
        let url = build_url("http://h", &["api", "users"], Some(&q)).unwrap();
        assert_eq!(
            url,
            "http://h/api/users?email=a%2Bb%40example.com&limit=5&status=suspended"
        );
        let flag = build_url(
            "http://h",
            &["api", "users", "usr_1"],
            Some(&[("force", true)]),
        )
        .unwrap();
        assert_eq!(flag, "http://h/api/users/usr_1?force=true");
    }

    #[test]
    fn basic_header_form_encodes_before_base64() {
        // RFC 6749 §2.3.1: "client:id" with "p@ss w:rd" → "client%3Aid:p%40ss+w%3Ard".
        let header = basic_authorization("client:id", "p@ss w:rd");
        let encoded = header.strip_prefix("Basic ").unwrap();
        let decoded = String::from_utf8(STANDARD.decode(encoded).unwrap()).unwrap();
        assert_eq!(decoded, "client%3Aid:p%40ss+w%3Ard");
        // Plain ids and secrets are unchanged.
        assert_eq!(
            basic_authorization("backend-admin", "kws_abc.DEF~"),
            format!("Basic {}", STANDARD.encode("backend-admin:kws_abc.DEF%7E"))
        );
        assert_eq!(form_urlencode("a*b-c.d_e"), "a*b-c.d_e");
    }
}
