//! The login session: what we remember about a user, sealed into the session cookie. It
//! keeps every fact the access rules read (email, its verification, groups, roles), so the
//! rules are applied again on every request and a configuration change reaches existing
//! sessions.

pub mod cookie;
pub mod csrf;
pub mod pkce;
pub mod seal;

use crate::oidc::Identity;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    #[serde(rename = "u")]
    pub user: String,
    #[serde(rename = "e", default)]
    pub email: String,
    #[serde(rename = "p", default)]
    pub preferred_username: String,
    /// What the IdP said of the email: `None` when it did not say.
    #[serde(rename = "v", default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    #[serde(rename = "g", default)]
    pub groups: Vec<String>,
    /// Keycloak roles: realm roles as `role`, client roles as `client:role`.
    #[serde(rename = "o", default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    #[serde(rename = "a", default)]
    pub access_token: String,
    #[serde(rename = "i", default)]
    pub id_token: String,
    #[serde(rename = "r", default)]
    pub refresh_token: String,
    /// When the tokens were last obtained (login or refresh): oauth2-proxy's `CreatedAt`,
    /// which `cookie_refresh` counts from.
    #[serde(rename = "c")]
    pub created_at: u64,
    #[serde(rename = "x")]
    pub expires_at: u64,
    /// Random id fixed at login, kept across refreshes: the key that coalesces refreshes.
    #[serde(rename = "d", default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// The ID token's `sub`, which a refreshed ID token must repeat.
    #[serde(rename = "s", default, skip_serializing_if = "String::is_empty")]
    pub sub: String,
    /// When the access token expires; 0 when the IdP did not say.
    #[serde(rename = "t", default, skip_serializing_if = "is_zero")]
    pub access_expires_at: u64,
    /// Refreshes so far; a refresh publishes generation + 1 for parallel requests.
    #[serde(rename = "n", default, skip_serializing_if = "is_zero")]
    pub generation: u64,
    /// When the user logged in: `session_max_lifetime` counts from here, and no refresh
    /// moves it.
    #[serde(rename = "l")]
    pub login_at: u64,
    /// When the ID token expires (its `exp`); 0 when there is none.
    #[serde(rename = "k", default, skip_serializing_if = "is_zero")]
    pub id_expires_at: u64,
    /// Google's `hd` claim: the Workspace domain of the account.
    #[serde(rename = "h", default, skip_serializing_if = "String::is_empty")]
    pub hosted_domain: String,
    /// Entra's `tid` claim: the tenant of the account.
    #[serde(rename = "w", default, skip_serializing_if = "String::is_empty")]
    pub tenant: String,
    /// Memberships the provider's API confirmed at login (`github:org:acme`,
    /// `gitlab:project:acme/app`, ...): facts no token claim can stand in for.
    #[serde(rename = "m", default, skip_serializing_if = "Vec::is_empty")]
    pub proven: Vec<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Version 2 added the facts the provider rules read (`proven`, hosted domain, tenant) and
/// the login time: a version 1 cookie cannot be held to those rules, so it opens as nothing
/// and its user logs in again.
fn aad(cookie_name: &str) -> Vec<u8> {
    format!("session.v2:{cookie_name}").into_bytes()
}

pub fn seal(
    key: &[u8; 32],
    cookie_name: &str,
    session: &Session,
    nonce: [u8; 12],
) -> Option<String> {
    let json = serde_json::to_vec(session).ok()?;
    seal::seal(key, &aad(cookie_name), nonce, &json)
}

/// `None` for a tampered, foreign or expired cookie: all of them mean "not logged in".
pub fn open(key: &[u8; 32], cookie_name: &str, value: &str, now: u64) -> Option<Session> {
    let json = seal::open(key, &aad(cookie_name), value)?;
    let session: Session = serde_json::from_slice(&json).ok()?;
    (session.expires_at > now).then_some(session)
}

/// [`open`] with the current key, then with each previous one (`cookie_secret_previous`);
/// `true` alongside a session that an old key opened, so it gets sealed again.
pub fn open_any<'k>(
    current: &[u8; 32],
    previous: impl Iterator<Item = &'k [u8; 32]>,
    cookie_name: &str,
    value: &str,
    now: u64,
) -> Option<(Session, bool)> {
    if let Some(s) = open(current, cookie_name, value, now) {
        return Some((s, false));
    }
    let mut previous = previous;
    previous.find_map(|k| open(k, cookie_name, value, now).map(|s| (s, true)))
}

impl Session {
    /// What the session says of its user, as the providers read and write it.
    pub fn identity(&self) -> Identity {
        let text = |v: &String| Some(v.clone()).filter(|v| !v.is_empty());
        Identity {
            user: self.user.clone(),
            email: text(&self.email),
            email_verified: self.email_verified,
            preferred_username: text(&self.preferred_username),
            groups: self.groups.clone(),
            roles: self.roles.clone(),
            hosted_domain: text(&self.hosted_domain),
            tenant: text(&self.tenant),
            proven: self.proven.clone(),
        }
    }

    /// This session with `who` as its user; everything else (subject, tokens, times) kept.
    pub fn with_identity(self, who: Identity) -> Session {
        Session {
            user: who.user,
            email: who.email.unwrap_or_default(),
            preferred_username: who.preferred_username.unwrap_or_default(),
            email_verified: who.email_verified,
            groups: who.groups,
            roles: who.roles,
            hosted_domain: who.hosted_domain.unwrap_or_default(),
            tenant: who.tenant.unwrap_or_default(),
            proven: who.proven,
            ..self
        }
    }

    /// Heap bytes held, for the cache's byte bound.
    pub fn weight(&self) -> usize {
        let list = |l: &[String]| l.iter().map(|g| g.len() + 24).sum::<usize>();
        self.user.len()
            + self.email.len()
            + self.preferred_username.len()
            + list(&self.groups)
            + list(&self.roles)
            + list(&self.proven)
            + self.hosted_domain.len()
            + self.tenant.len()
            + self.access_token.len()
            + self.id_token.len()
            + self.refresh_token.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Session {
        Session {
            user: "john".into(),
            email: "john@example.com".into(),
            preferred_username: "john".into(),
            email_verified: Some(true),
            groups: vec!["developers".into()],
            roles: vec!["admin".into(), "app:reader".into()],
            access_token: "at".into(),
            id_token: "it".into(),
            refresh_token: String::new(),
            created_at: 100,
            expires_at: 200,
            id: "sid".into(),
            sub: "john".into(),
            access_expires_at: 150,
            generation: 2,
            login_at: 90,
            id_expires_at: 160,
            hosted_domain: "example.com".into(),
            tenant: "t1".into(),
            proven: vec!["github:org:acme".into()],
        }
    }

    #[test]
    fn previous_keys_open_and_say_so() {
        let v = seal(&[1; 32], "_oauth2_proxy", &sample(), [3; 12]).unwrap();
        let opened = |cur: &[u8; 32], prev: &[[u8; 32]]| {
            open_any(cur, prev.iter(), "_oauth2_proxy", &v, 150).map(|(_, old)| old)
        };
        assert_eq!(opened(&[1; 32], &[]), Some(false));
        assert_eq!(opened(&[2; 32], &[[5; 32], [1; 32]]), Some(true));
        assert_eq!(opened(&[2; 32], &[[5; 32]]), None);
    }

    #[test]
    fn seal_open_round_trip() {
        let v = seal(&[1; 32], "_oauth2_proxy", &sample(), [3; 12]).unwrap();
        assert_eq!(open(&[1; 32], "_oauth2_proxy", &v, 150).unwrap(), sample());
    }

    #[test]
    fn expired_tampered_and_renamed_cookies_are_no_session() {
        let v = seal(&[1; 32], "_oauth2_proxy", &sample(), [3; 12]).unwrap();
        assert!(open(&[1; 32], "_oauth2_proxy", &v, 200).is_none());
        assert!(open(&[1; 32], "other", &v, 150).is_none());
        assert!(open(&[2; 32], "_oauth2_proxy", &v, 150).is_none());
        let mut t = v.clone().into_bytes();
        let mid = t.len() / 2;
        t[mid] = if t[mid] == b'A' { b'B' } else { b'A' };
        assert!(open(
            &[1; 32],
            "_oauth2_proxy",
            std::str::from_utf8(&t).unwrap(),
            150
        )
        .is_none());
        assert!(open(&[1; 32], "_oauth2_proxy", &v[..v.len() - 4], 150).is_none());
    }
}
