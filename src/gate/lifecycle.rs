//! A session's clock: when its tokens expire and it is due for a refresh (or over), the
//! tokens a login or refresh puts in it, and its end: cookies expired, a browser sent to log
//! in again. Also the cookies a renewed session is stored in. The refresh itself is
//! `renew`'s.

use super::login::login_instead;
use super::request::{Incoming, Request};
use super::respond::{challenge, error_page, json_error, log_line, request_id, respond_step};
use super::sessions;
use super::urls::target;
use super::vocab::{Context, Decision, Step};
use crate::config::Config;
use crate::log::Level;
use crate::oidc::{self, TokenResponse};
use crate::session::{cookie, Session};

/// A refresh happens up to a quarter of the tokens' lifetime early, but never more than
/// this many seconds early.
pub(super) const MAX_EARLY_SECS: u64 = 30;

/// How long an access token is taken to live when nothing says (no `expires_in`, and not a
/// JWT with an `exp`): a session that cannot refresh it then ends rather than go on
/// forwarding a token that may have expired.
pub const DEFAULT_TOKEN_SECS: u64 = 3600;

pub(super) enum Due {
    Fresh,
    /// Refresh before going on.
    Refresh,
    /// A token the app may receive expired and there is no refresh token: log in again.
    Ended,
}

/// Whether the app may receive the ID token (`Authorization`, or in `/oauth2/auth`
/// answers), so its expiry matters as much as the access token's.
pub(super) fn forwards_id_token(config: &Config) -> bool {
    config.pass_authorization_header || config.set_authorization_header
}

/// When the first of the tokens the app may receive expires; 0 when none is kept.
pub(super) fn tokens_expire_at(config: &Config, s: &Session) -> u64 {
    let id = (forwards_id_token(config) && !s.id_token.is_empty()).then_some(s.id_expires_at);
    match (s.access_expires_at, id.filter(|t| *t > 0)) {
        (0, Some(id)) => id,
        (access, Some(id)) => access.min(id),
        (access, None) => access,
    }
}

/// How long before `expires_at` a session with tokens from `created_at` refreshes.
fn early(created_at: u64, expires_at: u64) -> u64 {
    (expires_at.saturating_sub(created_at) / 4).min(MAX_EARLY_SECS)
}

pub(super) fn due(config: &Config, s: &Session, now: u64) -> Due {
    // Never due in the second its tokens were obtained: a refresh cannot loop on itself.
    if now <= s.created_at {
        return Due::Fresh;
    }
    let expires = tokens_expire_at(config, s);
    let token_due = expires > 0 && now.saturating_add(early(s.created_at, expires)) >= expires;
    let every = config.lifecycle.cookie_refresh;
    let refresh_due = every > 0 && now >= s.created_at.saturating_add(every);
    if !token_due && !refresh_due {
        Due::Fresh
    } else if !s.refresh_token.is_empty() {
        Due::Refresh
    } else if expires > 0 && now >= expires {
        Due::Ended
    } else {
        Due::Fresh
    }
}

/// When an access token obtained at `now` expires: as `expires_in` says, or its own `exp`
/// if that is sooner (or all there is), or [`DEFAULT_TOKEN_SECS`] when neither says.
pub(super) fn access_expiry(tokens: &TokenResponse, now: u64) -> u64 {
    let said = tokens
        .expires_in
        .filter(|s| *s > 0)
        .map(|s| now.saturating_add(s));
    let own = oidc::unverified_exp(&tokens.access_token);
    match (said, own) {
        (Some(said), Some(own)) => said.min(own),
        (Some(t), None) | (None, Some(t)) => t,
        (None, None) => now.saturating_add(DEFAULT_TOKEN_SECS),
    }
}

/// When a session refreshed (or logged in) at `now` expires: `cookie_expire` from now, but
/// never past `session_max_lifetime` from its login.
pub(super) fn session_expiry(config: &Config, login_at: u64, now: u64) -> u64 {
    now.saturating_add(config.cookie.expire)
        .min(login_at.saturating_add(config.lifecycle.session_max_lifetime))
}

/// `session` holding `tokens` from a login or a refresh at `now`: none of them with
/// `session_cookie_minimal`, which also drops the tokens' expiry (no token reaches the app,
/// so none can reach it expired). The ID token's expiry is the caller's to set.
pub(super) fn with_tokens(
    config: &Config,
    session: Session,
    tokens: &TokenResponse,
    now: u64,
) -> Session {
    if config.lifecycle.session_cookie_minimal {
        return Session {
            access_token: String::new(),
            id_token: String::new(),
            refresh_token: String::new(),
            access_expires_at: 0,
            id_expires_at: 0,
            ..session
        };
    }
    Session {
        access_token: tokens.access_token.clone(),
        // A refresh may leave out the ID token or rotate nothing: keep what we had.
        id_token: if tokens.id_token.is_empty() {
            session.id_token.clone()
        } else {
            tokens.id_token.clone()
        },
        refresh_token: tokens
            .refresh_token
            .clone()
            .unwrap_or_else(|| session.refresh_token.clone()),
        access_expires_at: access_expiry(tokens, now),
        ..session
    }
}

/// The session cannot go on: browsers log in again (back to this URL), API clients get a
/// 401; the session's cookies are expired either way.
pub(super) fn end_session(cx: &mut Context, inc: &mut Incoming, reason: &str) -> Step {
    let config = cx.config;
    let req = inc.req;
    sessions::forget(cx, &inc.cookies);
    let log = Some((
        Level::Info,
        log_line("session_ended", req.path_only(), &[("reason", reason)]),
    ));
    if let Some(step) = login_instead(cx, inc) {
        if matches!(step.decision, Decision::Respond(_)) {
            return Step { log, ..step };
        }
        return step;
    }
    let t = target(config, req, inc.env.now);
    let mut r = challenge(config, json_error(401, "unauthorized"));
    r.headers.extend(
        cookie::clear_all(&config.cookie, &t, &inc.cookies, &config.cookie.name)
            .into_iter()
            .map(|c| ("set-cookie".to_string(), c)),
    );
    respond_step(r, log)
}

/// `Set-Cookie` headers storing a renewed session value, kept by the browser until the
/// session's `expires_at`; `None` if it cannot fit.
pub(super) fn renewed_cookies(
    config: &Config,
    req: &Request,
    cookies: &[(&str, &str)],
    value: &str,
    expires_at: u64,
    now: u64,
) -> Option<Vec<String>> {
    let present: Vec<&str> = cookies
        .iter()
        .filter(|(n, _)| cookie::is_part_of(&config.cookie.name, n))
        .map(|(n, _)| *n)
        .collect();
    cookie::set_chunked(
        &config.cookie,
        &target(config, req, now),
        &present,
        &config.cookie.name,
        value,
        expires_at.saturating_sub(now),
    )
}

/// A refreshed session too large for the cookies it may use: an error page and the old
/// session expired, never a redirect loop.
pub(super) fn too_large(cx: &mut Context, inc: &mut Incoming) -> Step {
    let config = cx.config;
    let req = inc.req;
    sessions::forget(cx, &inc.cookies);
    let mut r = error_page(
        config,
        request_id(req),
        500,
        "Your session is too large to be stored in cookies.",
    );
    let t = target(config, req, inc.env.now);
    r.headers.extend(
        cookie::clear_all(&config.cookie, &t, &inc.cookies, &config.cookie.name)
            .into_iter()
            .map(|c| ("set-cookie".to_string(), c)),
    );
    respond_step(
        r,
        Some((
            Level::Warn,
            log_line("error", req.path_only(), &[("reason", "session_too_large")]),
        )),
    )
}
