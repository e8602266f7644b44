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

/// A refresh happens up to a quarter of the access token's lifetime early, but never more
/// than this many seconds early.
const MAX_EARLY_SECS: u64 = 30;

pub(super) enum Due {
    Fresh,
    /// Refresh before going on.
    Refresh,
    /// The access token expired and there is no refresh token: log in again.
    Ended,
}

pub(super) fn due(config: &Config, s: &Session, now: u64) -> Due {
    // Never due in the second its tokens were obtained: a refresh cannot loop on itself.
    if now <= s.created_at {
        return Due::Fresh;
    }
    let lifetime = s.access_expires_at.saturating_sub(s.created_at);
    let early = (lifetime / 4).min(MAX_EARLY_SECS);
    let access_due = s.access_expires_at > 0 && now.saturating_add(early) >= s.access_expires_at;
    let every = config.lifecycle.cookie_refresh;
    let refresh_due = every > 0 && now >= s.created_at.saturating_add(every);
    if !access_due && !refresh_due {
        Due::Fresh
    } else if !s.refresh_token.is_empty() {
        Due::Refresh
    } else if s.access_expires_at > 0 && now >= s.access_expires_at {
        Due::Ended
    } else {
        Due::Fresh
    }
}

/// `session` holding `tokens` from a login or a refresh at `now`: none of them with
/// `session_cookie_minimal`, which also drops the access token's expiry (no token reaches
/// the app, so none can reach it expired).
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
            ..session
        };
    }
    let access_expires_at = match tokens.expires_in {
        Some(secs) if secs > 0 => now.saturating_add(secs),
        _ => 0,
    };
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
        access_expires_at,
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
    /// The `Busy` entry this refresh wrote to its slot.
    pub(super) claim: Vec<u8>,
}

impl Renewal {
    pub fn weight(&self) -> usize {
        self.req.weight() + self.cookie.len() + self.session.weight()
    }

    fn slot(&self, config: &Config) -> String {
        refresh::slot_key(&config.cookie.name, &session_id(&self.session))
    }

    /// The slot entry saying this refresh failed (`Ended` or `Unavailable`).
    fn outcome(&self, state: State, now: u64) -> Entry {
        Entry {
            session: session_id(&self.session),
            generation: self.session.generation,
            at: now,
            state,
        }
    }

    fn publish(&self, config: &Config, entry: &Entry) -> Option<Publish> {
        Some(Publish {
            key: self.slot(config),
            bytes: entry.encode(),
            claim: self.claim.clone(),
        })
    }
}

/// A refresh to coordinate: claim `slot` (a shared-data key), then make `callout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshCall {
    pub slot: String,
    pub session_id: String,
    pub generation: u64,
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
    let Some(provider) = cx.provider() else {
        return pause(Decision::NeedProvider(MAIN));
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
        claim: Vec::new(),
    };
    pause(Decision::Refresh(Box::new(RefreshCall {
        slot: renewal.slot(config),
        session_id: session_id(s),
        generation: s.generation,
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
    let identity = if tokens.id_token.is_empty() {
        old.clone()
    } else {
        let Some(provider) = cx.provider() else {
            return unavailable(cx, renewal, env, "provider_not_loaded");
        };
        let audiences = config.issuers.first().map_or(&[][..], |i| &i.audiences[..]);
        let issuer = providers::issuer_for(config, &provider.discovery, &tokens.id_token);
        let rules = IdTokenRules::new(&issuer, audiences, now);
        match oidc::validate_id_token(&tokens.id_token, &provider.jwks, &rules) {
            Ok(v) if old.sub.is_empty() || v.sub == old.sub => {
                match providers::refreshed(config, &v, &old.identity()) {
                    Ok(who) => Session {
                        sub: v.sub.clone(),
                        ..old.clone()
                    }
                    .with_identity(who),
                    Err(reason) => return ended(cx, renewal, env, &format!("refresh_{reason}")),
                }
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
            refresh_token: old.refresh_token.clone(),
            generation: old.generation.saturating_add(1),
            created_at: now,
            expires_at: now.saturating_add(config.cookie.expire),
            ..identity
        },
        &tokens,
        now,
    );
    let Some(nonce) = env.bytes::<12>() else {
        return unavailable(cx, renewal, env, "random_source_failed");
    };
    let Some(sealed) = session::seal(&config.session_key, &config.cookie.name, &fresh, nonce)
    else {
        return unavailable(cx, renewal, env, "seal_failed");
    };
    let entry = Entry {
        session: fresh.id.clone(),
        generation: fresh.generation,
        at: now,
        state: State::Done(sealed.clone()),
    };
    let path = renewal.req.path_only().to_string();
    let email = fresh.email.clone();
    let publish = renewal.publish(config, &entry);
    let mut step = adopt(cx, renewal, fresh, sealed, env);
    step.publish = publish;
    step.log = Some((
        Level::Info,
        log_line("session_refreshed", &path, &[("email", &email)]),
    ));
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
            match session::open(&config.session_key, &config.cookie.name, &sealed, env.now) {
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
    let entry = renewal.outcome(State::Ended, env.now);
    let cookies = cookie::parse(renewal.req.all("cookie"));
    let publish = renewal.publish(cx.config, &entry);
    let mut step = end_session(cx, &renewal.req, &cookies, env, reason);
    step.publish = publish;
    step
}

/// The IdP could not be reached: said once for everyone waiting, then as for them.
fn unavailable(cx: &mut Context, renewal: Renewal, env: &mut Env, reason: &str) -> Step {
    let entry = renewal.outcome(State::Unavailable, env.now);
    let publish = renewal.publish(cx.config, &entry);
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
    let s = &renewal.session;
    if s.access_expires_at == 0 || env.now < s.access_expires_at {
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

/// `Set-Cookie` headers storing a renewed session value; `None` if it cannot fit.
pub(super) fn renewed_cookies(
    config: &Config,
    req: &Request,
    cookies: &[(&str, &str)],
    value: &str,
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
        config.cookie.expire,
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
