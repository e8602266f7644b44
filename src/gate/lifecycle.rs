//! A session's life after login: a refresh when its access token runs out (or when
//! `cookie_refresh` says so), shared with every other request on the same session, and a
//! clean end when the IdP refuses it.

use super::login::{internal_error, target};
use super::respond::{error_page, json_error, log_line, respond_step};
use super::*;
use crate::oidc::{IdTokenRules, JwtError, OidcError};
use crate::providers;
use crate::refresh::{self, Entry, State};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

/// A refresh happens up to a quarter of the tokens' lifetime early, but never more than
/// this many seconds early.
const MAX_EARLY_SECS: u64 = 30;

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
fn forwards_id_token(config: &Config) -> bool {
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
fn access_expiry(tokens: &TokenResponse, now: u64) -> u64 {
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

/// What a refresh remembers while its callout is out.
#[derive(Debug, Clone)]
pub struct Renewal {
    req: Request,
    /// The session cookie value the request carried.
    cookie: String,
    session: Session,
    /// The slot this refresh claimed, and the `Busy` entry it wrote there.
    pub(super) claim: Option<(String, Vec<u8>)>,
}

impl Renewal {
    pub fn weight(&self) -> usize {
        self.req.weight() + self.cookie.len() + self.session.weight()
    }

    /// The outcome to publish over this refresh's claim, when it made one.
    fn publish(&self, state: State, now: u64) -> Option<Publish> {
        let (key, claim) = self.claim.clone()?;
        let entry = Entry::outcome(&claim, state, now)?;
        Some(Publish {
            key,
            bytes: entry.encode(),
            claim,
        })
    }
}

/// A refresh to coordinate: claim one of `slots` (shared-data keys), then make `callout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshCall {
    pub slots: Vec<String>,
    pub session_id: String,
    pub generation: u64,
    /// When the request found its session due: how long it has waited for a slot.
    pub since: u64,
    pub callout: Callout,
    pub pending: PendingBox,
}

/// How another request's refresh of the same session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// The new session's sealed cookie value.
    Adopt(String),
    Ended,
    Unavailable,
}

/// Sessions from before ids existed are keyed by their refresh token.
fn session_id(s: &Session) -> String {
    if s.id.is_empty() {
        URL_SAFE_NO_PAD.encode(Sha256::digest(s.refresh_token.as_bytes()))
    } else {
        s.id.clone()
    }
}

pub(super) fn refresh(
    cx: &mut Context,
    req: &Request,
    cookies: &[(&str, &str)],
    a: &Admitted,
    env: &mut Env,
) -> Step {
    let config = cx.config;
    let Some(cookie) = cookie::read_joined(cookies, &config.cookie.name) else {
        return internal_error(config, req.path_only(), "refresh_without_cookie");
    };
    let Some(provider) = cx.login_issuer() else {
        return pause(Decision::NeedIssuer(MAIN));
    };
    let Ok(endpoint) = oidc::target(&provider.discovery.token_endpoint) else {
        return internal_error(config, req.path_only(), "bad_token_endpoint");
    };
    let s = &a.session;
    let assertion = client_assertion(cx, env);
    let renewal = Renewal {
        req: req.clone(),
        cookie: cookie.into_owned(),
        session: s.clone(),
        claim: None,
    };
    pause(Decision::Refresh(Box::new(RefreshCall {
        slots: refresh::slot_keys_for(&config.cookie.name, &session_id(s)),
        session_id: session_id(s),
        generation: s.generation,
        since: env.now,
        callout: Callout::post(
            endpoint,
            oidc::refresh_grant(&s.refresh_token, &config.client(assertion.as_deref())),
        ),
        pending: PendingBox(Pending::Refresh(Box::new(renewal))),
    })))
}

/// The token endpoint answered (or not) this request's own refresh.
pub(super) fn on_answer(
    cx: &mut Context,
    renewal: Renewal,
    response: Option<(u16, &[u8])>,
    env: &mut Env,
) -> Step {
    let Some((status, body)) = response else {
        return unavailable(cx, renewal, env, "refresh_unreachable");
    };
    match oidc::parse_grant_response(status, body) {
        Ok(tokens) => finish(cx, renewal, tokens, false, env),
        // `invalid_grant` (RFC 6749 5.2): the refresh token is expired, revoked or reused,
        // so the session is over. Any other refusal (`invalid_client` after a secret was
        // changed, a 429) says nothing about the session: treated as the IdP failing.
        Err(OidcError::TokenEndpoint { error, .. })
            if error.as_deref() == Some("invalid_grant") =>
        {
            ended(cx, renewal, env, "refresh_refused:invalid_grant")
        }
        Err(e) => unavailable(cx, renewal, env, &format!("refresh_failed: {e}")),
    }
}

/// A successful refresh: check the new ID token like the first, apply the access rules to
/// what it says, seal the new session, share it, and decide the request again with it.
pub(super) fn finish(
    cx: &mut Context,
    renewal: Renewal,
    tokens: TokenResponse,
    keys_refreshed: bool,
    env: &mut Env,
) -> Step {
    let config = cx.config;
    let now = env.now;
    let old = &renewal.session;
    let (identity, id_expires_at) = if tokens.id_token.is_empty() {
        // No new ID token: the old one is kept, and so is its expiry. When it would reach
        // the app expired (or about to be), the session ends: a login gets a fresh one.
        let expiring = old.id_expires_at > 0
            && old.id_expires_at <= now.saturating_add(MAX_EARLY_SECS)
            && forwards_id_token(config)
            && !config.lifecycle.session_cookie_minimal;
        if expiring {
            return ended(cx, renewal, env, "refresh_without_id_token");
        }
        (old.clone(), old.id_expires_at)
    } else {
        let Some(provider) = cx.login_issuer() else {
            return unavailable(cx, renewal, env, "provider_not_loaded");
        };
        let audiences = config.issuers.first().map_or(&[][..], |i| &i.audiences[..]);
        let issuer = config
            .provider
            .get()
            .expected_issuer(&provider.discovery.issuer, &tokens.id_token);
        let rules = IdTokenRules::new(&issuer, audiences, now);
        match oidc::validate_id_token(&tokens.id_token, &provider.jwks, &rules) {
            Ok(v) if old.sub.is_empty() || v.sub == old.sub => {
                let access = login::verified_access_token(cx, &tokens.access_token, now);
                let who = providers::refreshed(
                    config.provider.get(),
                    &config.provider_cx(None),
                    &v,
                    access.as_ref(),
                    &old.identity(),
                );
                let s = Session {
                    sub: v.sub.clone(),
                    ..old.clone()
                };
                (s.with_identity(who), v.exp)
            }
            Ok(_) => return ended(cx, renewal, env, "refresh_sub_changed"),
            Err(JwtError::UnknownKid) if !keys_refreshed => {
                let path = renewal.req.path_only().to_string();
                return refetch_keys(Pending::RefreshKeys(Box::new(renewal), tokens), &path);
            }
            Err(e) => return ended(cx, renewal, env, &format!("refresh_id_token: {e}")),
        }
    };
    let fresh = with_tokens(
        config,
        Session {
            id: session_id(old),
            id_token: old.id_token.clone(),
            id_expires_at,
            refresh_token: old.refresh_token.clone(),
            generation: old.generation.saturating_add(1),
            created_at: now,
            // `session_max_lifetime` counts from the login; no refresh moves it.
            expires_at: session_expiry(config, old.login_at, now),
            ..identity
        },
        &tokens,
        now,
    );
    let Some(nonce) = env.bytes::<12>() else {
        return unavailable(cx, renewal, env, "random_source_failed");
    };
    let Some(sealed) = session::seal(
        &config.keys.current.session,
        &config.cookie.name,
        &fresh,
        nonce,
    ) else {
        return unavailable(cx, renewal, env, "seal_failed");
    };
    let path = renewal.req.path_only().to_string();
    let email = fresh.email.clone();
    let publish = renewal.publish(State::Done(sealed.clone()), now);
    let mut step = adopt(cx, renewal, fresh, sealed, env);
    step.publish = publish;
    // A refusal of the refreshed session (the rules no longer admit it) says so instead.
    step.log = step.log.or(Some((
        Level::Info,
        log_line("session_refreshed", &path, &[("email", &email)]),
    )));
    step
}

/// Caches `fresh` under its own cookie and under the old one (with the new value to set on
/// the response), then decides the request again.
fn adopt(
    cx: &mut Context,
    renewal: Renewal,
    fresh: Session,
    sealed: String,
    env: &mut Env,
) -> Step {
    let config = cx.config;
    cx.sessions
        .insert(&sealed, Rc::new(Admitted::new(config, fresh.clone())));
    let renewed = Admitted {
        renewed: Some(sealed),
        ..Admitted::new(config, fresh)
    };
    cx.sessions.insert(&renewal.cookie, Rc::new(renewed));
    decide_request(cx, &renewal.req, env, false)
}

/// Another request refreshed (or failed to refresh) this session.
pub(super) fn settle(cx: &mut Context, renewal: Renewal, settled: Settled, env: &mut Env) -> Step {
    match settled {
        Settled::Adopt(sealed) => {
            let config = cx.config;
            match session::open(
                &config.keys.current.session,
                &config.cookie.name,
                &sealed,
                env.now,
            ) {
                Some(fresh) => adopt(cx, renewal, fresh, sealed, env),
                None => keep_or_unavailable(cx, renewal, env),
            }
        }
        Settled::Ended => {
            let cookies = cookie::parse(renewal.req.all("cookie"));
            end_session(cx, &renewal.req, &cookies, env, "refresh_refused")
        }
        Settled::Unavailable => keep_or_unavailable(cx, renewal, env),
    }
}

/// The IdP refused the refresh: the session is over, for this request and (through the
/// published entry) every other one waiting on it.
fn ended(cx: &mut Context, renewal: Renewal, env: &mut Env, reason: &str) -> Step {
    let cookies = cookie::parse(renewal.req.all("cookie"));
    let publish = renewal.publish(State::Ended, env.now);
    let mut step = end_session(cx, &renewal.req, &cookies, env, reason);
    step.publish = publish;
    step
}

/// The IdP could not be reached: said once for everyone waiting, then as for them.
pub(super) fn unavailable(cx: &mut Context, renewal: Renewal, env: &mut Env, reason: &str) -> Step {
    let publish = renewal.publish(State::Unavailable, env.now);
    let path = renewal.req.path_only().to_string();
    let mut step = keep_or_unavailable(cx, renewal, env);
    step.publish = publish;
    step.log = Some((
        Level::Warn,
        log_line("refresh_failed", &path, &[("reason", reason)]),
    ));
    step
}

/// Without a refresh, the session goes on while its access token is still valid; after
/// that the app would get an expired token, so the answer is a 503.
fn keep_or_unavailable(cx: &mut Context, renewal: Renewal, env: &mut Env) -> Step {
    let expires = tokens_expire_at(cx.config, &renewal.session);
    if expires == 0 || env.now < expires {
        let cookies = cookie::parse(renewal.req.all("cookie"));
        let a = Admitted::new(cx.config, renewal.session.clone());
        return admitted(cx, &renewal.req, &cookies, &a, env);
    }
    respond_step(unavailable_page(&renewal.req), None)
}

fn unavailable_page(req: &Request) -> Response {
    super::unavailable(503, Some(req))
}

/// The session cannot go on: browsers log in again (back to this URL), API clients get a
/// 401; the session's cookies are expired either way.
pub(super) fn end_session(
    cx: &mut Context,
    req: &Request,
    cookies: &[(&str, &str)],
    env: &mut Env,
    reason: &str,
) -> Step {
    let config = cx.config;
    forget_session(cx, cookies);
    let log = Some((
        Level::Info,
        log_line("session_ended", req.path_only(), &[("reason", reason)]),
    ));
    if let Some(step) = login_instead(cx, req, cookies, env) {
        if matches!(step.decision, Decision::Respond(_)) {
            return Step { log, ..step };
        }
        return step;
    }
    let t = target(config, req, env.now);
    let mut r = bearer::challenge(config, json_error(401, "unauthorized"));
    r.headers.extend(
        cookie::clear_all(&config.cookie, &t, cookies, &config.cookie.name)
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
pub(super) fn too_large(
    cx: &mut Context,
    req: &Request,
    cookies: &[(&str, &str)],
    env: &mut Env,
) -> Step {
    let config = cx.config;
    forget_session(cx, cookies);
    let mut r = error_page(
        &config.proxy_prefix,
        500,
        "Your session is too large to be stored in cookies.",
    );
    let t = target(config, req, env.now);
    r.headers.extend(
        cookie::clear_all(&config.cookie, &t, cookies, &config.cookie.name)
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
