//! How the session and login-attempt cookies are set: oauth2-proxy's `cookie_*` options.

use super::error::{err, ConfigError};
use super::reader::{is_cookie_name_byte, Reader};

pub(super) const KEYS: &[&str] = &[
    "cookie_name",
    "cookie_secure",
    "cookie_samesite",
    "cookie_domains",
    "cookie_path",
    "cookie_expire",
    "cookie_csrf_expire",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Lax,
    Strict,
    None,
    /// oauth2-proxy's `""`: the attribute is left out and the browser default applies.
    Unset,
}

#[derive(Debug, Clone)]
pub struct CookieSettings {
    pub name: String,
    pub secure: bool,
    pub samesite: SameSite,
    pub domains: Vec<String>,
    pub path: String,
    /// Session lifetime in seconds.
    pub expire: u64,
    /// Lifetime of the login-in-progress (CSRF) cookie in seconds.
    pub csrf_expire: u64,
}

impl CookieSettings {
    pub fn csrf_name(&self) -> String {
        format!("{}_csrf", self.name)
    }

    /// `cookie_csrf_per_request`'s cookie for one login attempt, named from its `state`
    /// so parallel logins in several tabs each find their own.
    pub fn csrf_name_for(&self, state: &str) -> String {
        // Our states are base64url; anything else a client sends must not reach a header.
        let tag: String = state
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .take(16)
            .collect();
        format!("{}_csrf_{tag}", self.name)
    }
}

/// The cookie group's validator.
pub(super) fn parse(r: &Reader) -> Result<CookieSettings, ConfigError> {
    let name = r.string_or("cookie_name", "_oauth2_proxy")?;
    if name.is_empty() || !name.bytes().all(is_cookie_name_byte) {
        return Err(err("cookie_name", "must be a non-empty cookie token"));
    }
    let samesite = match r.string("cookie_samesite")?.as_deref() {
        None | Some("lax") => SameSite::Lax,
        Some("strict") => SameSite::Strict,
        Some("none") => SameSite::None,
        Some("") => SameSite::Unset,
        Some(other) => {
            return Err(err(
                "cookie_samesite",
                format!("`{other}` is not one of `lax`, `strict`, `none`, `\"\"`"),
            ))
        }
    };
    let secure = r.bool("cookie_secure", true)?;
    if samesite == SameSite::None && !secure {
        return Err(err(
            "cookie_samesite",
            "`none` requires `cookie_secure: true`",
        ));
    }
    let cookie = CookieSettings {
        name,
        secure,
        samesite,
        domains: r.string_list("cookie_domains")?.unwrap_or_default(),
        path: r.string_or("cookie_path", "/")?,
        expire: r.duration("cookie_expire", 168 * 3600)?,
        csrf_expire: r.duration("cookie_csrf_expire", 15 * 60)?,
    };
    if cookie
        .domains
        .iter()
        .any(|d| d.is_empty() || d.contains(';'))
    {
        return Err(err(
            "cookie_domains",
            "entries must be non-empty domain names",
        ));
    }
    if !cookie.path.starts_with('/') || cookie.path.contains(';') {
        return Err(err("cookie_path", "must be a path starting with `/`"));
    }
    Ok(cookie)
}
