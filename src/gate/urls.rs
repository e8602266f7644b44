//! The URLs a login, a sign-out and a renewed cookie are built from: where the browser goes
//! afterwards (`rd`, checked by `crate::routing::redirect`), the callback URL the IdP
//! redirects to, and the host cookies are set for.

use super::request::Request;
use crate::config::Config;
use crate::routing::redirect;
use crate::session::cookie::Target;

/// The host the session's cookies are set for, at `now`.
pub(super) fn target<'a>(config: &Config, req: &'a Request, now: u64) -> Target<'a> {
    Target {
        host: req.host(config.reverse_proxy),
        now,
    }
}

/// Where to send the browser afterwards: `rd` when `redirect` allows it, else the root.
pub(super) fn return_to(config: &Config, req: &Request, rd: Option<&str>) -> String {
    let host = req.authority(config.reverse_proxy);
    rd.and_then(|rd| redirect::allowed(rd, host, &config.whitelist_domains))
        .unwrap_or_else(|| "/".to_string())
}

/// The return URL a request to `/oauth2/start`, `/sign_in` or `/sign_out` asks for, as
/// oauth2-proxy reads it: the `rd` parameter, else `X-Auth-Request-Redirect` (set by an
/// nginx in front). Either goes through [`return_to`].
pub(super) fn requested_return(req: &Request) -> Option<String> {
    req.query("rd")
        .or_else(|| req.header("x-auth-request-redirect").map(str::to_string))
}

/// `redirect_url`, or this request's own `/oauth2/callback`.
pub(super) fn redirect_uri(config: &Config, req: &Request) -> String {
    match &config.redirect_url {
        Some(u) => u.clone(),
        None => format!(
            "{}://{}{}",
            req.scheme(config.reverse_proxy),
            req.authority(config.reverse_proxy),
            config.callback_path()
        ),
    }
}
