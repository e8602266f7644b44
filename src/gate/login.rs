//! The login itself: starting it (authorize redirect with state, nonce and PKCE),
//! the sign-in page, the callback's token exchange and the ID-token checks that end it.

use super::respond::{error_page, html, log_line, redirect_to, respond_step};
use super::*;
use crate::oidc::{self, Discovery, IdTokenRules, JwtError};
use crate::providers::{self, Next, Profile};
use crate::session::cookie::Target;
use crate::session::csrf;
use crate::{pages, routing::redirect, session::pkce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

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

pub(super) fn start_login(
    cx: &mut Context,
    req: &Request,
    cookies: &[(&str, &str)],
    env: &mut Env,
    rd: Option<&str>,
) -> Step {
    let config = cx.config;
    let Some(provider) = cx.login_issuer() else {
        return pause(Decision::NeedIssuer(MAIN));
    };
    let return_to = return_to(config, req, rd);
    let (Some(state), Some(nonce), Some(verifier), Some(seal_nonce)) = (
        env.bytes::<32>(),
        env.bytes::<32>(),
        env.bytes::<32>(),
        env.bytes::<12>(),
    ) else {
        return internal_error(config, req.path_only(), "random_source_failed");
    };
    let login = LoginState {
        state: csrf::token(state),
        nonce: csrf::token(nonce),
        code_verifier: pkce::verifier(verifier),
        return_to,
        expires_at: env.now.saturating_add(config.cookie.csrf_expire),
    };
    let csrf_name = csrf_cookie_name(config, &login.state);
    let Some(sealed) = csrf::seal(&config.keys.current.csrf, &csrf_name, &login, seal_nonce) else {
        return internal_error(config, req.path_only(), "seal_failed");
    };
    let location = authorize_url(config, &provider.discovery, req, &login);
    let t = target(config, req, env.now);
    let mut set_cookies = vec![cookie::set_cookie(
        &config.cookie,
        &t,
        &csrf_name,
        &sealed,
        config.cookie.csrf_expire,
    )];
    if config.lifecycle.csrf_per_request {
        set_cookies.extend(
            oldest_csrf_cookies(config, cookies, env.now)
                .map(|n| cookie::clear_cookie(&config.cookie, &t, n)),
        );
    }
    // A new login ends whatever session the browser holds, valid or not: no session
    // fixation, and no stale cookie riding along on every request.
    if forget_session(cx, cookies) {
        set_cookies.extend(cookie::clear_all(
            &config.cookie,
            &t,
            cookies,
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
fn csrf_cookie_name(config: &Config, state: &str) -> String {
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

pub(super) fn internal_error(config: &Config, path: &str, what: &str) -> Step {
    respond_step(
        error_page(
            &config.proxy_prefix,
            500,
            "Something went wrong. Please try again.",
        ),
        Some((Level::Warn, log_line("error", path, &[("reason", what)]))),
    )
}

pub(super) fn sign_in(
    cx: &mut Context,
    req: &Request,
    cookies: &[(&str, &str)],
    env: &mut Env,
) -> Step {
    let config = cx.config;
    let rd = requested_return(req);
    if config.pages.skip_provider_button {
        return start_login(cx, req, cookies, env, rd.as_deref());
    }
    let safe = return_to(config, req, rd.as_deref());
    let start = format!(
        "{}/start?{}",
        config.proxy_prefix,
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("rd", &safe)
            .finish()
    );
    respond_step(
        html(
            200,
            pages::sign_in(&start, config.provider.get().display_name()),
        ),
        None,
    )
}

pub(super) fn callback(
    cx: &mut Context,
    req: &Request,
    cookies: &[(&str, &str)],
    env: &mut Env,
) -> Step {
    let config = cx.config;
    // The attempt's cookie is named from the state with `cookie_csrf_per_request`.
    let csrf_name = csrf_cookie_name(config, &req.query("state").unwrap_or_default());
    let t = target(config, req, env.now);
    let deny = |status: u16, message: &str, reason: &str| {
        fail(config, &t, &csrf_name, status, message, reason)
    };

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
    let Some(csrf_cookie) = cookies
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
        .find_map(|key| csrf::verify(key, &csrf_name, csrf_cookie, &state, env.now));
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
    let assertion = client_assertion(cx, env);
    let request = oidc::code_exchange(
        &code,
        &redirect_uri(config, req),
        &login.code_verifier,
        &config.client(assertion.as_deref()),
    );
    let pending = Callback {
        login,
        csrf_cookie: csrf_name.clone(),
        host: req.host(config.reverse_proxy).to_string(),
        // Only our session's names: the login sets or clears those and nothing else.
        present: cookies
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
        fail(
            config,
            &self.target(now),
            &self.csrf_cookie,
            status,
            message,
            reason,
        )
    }
}

/// A login that cannot finish: an error page, the login attempt's CSRF cookie expired, and
/// one log line with the reason. Never a session.
pub(super) fn fail(
    config: &Config,
    t: &Target,
    csrf_cookie: &str,
    status: u16,
    message: &str,
    reason: &str,
) -> Step {
    let mut r = error_page(&config.proxy_prefix, status, message);
    r.headers.push((
        "set-cookie".into(),
        cookie::clear_cookie(&config.cookie, t, csrf_cookie),
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
    let access = verified_access_token(cx, &tokens.access_token, now);
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

/// The access token's claims, for `keycloak-oidc` only (oauth2-proxy reads Keycloak's roles
/// from the access token): when it is a JWT the login issuer signed for this client, checked
/// like a bearer token. `None` for any other provider, an opaque token or one that does not
/// verify (its roles then simply do not count).
pub(super) fn verified_access_token(cx: &Context, token: &str, now: u64) -> Option<oidc::Verified> {
    if cx.config.provider.kind != crate::providers::Kind::KeycloakOidc {
        return None;
    }
    let provider = cx.login_issuer()?;
    let audiences = cx.config.issuers.first().map(|i| &i.audiences[..])?;
    let rules = IdTokenRules {
        kind: oidc::Kind::Bearer,
        ..IdTokenRules::new(&provider.discovery.issuer, audiences, now)
    };
    oidc::validate_id_token(token, &provider.jwks, &rules).ok()
}

/// The login waiting for the provider's profile calls (userinfo, the GitHub API, ...).
#[derive(Debug, Clone)]
pub struct ProfileWait {
    cb: Callback,
    tokens: TokenResponse,
    /// The verified ID token's `exp`.
    id_expires_at: u64,
    profile: Profile,
}

impl ProfileWait {
    pub fn weight(&self) -> usize {
        2048 + self.tokens.access_token.len() + self.tokens.id_token.len()
    }
}

/// The provider answered one of the profile's calls (`None`: the call failed).
pub(super) fn resume_profile(
    cx: &mut Context,
    w: ProfileWait,
    answer: Option<(u16, &[u8])>,
    env: &mut Env,
) -> Step {
    let Some(provider) = cx.login_issuer() else {
        let t = w.cb.target(env.now);
        return fail(
            cx.config,
            &t,
            &w.cb.csrf_cookie,
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
    let t = cb.target(env.now);
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
        Next::Failed(reason) => fail(
            config,
            &t,
            &cb.csrf_cookie,
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
        return failed(
            403,
            "You are not allowed to access this application.",
            denied.reason(),
        );
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
