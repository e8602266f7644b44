//! What the app (and an `/oauth2/auth` caller) is told of the user: oauth2-proxy's
//! `pass_user_headers`, `set_xauthrequest`, `pass_access_token`, `pass_authorization_header`
//! and `set_authorization_header`.

use super::error::{ConfigError, Errors};
use super::reader::Reader;

pub(super) const KEYS: &[&str] = &[
    "pass_user_headers",
    "set_xauthrequest",
    "pass_access_token",
    "pass_authorization_header",
    "set_authorization_header",
];

pub(super) struct Headers {
    pub pass_user_headers: bool,
    pub set_xauthrequest: bool,
    pub pass_access_token: bool,
    pub pass_authorization_header: bool,
    pub set_authorization_header: bool,
}

/// The headers group's validator.
pub(super) fn parse(r: &Reader) -> Result<Headers, Vec<ConfigError>> {
    let mut errs = Errors::default();
    let mut flag = |key: &str, default: bool| errs.or(r.bool(key, default), default);
    let headers = Headers {
        pass_user_headers: flag("pass_user_headers", true),
        set_xauthrequest: flag("set_xauthrequest", false),
        pass_access_token: flag("pass_access_token", false),
        pass_authorization_header: flag("pass_authorization_header", false),
        set_authorization_header: flag("set_authorization_header", false),
    };
    errs.done(headers)
}
