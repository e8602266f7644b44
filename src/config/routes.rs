//! Which requests the filter answers, lets through or sends to log in: `proxy_prefix`, the
//! health endpoints, `skip_auth_routes` (and the older `skip_auth_regex`), preflight,
//! `api_routes`, `reverse_proxy` and the domains a return URL may name.

use super::error::{err, ConfigError, Errors};
use super::reader::Reader;
use crate::routing::routes::{ApiRoute, SkipRoute};

pub(super) const KEYS: &[&str] = &[
    "proxy_prefix",
    "skip_auth_routes",
    "skip_auth_regex",
    "skip_auth_preflight",
    "skip_auth_strip_headers",
    "api_routes",
    "reverse_proxy",
    "ping_path",
    "ready_path",
    "ping_user_agent",
    "whitelist_domains",
];

pub(super) struct Routes {
    pub proxy_prefix: String,
    pub skip_auth_routes: Vec<SkipRoute>,
    pub skip_auth_preflight: bool,
    pub api_routes: Vec<ApiRoute>,
    pub reverse_proxy: bool,
    pub ping_path: String,
    pub ready_path: String,
    pub ping_user_agent: Option<String>,
    pub whitelist_domains: Vec<String>,
}

/// The routes group's validator.
pub(super) fn parse(r: &Reader) -> Result<Routes, Vec<ConfigError>> {
    let mut errs = Errors::default();
    let proxy_prefix = errs.or(prefix(r), "/oauth2".into());
    // Skipped routes always lose client-sent identity headers; there is no way to turn that
    // off (it would let any client forge an identity on those routes).
    if !errs.or(r.bool("skip_auth_strip_headers", true), true) {
        errs.push(err(
            "skip_auth_strip_headers",
            "only `true` is supported: identity headers are always stripped",
        ));
    }
    // JSON lists only: regexes may hold commas. oauth2-proxy's older `skip_auth_regex`
    // (paths, any method) adds to them.
    let mut skip_auth_routes = errs.or(
        r.parsed_list("skip_auth_routes", SkipRoute::parse),
        Vec::new(),
    );
    skip_auth_routes.extend(errs.or(
        r.parsed_list("skip_auth_regex", SkipRoute::any_method),
        Vec::new(),
    ));
    let routes = Routes {
        proxy_prefix,
        skip_auth_routes,
        skip_auth_preflight: errs.or(r.bool("skip_auth_preflight", false), false),
        api_routes: errs.or(r.parsed_list("api_routes", ApiRoute::parse), Vec::new()),
        reverse_proxy: errs.or(r.bool("reverse_proxy", false), false),
        ping_path: errs.or(r.local_path("ping_path", "/ping"), "/ping".into()),
        ready_path: errs.or(r.local_path("ready_path", "/ready"), "/ready".into()),
        ping_user_agent: errs
            .or(r.string("ping_user_agent"), None)
            .filter(|s| !s.is_empty()),
        whitelist_domains: errs
            .or(r.string_list("whitelist_domains"), None)
            .unwrap_or_default(),
    };
    errs.done(routes)
}

fn prefix(r: &Reader) -> Result<String, ConfigError> {
    let p = r.string_or("proxy_prefix", "/oauth2")?;
    if !p.starts_with('/') || p.ends_with('/') || p.len() < 2 {
        return Err(err(
            "proxy_prefix",
            "must start with `/` and not end with `/`",
        ));
    }
    Ok(p)
}
