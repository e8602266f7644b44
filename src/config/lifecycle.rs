//! Options for a session's life after login: refresh, sign-out, secret rotation and the
//! token handed to the app.

use super::error::{err, ConfigError};
use super::reader::{check_url, Reader};
use serde_json::Value;

/// How many per-request CSRF cookies (`cookie_csrf_per_request`) a browser may hold at
/// once, whatever `cookie_csrf_per_request_limit` asks: each is a cookie on every request.
pub const MAX_CSRF_COOKIES: usize = 16;

/// RFC 8693 exchange of the user's access token for one minted for the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenExchange {
    pub audience: String,
    pub scope: Option<String>,
    pub resource: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Lifecycle {
    /// oauth2-proxy's `cookie_refresh` in seconds; 0 = only when the access token expires.
    pub cookie_refresh: u64,
    /// Ours: a session ends this many seconds after its login, however often it is
    /// refreshed (default `cookie_expire`).
    pub session_max_lifetime: u64,
    pub session_cookie_minimal: bool,
    pub csrf_per_request: bool,
    pub csrf_per_request_limit: usize,
    /// `backend_logout_url`, with `{id_token}` still in it.
    pub backend_logout_url: Option<String>,
    /// Ours: redirect to the IdP's `end_session_endpoint` on sign-out (default on).
    pub rp_initiated_logout: bool,
    pub token_exchange: Option<TokenExchange>,
}

pub(super) const KEYS: &[&str] = &[
    "cookie_refresh",
    "session_max_lifetime",
    "session_cookie_minimal",
    "cookie_csrf_per_request",
    "cookie_csrf_per_request_limit",
    "backend_logout_url",
    "oidc_rp_initiated_logout",
    "upstream_token_exchange",
];

/// The lifecycle group's validator. `cookie_expire`: the cookie group's (`cookie_refresh`
/// must be shorter, and `session_max_lifetime` defaults to it).
pub(super) fn parse(r: &Reader, cookie_expire: u64) -> Result<Lifecycle, ConfigError> {
    let cookie_refresh = r.duration_or_zero("cookie_refresh")?;
    if cookie_refresh > 0 && cookie_refresh >= cookie_expire {
        return Err(err(
            "cookie_refresh",
            "must be shorter than `cookie_expire`",
        ));
    }
    let limit = match r.map.get("cookie_csrf_per_request_limit") {
        None | Some(Value::Null) => MAX_CSRF_COOKIES,
        Some(Value::Number(n)) => match n.as_u64() {
            // oauth2-proxy's 0 means "no limit"; ours has a ceiling.
            Some(0) => MAX_CSRF_COOKIES,
            Some(n) => usize::try_from(n)
                .unwrap_or(usize::MAX)
                .min(MAX_CSRF_COOKIES),
            None => {
                return Err(err(
                    "cookie_csrf_per_request_limit",
                    "must be a whole number",
                ))
            }
        },
        Some(_) => return Err(err("cookie_csrf_per_request_limit", "must be a number")),
    };
    let backend_logout_url = r.string("backend_logout_url")?.filter(|s| !s.is_empty());
    if let Some(u) = &backend_logout_url {
        check_url("backend_logout_url", &u.replace("{id_token}", "x"))?;
    }
    let session_max_lifetime = r.duration("session_max_lifetime", cookie_expire)?;
    Ok(Lifecycle {
        cookie_refresh,
        session_max_lifetime,
        session_cookie_minimal: r.bool("session_cookie_minimal", false)?,
        csrf_per_request: r.bool("cookie_csrf_per_request", false)?,
        csrf_per_request_limit: limit,
        backend_logout_url,
        rp_initiated_logout: r.bool("oidc_rp_initiated_logout", true)?,
        token_exchange: token_exchange(r)?,
    })
}

fn token_exchange(r: &Reader) -> Result<Option<TokenExchange>, ConfigError> {
    let key = "upstream_token_exchange";
    let map = match r.map.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(err(key, "must be an object with `audience`")),
    };
    if let Some(unknown) = map
        .keys()
        .find(|k| !["audience", "scope", "resource"].contains(&k.as_str()))
    {
        return Err(err(key, format!("unknown field `{unknown}`")));
    }
    let field = |name: &str| -> Result<Option<String>, ConfigError> {
        match map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            Some(_) => Err(err(key, format!("`{name}` must be a non-empty string"))),
        }
    };
    let Some(audience) = field("audience")? else {
        return Err(err(key, "`audience` is required"));
    };
    let resource = field("resource")?;
    if let Some(res) = &resource {
        check_url(key, res).map_err(|_| err(key, "`resource` must be an absolute URL"))?;
    }
    Ok(Some(TokenExchange {
        audience,
        scope: field("scope")?,
        resource,
    }))
}
