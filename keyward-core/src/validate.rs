//! Input validation and normalization shared by every entry point (API, CLI, import).

use crate::ValidationError;

const MAX_NAME_LEN: usize = 128;

/// Usernames: 1–128 characters of letters, digits, `_ . -`, starting with a letter or `_`.
/// Unique case-insensitively (the store enforces it).
pub fn username(value: &str) -> Result<String, ValidationError> {
    let valid_start = value
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !valid_start
        || value.len() > MAX_NAME_LEN
        || !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(ValidationError::new(
            "username",
            "must be 1-128 letters, digits, '_', '.' or '-', starting with a letter or '_'",
        ));
    }
    Ok(value.to_owned())
}

/// A pragmatic address check: one `@`, a non-empty local part, a domain of dot-separated
/// labels. Stored as given; uniqueness is case-insensitive.
pub fn email(value: &str) -> Result<String, ValidationError> {
    let value = value.trim();
    let invalid = || ValidationError::new("primary_email", "is not a valid email address");
    if value.len() > 254 || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid());
    }
    let (local, domain) = value.split_once('@').ok_or_else(invalid)?;
    if local.is_empty()
        || domain.is_empty()
        || domain.contains('@')
        || domain.split('.').any(|label| label.is_empty())
    {
        return Err(invalid());
    }
    Ok(value.to_owned())
}

/// Normalizes a phone number to E.164 (`+` and 8–15 digits); spaces, dashes, dots and
/// brackets are dropped, a leading `00` becomes `+`.
pub fn phone(value: &str) -> Result<String, ValidationError> {
    let compact: String = value
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect();
    let digits = compact
        .strip_prefix('+')
        .or_else(|| compact.strip_prefix("00"))
        .unwrap_or("");
    if !(8..=15).contains(&digits.len())
        || !digits.chars().all(|c| c.is_ascii_digit())
        || digits.starts_with('0')
    {
        return Err(ValidationError::new(
            "primary_phone",
            "must be an international number in E.164 form, e.g. +14155550123",
        ));
    }
    Ok(format!("+{digits}"))
}

/// A display name: trimmed, 1–128 characters.
pub fn display_name(field: &'static str, value: &str) -> Result<String, ValidationError> {
    let trimmed = value.trim();
    if trimmed.is_empty() || trimmed.chars().count() > MAX_NAME_LEN {
        return Err(ValidationError::new(field, "must be 1-128 characters"));
    }
    Ok(trimmed.to_owned())
}

/// An absolute URL without a fragment (RFC 6749 §3.1.2). `javascript:`, `data:` and
/// other script-capable schemes are refused.
pub fn redirect_uri(field: &'static str, value: &str) -> Result<String, ValidationError> {
    let url = url::Url::parse(value)
        .map_err(|_| ValidationError::new(field, format!("{value:?} is not an absolute URL")))?;
    if url.fragment().is_some() {
        return Err(ValidationError::new(field, "must not contain a fragment"));
    }
    if matches!(
        url.scheme().to_ascii_lowercase().as_str(),
        "javascript" | "data" | "vbscript" | "file"
    ) {
        return Err(ValidationError::new(field, "uses a forbidden scheme"));
    }
    if url.username() != "" || url.password().is_some() {
        return Err(ValidationError::new(field, "must not contain credentials"));
    }
    Ok(value.to_owned())
}

/// An API resource identifier: an absolute URI without a fragment (RFC 8707 §2).
pub fn resource_identifier(value: &str) -> Result<String, ValidationError> {
    let url = url::Url::parse(value).map_err(|_| {
        ValidationError::new(
            "identifier",
            "must be an absolute URI such as https://api.example.com",
        )
    })?;
    if url.fragment().is_some() {
        return Err(ValidationError::new(
            "identifier",
            "must not contain a fragment",
        ));
    }
    Ok(value.to_owned())
}

/// Token lifetimes: 60 seconds to 24 hours.
pub fn token_ttl(field: &'static str, secs: i64) -> Result<i64, ValidationError> {
    if !(60..=86_400).contains(&secs) {
        return Err(ValidationError::new(
            field,
            "must be between 60 and 86400 seconds",
        ));
    }
    Ok(secs)
}

/// JSON blobs (profile, custom data) must be objects.
pub fn json_object(field: &'static str, value: &serde_json::Value) -> Result<(), ValidationError> {
    if !value.is_object() {
        return Err(ValidationError::new(field, "must be a JSON object"));
    }
    Ok(())
}

/// Social identities: an object of provider → `{ "user_id": non-empty string, "details":
/// object (optional) }`. Returns the pairs (provider, provider user id) the store indexes.
pub fn identities(value: &serde_json::Value) -> Result<Vec<(String, String)>, ValidationError> {
    let invalid = |why: &str| ValidationError::new("identities", why.to_owned());
    let map = value
        .as_object()
        .ok_or_else(|| invalid("must be an object of provider -> {user_id, details}"))?;
    let mut pairs = Vec::with_capacity(map.len());
    for (provider, identity) in map {
        if provider.is_empty() || provider.len() > MAX_NAME_LEN {
            return Err(invalid("provider names are 1-128 characters"));
        }
        let identity = identity
            .as_object()
            .ok_or_else(|| invalid("each identity must be an object"))?;
        let user_id = identity
            .get("user_id")
            .and_then(|v| v.as_str())
            .filter(|v| !v.is_empty() && v.len() <= 255)
            .ok_or_else(|| invalid("each identity needs a user_id of 1-255 characters"))?;
        if identity
            .get("details")
            .is_some_and(|d| !d.is_object() && !d.is_null())
        {
            return Err(invalid("details must be an object"));
        }
        if let Some(key) = identity.keys().find(|k| *k != "user_id" && *k != "details") {
            return Err(invalid(&format!("unknown identity field `{key}`")));
        }
        pairs.push((provider.clone(), user_id.to_owned()));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_normalize_to_e164() {
        assert_eq!(phone("+1 (415) 555-0123").as_deref(), Ok("+14155550123"));
        assert_eq!(phone("0044 20 7946 0958").as_deref(), Ok("+442079460958"));
        assert!(phone("4155550123").is_err());
        assert!(phone("+1 415 555 01x3").is_err());
        assert!(phone("+0123456789").is_err());
    }

    #[test]
    fn emails() {
        assert!(email("Ann@Example.com").is_ok());
        assert!(email("ann@localhost").is_ok());
        assert!(email("ann").is_err());
        assert!(email("ann@@x.com").is_err());
        assert!(email("a nn@x.com").is_err());
        assert!(email("ann@x..com").is_err());
    }

    #[test]
    fn usernames() {
        assert!(username("ann_1.b-c").is_ok());
        assert!(username("1ann").is_err());
        assert!(username("").is_err());
        assert!(username("ann smith").is_err());
    }

    #[test]
    fn redirect_uris() {
        assert!(redirect_uri("redirect_uris", "https://app.example.com/cb").is_ok());
        assert!(redirect_uri("redirect_uris", "http://127.0.0.1/cb").is_ok());
        assert!(redirect_uri("redirect_uris", "/cb").is_err());
        assert!(redirect_uri("redirect_uris", "https://a.com/cb#x").is_err());
        assert!(redirect_uri("redirect_uris", "JavaScript:alert(1)").is_err());
        assert!(redirect_uri("redirect_uris", "https://u:p@a.com/cb").is_err());
    }
}
