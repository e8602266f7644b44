//! Refreshing a session whose tokens run out (or when `cookie_refresh` says so): the refresh
//! grant, the new ID token checked like a login's, the outcome shared with every request on
//! the same session (through the slots of `crate::refresh`), and what a request does when
//! another one refreshed for it.

use super::client;
use super::lifecycle::{
    end_session, forwards_id_token, session_expiry, tokens_expire_at, with_tokens, MAX_EARLY_SECS,
};
use super::request::{Env, Incoming};
use super::respond::{internal_error, log_line, pause, refetch_keys, respond_step, unavailable};
use super::upstream::admitted;
use super::vocab::{Admitted, Context, Decision, Outcome, Publish, Step};
use super::waits::{Pending, PendingBox, RefreshCall, Renewal, Settled};
use crate::callout::Callout;
use crate::issuer::MAIN;
use crate::log::Level;
use crate::oidc::{self, IdTokenRules, JwtError, OidcError, TokenResponse};
use crate::providers;
use crate::refresh::{self, Entry, State};
use crate::session::{self, cookie, Session};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::rc::Rc;

impl Renewal {
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

/// Sessions from before ids existed are keyed by their refresh token.
fn session_id(s: &Session) -> String {
    if s.id.is_empty() {
        URL_SAFE_NO_PAD.encode(Sha256::digest(s.refresh_token.as_bytes()))
    } else {
        s.id.clone()
    }
}

/// The refresh to coordinate for the request's session `a`.
pub(super) fn refresh(cx: &mut Context, inc: &mut Incoming, a: &Admitted) -> Step {
    let config = cx.config;
    let req = inc.req;
    let Some(cookie) = cookie::read_joined(&inc.cookies, &config.cookie.name) else {
        return internal_error(config, req, "refresh_without_cookie");
    };
    let Some(provider) = cx.login_issuer() else {
        return pause(Decision::NeedIssuer(MAIN));
    };
    let Ok(endpoint) = oidc::target(&provider.discovery.token_endpoint) else {
        return internal_error(config, req, "bad_token_endpoint");
    };
    let s = &a.session;
    let assertion = client::assertion(cx, inc.env);
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
        since: inc.env.now,
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
) -> Outcome {
    let Some((status, body)) = response else {
        return Outcome::Step(failed(cx, renewal, env, "refresh_unreachable"));
    };
    match oidc::parse_grant_response(status, body) {
        Ok(tokens) => finish(cx, renewal, tokens, false, env),
        // `invalid_grant` (RFC 6749 5.2): the refresh token is expired, revoked or reused,
        // so the session is over. Any other refusal (`invalid_client` after a secret was
        // changed, a 429) says nothing about the session: treated as the IdP failing.
        Err(OidcError::TokenEndpoint { error, .. })
            if error.as_deref() == Some("invalid_grant") =>
        {
            Outcome::Step(ended(cx, renewal, env, "refresh_refused:invalid_grant"))
        }
        Err(e) => Outcome::Step(failed(cx, renewal, env, &format!("refresh_failed: {e}"))),
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
) -> Outcome {
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
            return Outcome::Step(ended(cx, renewal, env, "refresh_without_id_token"));
        }
        (old.clone(), old.id_expires_at)
    } else {
        let Some(provider) = cx.login_issuer() else {
            return Outcome::Step(failed(cx, renewal, env, "provider_not_loaded"));
        };
        let audiences = config.issuers.first().map_or(&[][..], |i| &i.audiences[..]);
        let issuer = config
            .provider
            .get()
            .expected_issuer(&provider.discovery.issuer, &tokens.id_token);
        let rules = IdTokenRules::new(&issuer, audiences, now);
        match oidc::validate_id_token(&tokens.id_token, &provider.jwks, &rules) {
            Ok(v) if old.sub.is_empty() || v.sub == old.sub => {
                let access = client::verified_access_token(cx, &tokens.access_token, now);
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
            Ok(_) => return Outcome::Step(ended(cx, renewal, env, "refresh_sub_changed")),
            Err(JwtError::UnknownKid) if !keys_refreshed => {
                let path = renewal.req.path_only().to_string();
                let wait = Pending::RefreshKeys(Box::new(renewal), tokens);
                return Outcome::Step(refetch_keys(wait, &path));
            }
            Err(e) => {
                let reason = format!("refresh_id_token: {e}");
                return Outcome::Step(ended(cx, renewal, env, &reason));
            }
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
        return Outcome::Step(failed(cx, renewal, env, "random_source_failed"));
    };
    let key = &config.keys.current.session;
    let Some(sealed) = session::seal(key, &config.cookie.name, &fresh, nonce) else {
        return Outcome::Step(failed(cx, renewal, env, "seal_failed"));
    };
    let path = renewal.req.path_only().to_string();
    let email = fresh.email.clone();
    let publish = renewal.publish(State::Done(sealed.clone()), now);
    let log = (
        Level::Info,
        log_line("session_refreshed", &path, &[("email", &email)]),
    );
    adopt(cx, renewal, fresh, sealed, publish, Some(log))
}

/// Caches `fresh` under its own cookie and under the old one (with the new value to set on
/// the response); the request is then decided again with it. A refusal of the refreshed
/// session (the rules no longer admit it) logs instead of `log`.
fn adopt(
    cx: &mut Context,
    renewal: Renewal,
    fresh: Session,
    sealed: String,
    publish: Option<Publish>,
    log: Option<(Level, String)>,
) -> Outcome {
    let config = cx.config;
    cx.sessions
        .insert(&sealed, Rc::new(Admitted::new(config, fresh.clone())));
    let renewed = Admitted {
        renewed: Some(sealed),
        ..Admitted::new(config, fresh)
    };
    cx.sessions.insert(&renewal.cookie, Rc::new(renewed));
    Outcome::DecideAgain {
        req: renewal.req,
        publish,
        log,
    }
}

/// Another request refreshed (or failed to refresh) this session.
pub(super) fn settle(
    cx: &mut Context,
    renewal: Renewal,
    settled: Settled,
    env: &mut Env,
) -> Outcome {
    match settled {
        Settled::Adopt(sealed) => {
            let config = cx.config;
            let key = &config.keys.current.session;
            match session::open(key, &config.cookie.name, &sealed, env.now) {
                Some(fresh) => adopt(cx, renewal, fresh, sealed, None, None),
                None => Outcome::Step(keep_or_unavailable(cx, renewal, env)),
            }
        }
        Settled::Ended => {
            let mut inc = Incoming::new(&renewal.req, env);
            Outcome::Step(end_session(cx, &mut inc, "refresh_refused"))
        }
        Settled::Unavailable => Outcome::Step(keep_or_unavailable(cx, renewal, env)),
    }
}

/// The IdP refused the refresh: the session is over, for this request and (through the
/// published entry) every other one waiting on it.
fn ended(cx: &mut Context, renewal: Renewal, env: &mut Env, reason: &str) -> Step {
    let publish = renewal.publish(State::Ended, env.now);
    let mut inc = Incoming::new(&renewal.req, env);
    let mut step = end_session(cx, &mut inc, reason);
    step.publish = publish;
    step
}

/// The IdP could not be reached: said once for everyone waiting, then as for them.
pub(super) fn failed(cx: &mut Context, renewal: Renewal, env: &mut Env, reason: &str) -> Step {
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
        let a = Admitted::new(cx.config, renewal.session.clone());
        let mut inc = Incoming::new(&renewal.req, env);
        return admitted(cx, &mut inc, &a);
    }
    respond_step(unavailable(&cx.config.pages, 503, Some(&renewal.req)), None)
}
