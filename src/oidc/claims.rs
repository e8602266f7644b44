//! What a verified token says about its user, read with oauth2-proxy's claim options:
//! `user_id_claim`, `oidc_email_claim` (and the `email_verified` beside it),
//! `oidc_groups_claim`, and Keycloak's realm and client roles.

use serde_json::{Map, Value};

use super::id_token::Verified;

/// Which claims hold what; dotted paths (`realm_access.roles`) are followed when no
/// top-level claim has that exact name.
#[derive(Debug, Clone, Copy)]
pub struct ClaimNames<'a> {
    pub user: &'a str,
    pub email: &'a str,
    pub groups: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    pub user: String,
    pub email: Option<String>,
    pub email_verified: Option<bool>,
    pub preferred_username: Option<String>,
    pub groups: Vec<String>,
    /// Keycloak realm roles as `role`, client roles as `client:role`.
    pub roles: Vec<String>,
    /// Google's `hd`: the account's Workspace domain.
    pub hosted_domain: Option<String>,
    /// Entra's `tid`: the account's tenant.
    pub tenant: Option<String>,
    /// Memberships a provider's API confirmed (see `Session::proven`); never from a claim.
    pub proven: Vec<String>,
}

pub fn identity(v: &Verified, names: &ClaimNames) -> Identity {
    let all = &v.claims;
    let text = |name: &str| {
        claim(all, name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    Identity {
        // The user id claim may be absent (no email scope); the subject always identifies.
        user: text(names.user).unwrap_or_else(|| v.sub.clone()),
        email: text(names.email),
        // The flag about *this* address sits beside it: `email` -> `email_verified`,
        // `profile.mail` -> `profile.mail_verified`. A flag about another claim's address
        // (the top-level `email_verified` for a custom `upn`) says nothing about this one.
        email_verified: claim(all, &format!("{}_verified", names.email)).and_then(loose_bool),
        preferred_username: text("preferred_username"),
        groups: claim(all, names.groups)
            .map(string_list)
            .unwrap_or_default(),
        roles: keycloak_roles(all),
        hosted_domain: text("hd"),
        tenant: text("tid"),
        proven: Vec::new(),
    }
}

/// Claim names may themselves contain dots (namespaced URIs), so exact names win.
pub fn claim<'m>(all: &'m Map<String, Value>, name: &str) -> Option<&'m Value> {
    if let Some(v) = all.get(name) {
        return Some(v);
    }
    let mut parts = name.split('.');
    let first = all.get(parts.next()?)?;
    parts.try_fold(first, |v, part| v.get(part))
}

/// Some providers (e.g. Cognito) send booleans as strings.
fn loose_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// Non-string entries are dropped: groups only ever grant access, so ignoring is safe.
fn string_list(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// `realm_access.roles` as they are, `resource_access.<client>.roles` as `client:role`, as
/// oauth2-proxy's keycloak-oidc provider reads them.
fn keycloak_roles(all: &Map<String, Value>) -> Vec<String> {
    let mut roles = all
        .get("realm_access")
        .and_then(|r| r.get("roles"))
        .map(string_list)
        .unwrap_or_default();
    if let Some(Value::Object(clients)) = all.get("resource_access") {
        for (client, access) in clients {
            let client_roles = access.get("roles").map(string_list).unwrap_or_default();
            roles.extend(client_roles.into_iter().map(|r| format!("{client}:{r}")));
        }
    }
    roles
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn verified(claims: Value) -> Verified {
        Verified {
            sub: "sub-1".into(),
            exp: 0,
            claims: claims.as_object().unwrap().clone(),
        }
    }

    const DEFAULT: ClaimNames = ClaimNames {
        user: "email",
        email: "email",
        groups: "groups",
    };

    #[test]
    fn defaults_as_oauth2_proxy() {
        let v = verified(json!({
            "email": "alice@example.com",
            "email_verified": true,
            "preferred_username": "alice",
            "groups": ["admins", 3, "devs"],
        }));
        let id = identity(&v, &DEFAULT);
        assert_eq!(id.user, "alice@example.com");
        assert_eq!(id.email.as_deref(), Some("alice@example.com"));
        assert_eq!(id.email_verified, Some(true));
        assert_eq!(id.preferred_username.as_deref(), Some("alice"));
        assert_eq!(id.groups, vec!["admins", "devs"]);
        assert!(id.roles.is_empty());
        let bare = identity(&verified(json!({})), &DEFAULT);
        assert_eq!(bare.user, "sub-1", "no email: the subject identifies");
        assert_eq!(bare.email, None);
    }

    #[test]
    fn configurable_claims_and_their_verified_flag() {
        let v = verified(json!({
            "email": "x@other.org",
            "email_verified": true,
            "upn": "alice@corp",
            "profile": {"mail": "p@corp", "mail_verified": "false"},
            "roles": "solo",
            "https://ns.example/groups": ["ns"],
            "realm_access": {"roles": ["r1", 2, "r2"]},
            "uid": 42,
        }));
        let id = identity(
            &v,
            &ClaimNames {
                user: "upn",
                email: "upn",
                groups: "roles",
            },
        );
        assert_eq!(id.user, "alice@corp");
        assert_eq!(id.email.as_deref(), Some("alice@corp"));
        assert_eq!(id.email_verified, None, "email_verified is about `email`");
        assert_eq!(id.groups, vec!["solo"]);
        let id = identity(
            &v,
            &ClaimNames {
                user: "uid",
                email: "profile.mail",
                groups: "https://ns.example/groups",
            },
        );
        assert_eq!(
            id.user, "sub-1",
            "a non-string user claim falls back to sub"
        );
        assert_eq!(id.email.as_deref(), Some("p@corp"));
        assert_eq!(id.email_verified, Some(false));
        assert_eq!(id.groups, vec!["ns"]);
        let id = identity(
            &v,
            &ClaimNames {
                groups: "realm_access.roles",
                ..DEFAULT
            },
        );
        assert_eq!(id.groups, vec!["r1", "r2"]);
    }

    #[test]
    fn keycloak_realm_and_client_roles() {
        let v = verified(json!({
            "realm_access": {"roles": ["admin", "offline_access"]},
            "resource_access": {
                "app": {"roles": ["reader", "writer"]},
                "account": {"roles": ["manage-account"]},
                "broken": {"roles": "not-a-list-but-one"},
                "odd": 7,
            },
        }));
        let mut roles = identity(&v, &DEFAULT).roles;
        roles.sort();
        assert_eq!(
            roles,
            [
                "account:manage-account",
                "admin",
                "app:reader",
                "app:writer",
                "broken:not-a-list-but-one",
                "offline_access"
            ]
        );
    }
}
