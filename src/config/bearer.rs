//! Machine clients: oauth2-proxy's `skip_jwt_bearer_tokens`, `extra_jwt_issuers`,
//! `bearer_token_login_fallback` and `oidc_extra_audiences`.

use super::error::{ConfigError, Errors};
use super::model::Issuer;
use super::reader::{check_url, Reader};

pub(super) const KEYS: &[&str] = &[
    "skip_jwt_bearer_tokens",
    "extra_jwt_issuers",
    "bearer_token_login_fallback",
    "oidc_extra_audiences",
];

pub(super) struct Bearer {
    pub skip_jwt_bearer_tokens: bool,
    pub bearer_token_login_fallback: bool,
    pub extra_issuers: Vec<Issuer>,
    /// Audiences accepted besides `client_id` for the login issuer.
    pub extra_audiences: Vec<String>,
}

/// The bearer group's validator.
pub(super) fn parse(r: &Reader) -> Result<Bearer, Vec<ConfigError>> {
    let mut errs = Errors::default();
    let bearer = Bearer {
        skip_jwt_bearer_tokens: errs.or(r.bool("skip_jwt_bearer_tokens", false), false),
        bearer_token_login_fallback: errs.or(r.bool("bearer_token_login_fallback", true), true),
        extra_issuers: errs.or(r.parsed_list("extra_jwt_issuers", extra_issuer), Vec::new()),
        extra_audiences: errs
            .or(r.string_list("oidc_extra_audiences"), None)
            .unwrap_or_default(),
    };
    errs.done(bearer)
}

/// oauth2-proxy's `extra_jwt_issuers` entry: `issuer=audience`.
fn extra_issuer(entry: &str) -> Result<Issuer, String> {
    let (url, audience) = entry
        .rsplit_once('=')
        .filter(|(u, a)| !u.is_empty() && !a.is_empty())
        .ok_or_else(|| format!("`{entry}` is not `issuer=audience`"))?;
    check_url("extra_jwt_issuers", url).map_err(|e| e.problem)?;
    Ok(Issuer {
        url: url.to_string(),
        audiences: vec![audience.to_string()],
    })
}
