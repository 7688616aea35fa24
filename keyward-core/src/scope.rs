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
    (
        "external_applications:read",
        "Read external applications and who is connected to them",
    ),
    (
        "external_applications:write",
        "Create, change, disable, reset and delete external applications",
    ),
    (
        "connections:read",
        "List the user's own external connections",
    ),
    (
        "connections:write",
        "Delete the user's own external connections",
    ),
    (
        "connections:use",
        "Get external access tokens and call external APIs through the proxy",
    ),
];

/// The management scopes a user may delegate to an application through the authorization
/// flow (a user's access token for the management API). Their handlers act within the
/// user's own rights: the user's own connections, and the external applications of
/// accounts the user is a member of (managing them needs owner or admin, or the
/// `manage_external_applications` permission). Every other management scope acts on the
/// whole server and never reaches a user's token.
pub const USER_DELEGABLE_MANAGEMENT_SCOPES: &[&str] = &[
    "connections:read",
    "connections:write",
    "connections:use",
    "external_applications:read",
    "external_applications:write",
];

/// Whether `scope` is a management scope a user's token may carry.
pub fn is_user_delegable(scope: &str) -> bool {
    USER_DELEGABLE_MANAGEMENT_SCOPES.contains(&scope)
}

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
    fn user_delegable_scopes_are_management_scopes() {
        for scope in USER_DELEGABLE_MANAGEMENT_SCOPES {
            assert!(
                MANAGEMENT_SCOPES.iter().any(|(name, _)| name == scope),
                "{scope}"
            );
        }
        assert!(is_user_delegable("connections:use"));
        assert!(!is_user_delegable("users:write"));
        assert!(!is_user_delegable("applications:write"));
    }

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
