//! Starting a login: the authorize redirect (state, nonce and PKCE bound to a sealed,
//! short-lived CSRF cookie), the sign-in page, and the redirect a browser without a session
//! gets. The callback that ends it is `callback`'s.

use super::request::{Incoming, Request};
use super::respond::{html, internal_error, log_line, pause, redirect_to, respond_step};
use super::sessions;
use super::urls::{redirect_uri, requested_return, return_to, target};
use super::vocab::{Context, Decision, Step};
use crate::config::Config;
use crate::issuer::MAIN;
use crate::log::Level;
use crate::oidc::Discovery;
use crate::pages;
use crate::routing::routes;
use crate::session::csrf::{self, LoginState};
use crate::session::{cookie, pkce};

pub(super) fn start_login(cx: &mut Context, inc: &mut Incoming, rd: Option<&str>) -> Step {
    let config = cx.config;
    let req = inc.req;
    let Some(provider) = cx.login_issuer() else {
        return pause(Decision::NeedIssuer(MAIN));
    };
    let return_to = return_to(config, req, rd);
    let (Some(state), Some(nonce), Some(verifier), Some(seal_nonce)) = (
        inc.env.bytes::<32>(),
        inc.env.bytes::<32>(),
        inc.env.bytes::<32>(),
        inc.env.bytes::<12>(),
    ) else {
        return internal_error(config, req, "random_source_failed");
    };
    let login = LoginState {
        state: csrf::token(state),
        nonce: csrf::token(nonce),
        code_verifier: pkce::verifier(verifier),
        return_to,
        expires_at: inc.env.now.saturating_add(config.cookie.csrf_expire),
    };
    let csrf_name = csrf_cookie_name(config, &login.state);
    let Some(sealed) = csrf::seal(&config.keys.current.csrf, &csrf_name, &login, seal_nonce) else {
        return internal_error(config, req, "seal_failed");
    };
    let location = authorize_url(config, &provider.discovery, req, &login);
    let t = target(config, req, inc.env.now);
    let mut set_cookies = vec![cookie::set_cookie(
        &config.cookie,
        &t,
        &csrf_name,
        &sealed,
        config.cookie.csrf_expire,
    )];
    if config.lifecycle.csrf_per_request {
        set_cookies.extend(
            oldest_csrf_cookies(config, &inc.cookies, inc.env.now)
                .map(|n| cookie::clear_cookie(&config.cookie, &t, n)),
        );
    }
    // A new login ends whatever session the browser holds, valid or not: no session
    // fixation, and no stale cookie riding along on every request.
    if sessions::forget(cx, &inc.cookies) {
        set_cookies.extend(cookie::clear_all(
            &config.cookie,
            &t,
            &inc.cookies,
            &config.cookie.name,
        ));
    }
    respond_step(
        redirect_to(&location, set_cookies),
        Some((
            Level::Info,
            log_line("login_redirect", req.path_only(), &[]),
        )),
    )
}

/// The login attempt's cookie: one shared name, or with `cookie_csrf_per_request` one
/// per attempt, named from its `state`.
pub(super) fn csrf_cookie_name(config: &Config, state: &str) -> String {
    if config.lifecycle.csrf_per_request {
        config.cookie.csrf_name_for(state)
    } else {
        config.cookie.csrf_name()
    }
}

/// Per-request CSRF cookies to expire so that, with the one about to be set, the browser
/// holds at most `cookie_csrf_per_request_limit`: the oldest first, and any we cannot read.
fn oldest_csrf_cookies<'a>(
    config: &Config,
    cookies: &[(&'a str, &'a str)],
    now: u64,
) -> impl Iterator<Item = &'a str> {
    let mut held: Vec<(u64, &str)> = cookie::csrf_cookies(&config.cookie, cookies)
        .into_iter()
        .map(|(name, value)| {
            let expires = csrf::open(&config.keys.current.csrf, name, value)
                .filter(|l| l.expires_at > now)
                .map_or(0, |l| l.expires_at);
            (expires, name)
        })
        .collect();
    held.sort();
    let keep = config.lifecycle.csrf_per_request_limit.saturating_sub(1);
    let excess = held.len().saturating_sub(keep);
    held.into_iter().take(excess).map(|(_, name)| name)
}

pub(super) fn authorize_url(
    config: &Config,
    d: &Discovery,
    req: &Request,
    login: &LoginState,
) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", &config.client_id)
        .append_pair("redirect_uri", &redirect_uri(config, req))
        .append_pair("scope", &config.scope)
        .append_pair("state", &login.state)
        .append_pair("nonce", &login.nonce)
        .append_pair("code_challenge", &pkce::challenge(&login.code_verifier))
        .append_pair("code_challenge_method", "S256")
        .extend_pairs(config.provider.get().authorize_params())
        .finish();
    let sep = if d.authorization_endpoint.contains('?') {
        '&'
    } else {
        '?'
    };
    format!("{}{sep}{query}", d.authorization_endpoint)
}

/// A browser on a page route without a valid session goes to log in, back to the same URL
/// afterwards; `None` for API clients and API routes.
pub(super) fn login_instead(cx: &mut Context, inc: &mut Incoming) -> Option<Step> {
    let config = cx.config;
    let req = inc.req;
    if !req.is_browser() || routes::is_api(&config.api_routes, req.path_only()) {
        return None;
    }
    let rd = if matches!(req.method(), "GET" | "HEAD") {
        req.header("x-auth-request-redirect")
            .unwrap_or_else(|| req.uri(config.reverse_proxy))
    } else {
        "/"
    };
    Some(start_login(cx, inc, Some(rd)))
}

pub(super) fn sign_in(cx: &mut Context, inc: &mut Incoming) -> Step {
    let config = cx.config;
    let req = inc.req;
    let rd = requested_return(req);
    if config.pages.skip_provider_button {
        return start_login(cx, inc, rd.as_deref());
    }
    let safe = return_to(config, req, rd.as_deref());
    let start = format!(
        "{}/start?{}",
        config.proxy_prefix,
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("rd", &safe)
            .finish()
    );
    let name = config.provider.get().display_name();
    let page = pages::sign_in(&config.pages, &start, name);
    respond_step(html(&config.pages, 200, page), None)
}
