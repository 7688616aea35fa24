//! Scope strings (RFC 6749 §3.3) and the management API's scopes.

/// Every scope of the management API. The bootstrap admin application holds all of them.
pub const MANAGEMENT_SCOPES: &[(&str, &str)] = &[
    ("applications:read", "Read applications"),
    (
        "applications:write",
        "Create, change and delete applications and their secrets",
    ),
    ("users:read", "Read users"),
    ("users:write", "Create, change and delete users"),
    ("accounts:read", "Read accounts and their members"),
    (
        "accounts:write",
        "Create, change and delete accounts and memberships",
    ),
    ("resources:read", "Read API resources"),
    ("resources:write", "Create, change and delete API resources"),
    ("audit:read", "Read the audit log"),
];

/// Splits a space-delimited scope string, dropping empties and duplicates, keeping order.
pub fn parse_scopes(scope: &str) -> Vec<String> {
    let mut scopes: Vec<String> = Vec::new();
    for token in scope.split(' ').filter(|s| !s.is_empty()) {
        if !scopes.iter().any(|s| s == token) {
            scopes.push(token.to_owned());
        }
    }
    scopes
}

/// A scope token is 1*( %x21 / %x23-5B / %x5D-7E ) (RFC 6749 §3.3).
pub fn is_valid_scope_token(token: &str) -> bool {
    !token.is_empty()
        && token
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

/// The scopes to grant: all `requested` when they are a subset of `allowed` (all of
/// `allowed` when nothing was requested); `Err` names the first scope not allowed.
pub fn grant_scopes(requested: Option<&str>, allowed: &[String]) -> Result<Vec<String>, String> {
    match requested.map(parse_scopes) {
        None => Ok(allowed.to_vec()),
        Some(requested) if requested.is_empty() => Ok(allowed.to_vec()),
        Some(requested) => {
            if let Some(missing) = requested.iter().find(|s| !allowed.contains(s)) {
                return Err(missing.clone());
            }
            Ok(requested)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subset_rules() {
        let allowed = vec!["a".to_string(), "b".to_string()];
        assert_eq!(grant_scopes(None, &allowed), Ok(allowed.clone()));
        assert_eq!(grant_scopes(Some(""), &allowed), Ok(allowed.clone()));
        assert_eq!(grant_scopes(Some("b"), &allowed), Ok(vec!["b".to_string()]));
        assert_eq!(
            grant_scopes(Some("b  a b"), &allowed),
            Ok(vec!["b".to_string(), "a".to_string()])
        );
        assert_eq!(grant_scopes(Some("a c"), &allowed), Err("c".to_string()));
    }

    #[test]
    fn scope_token_syntax() {
        assert!(is_valid_scope_token("users:read"));
        assert!(!is_valid_scope_token("a b"));
        assert!(!is_valid_scope_token("a\"b"));
        assert!(!is_valid_scope_token(""));
    }
}
