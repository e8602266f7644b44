//! The end of a login: the callback's checks (the IdP's error, state against the sealed CSRF
//! cookie), the code exchanged at the token endpoint, the ID token verified (nonce, keys
//! fetched again for an unknown `kid`), the provider's profile calls, and the session sealed
//! into cookies once the rules admit the user. Every failure is an error page that expires
//! the login attempt's cookie, never a session.

use super::client;
use super::lifecycle;
use super::login::csrf_cookie_name;
use super::request::{Env, Incoming};
use super::respond::{
    error_page, log_line, pause, redirect_to, refetch_keys, request_id, respond_step,
};
use super::urls::{redirect_uri, target};
use super::vocab::{Admitted, Context, Decision, Step};
use super::waits::{Callback, Pending, PendingBox, ProfileWait};
use crate::callout::Callout;
use crate::config::Config;
use crate::issuer::MAIN;
use crate::log::Level;
use crate::oidc::{self, IdTokenRules, JwtError, TokenResponse};
use crate::providers::{self, Next, Profile};
use crate::session::cookie::{self, Target};
use crate::session::csrf;
use crate::session::{self, Session};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use std::rc::Rc;

pub(super) fn callback(cx: &mut Context, inc: &mut Incoming) -> Step {
    let config = cx.config;
    let req = inc.req;
    // The attempt's cookie is named from the state with `cookie_csrf_per_request`.
    let csrf_name = csrf_cookie_name(config, &req.query("state").unwrap_or_default());
    let attempt = Attempt {
        target: target(config, req, inc.env.now),
        csrf_cookie: &csrf_name,
        request_id: request_id(req),
    };
    let deny =
        |status: u16, message: &str, reason: &str| fail(config, &attempt, status, message, reason);

    if let Some(error) = req.query("error") {
        let code: String = error
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        return deny(
            403,
            "The identity provider did not complete the login.",
            &format!("idp_error:{code}"),
        );
    }
    let (Some(code), Some(state)) = (req.query("code"), req.query("state")) else {
        return deny(
            400,
            "The login response is incomplete.",
            "missing_code_or_state",
        );
    };
    let Some(csrf_cookie) = inc
        .cookies
        .iter()
        .find(|(n, _)| *n == csrf_name)
        .map(|(_, v)| *v)
    else {
        return deny(
            403,
            "Your login attempt expired or was started elsewhere. Please sign in again.",
            "missing_csrf_cookie",
        );
    };
    let previous = config.keys.previous.iter().map(|k| &k.csrf);
    let login = std::iter::once(&config.keys.current.csrf)
        .chain(previous)
        .find_map(|key| csrf::verify(key, &csrf_name, csrf_cookie, &state, inc.env.now));
    let Some(login) = login else {
        return deny(
            403,
            "Your login attempt expired or was started elsewhere. Please sign in again.",
            "csrf_state_mismatch",
        );
    };
    let Some(provider) = cx.login_issuer() else {
        return pause(Decision::NeedIssuer(MAIN));
    };
    let Ok(endpoint) = oidc::target(&provider.discovery.token_endpoint) else {
        return deny(
            500,
            "The identity provider is misconfigured.",
            "bad_token_endpoint",
        );
    };
    let assertion = client::assertion(cx, inc.env);
    let request = oidc::code_exchange(
        &code,
        &redirect_uri(config, req),
        &login.code_verifier,
        &config.client(assertion.as_deref()),
    );
    let pending = Callback {
        login,
        csrf_cookie: csrf_name.clone(),
        request_id: request_id(req).map(str::to_string),
        host: req.host(config.reverse_proxy).to_string(),
        // Only our session's names: the login sets or clears those and nothing else.
        present: inc
            .cookies
            .iter()
            .filter(|(n, _)| cookie::is_part_of(&config.cookie.name, n))
            .map(|(n, _)| n.to_string())
            .collect(),
    };
    pause(Decision::Call(
        Callout::post(endpoint, request),
        PendingBox(Pending::Token(Box::new(pending))),
    ))
}

impl Callback {
    /// This login's end in an error page (see [`fail`]).
    pub(super) fn fail(
        &self,
        config: &Config,
        now: u64,
        status: u16,
        message: &str,
        reason: &str,
    ) -> Step {
        let attempt = Attempt {
            target: self.target(now),
            csrf_cookie: &self.csrf_cookie,
            request_id: self.request_id.as_deref(),
        };
        fail(config, &attempt, status, message, reason)
    }
}

/// The login attempt a failure ends: where its cookie lives, which cookie, and the callback
/// request's id for the error page.
pub(super) struct Attempt<'a> {
    target: Target<'a>,
    csrf_cookie: &'a str,
    request_id: Option<&'a str>,
}

/// A login that cannot finish: an error page, the login attempt's CSRF cookie expired, and
/// one log line with the reason. Never a session.
pub(super) fn fail(
    config: &Config,
    attempt: &Attempt,
    status: u16,
    message: &str,
    reason: &str,
) -> Step {
    let mut r = error_page(config, attempt.request_id, status, message);
    r.headers.push((
        "set-cookie".into(),
        cookie::clear_cookie(&config.cookie, &attempt.target, attempt.csrf_cookie),
    ));
    respond_step(
        r,
        Some((
            Level::Warn,
            log_line(
                "login_failed",
                &config.callback_path(),
                &[("reason", reason)],
            ),
        )),
    )
}

/// The token endpoint answered a login's code (`None`: it could not be reached).
pub(super) fn on_token(
    cx: &mut Context,
    cb: Callback,
    response: Option<(u16, &[u8])>,
    env: &mut Env,
) -> Step {
    let Some((status, body)) = response else {
        return cb.fail(
            cx.config,
            env.now,
            502,
            "The identity provider could not be reached.",
            "token_endpoint_unreachable",
        );
    };
    // GitHub answers without an ID token; OIDC providers must send one.
    let parsed = if cx.config.provider.get().has_id_token() {
        oidc::parse_token_response(status, body)
    } else {
        oidc::parse_grant_response(status, body)
    };
    match parsed {
        Ok(tokens) => finish_login(cx, cb, tokens, false, env),
        Err(e) => cb.fail(
            cx.config,
            env.now,
            502,
            "The identity provider refused the login.",
            &format!("token_endpoint: {e}"),
        ),
    }
}

pub(super) fn finish_login(
    cx: &mut Context,
    cb: Callback,
    tokens: TokenResponse,
    keys_refreshed: bool,
    env: &mut Env,
) -> Step {
    let config = cx.config;
    let callback_path = config.callback_path();
    let now = env.now;
    let failed =
        |status: u16, message: &str, reason: &str| cb.fail(config, now, status, message, reason);
    let Some(provider) = cx.login_issuer() else {
        return failed(
            503,
            "The identity provider is unavailable.",
            "provider_not_loaded",
        );
    };
    let Some(audiences) = config.issuers.first().map(|i| &i.audiences[..]) else {
        return failed(500, "The login is misconfigured.", "no_issuer");
    };
    let verified = if config.provider.get().has_id_token() {
        let issuer = config
            .provider
            .get()
            .expected_issuer(&provider.discovery.issuer, &tokens.id_token);
        let rules = IdTokenRules {
            nonce: Some(&cb.login.nonce),
            ..IdTokenRules::new(&issuer, audiences, env.now)
        };
        match oidc::validate_id_token(&tokens.id_token, &provider.jwks, &rules) {
            Ok(v) => Some(v),
            Err(JwtError::UnknownKid) if !keys_refreshed => {
                return refetch_keys(Pending::Keys(Box::new(cb), tokens), &callback_path);
            }
            Err(e) => {
                return failed(
                    401,
                    "The identity provider's token could not be verified.",
                    &format!("id_token: {e}"),
                );
            }
        }
    } else {
        None
    };
    let access = client::verified_access_token(cx, &tokens.access_token, now);
    let pcx = config.provider_cx(provider.discovery.userinfo_endpoint.as_deref());
    let next = providers::start(
        config.provider.get(),
        &pcx,
        &tokens.access_token,
        verified.as_ref(),
        access.as_ref(),
    );
    let id_expires_at = verified.as_ref().map_or(0, |v| v.exp);
    profile_step(cx, cb, tokens, id_expires_at, next, env)
}

/// The provider answered one of the profile's calls (`None`: the call failed).
pub(super) fn resume_profile(
    cx: &mut Context,
    w: ProfileWait,
    answer: Option<(u16, &[u8])>,
    env: &mut Env,
) -> Step {
    let Some(provider) = cx.login_issuer() else {
        return w.cb.fail(
            cx.config,
            env.now,
            503,
            "The identity provider is unavailable.",
            "provider_not_loaded",
        );
    };
    let pcx = cx
        .config
        .provider_cx(provider.discovery.userinfo_endpoint.as_deref());
    let next = providers::resume(cx.config.provider.get(), &pcx, w.profile, answer);
    profile_step(cx, w.cb, w.tokens, w.id_expires_at, next, env)
}

fn profile_step(
    cx: &mut Context,
    cb: Callback,
    tokens: TokenResponse,
    id_expires_at: u64,
    next: Next,
    env: &mut Env,
) -> Step {
    let config = cx.config;
    match next {
        Next::Call(callout, profile) => pause(Decision::Call(
            callout,
            PendingBox(Pending::Profile(Box::new(ProfileWait {
                cb,
                tokens,
                id_expires_at,
                profile: *profile,
            }))),
        )),
        Next::Done(profile) => complete_login(cx, cb, tokens, id_expires_at, *profile, env),
        Next::Failed(reason) => cb.fail(
            config,
            env.now,
            502,
            "The identity provider could not confirm who you are. Please try again later.",
            &reason,
        ),
    }
}

/// Who the user is, known: seal the session, set its cookies, back to where the login began.
fn complete_login(
    cx: &mut Context,
    cb: Callback,
    tokens: TokenResponse,
    id_expires_at: u64,
    profile: Profile,
    env: &mut Env,
) -> Step {
    let config = cx.config;
    let callback_path = config.callback_path();
    let now = env.now;
    let failed =
        |status: u16, message: &str, reason: &str| cb.fail(config, now, status, message, reason);
    let Some(id) = env.bytes::<16>() else {
        return failed(
            500,
            "Something went wrong. Please try again.",
            "random_source_failed",
        );
    };
    let who = profile.identity;
    let session = lifecycle::with_tokens(
        config,
        Session {
            id: URL_SAFE_NO_PAD.encode(id),
            sub: profile.sub,
            created_at: now,
            login_at: now,
            expires_at: lifecycle::session_expiry(config, now, now),
            id_expires_at,
            ..Session::default()
        }
        .with_identity(who),
        &tokens,
        now,
    );
    let admitted = Admitted::new(config, session);
    if let Err(denied) = admitted.verdict {
        // Which rule, in words, but never its contents.
        return failed(403, &crate::pages::refusal(denied), denied.reason());
    }
    let Some(nonce) = env.bytes::<12>() else {
        return failed(
            500,
            "Something went wrong. Please try again.",
            "random_source_failed",
        );
    };
    let session = &admitted.session;
    let Some(sealed) = session::seal(
        &config.keys.current.session,
        &config.cookie.name,
        session,
        nonce,
    ) else {
        return failed(
            500,
            "Something went wrong. Please try again.",
            "seal_failed",
        );
    };
    let t = cb.target(now);
    let present: Vec<&str> = cb.present.iter().map(String::as_str).collect();
    let Some(mut set_cookies) = cookie::set_chunked(
        &config.cookie,
        &t,
        &present,
        &config.cookie.name,
        &sealed,
        session.expires_at.saturating_sub(now),
    ) else {
        // Never a redirect loop: a session that cannot be stored is an error page.
        return failed(
            500,
            "Your session is too large to be stored in cookies.",
            "session_too_large",
        );
    };
    set_cookies.push(cookie::clear_cookie(&config.cookie, &t, &cb.csrf_cookie));
    let email = session.email.clone();
    cx.sessions.insert(&sealed, Rc::new(admitted));
    respond_step(
        redirect_to(&cb.login.return_to, set_cookies),
        Some((
            Level::Info,
            log_line("login", &callback_path, &[("email", &email)]),
        )),
    )
}
