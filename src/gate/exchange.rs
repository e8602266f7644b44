//! `upstream_token_exchange` (ours, RFC 8693): the app gets a token minted for its own
//! audience instead of the user's access token — a session's, or a bearer token itself. One
//! exchange per token and worker, cached by exactly the token that was exchanged until
//! shortly before the new token expires, and at most one exchange call per request.

use super::client;
use super::edits::upstream_edits;
use super::request::{Env, Incoming, Request};
use super::respond::{json_error, log_line, pause, respond_step, unavailable};
use super::vocab::{Admitted, Context, Decision, Exchanged, Step};
use super::waits::{ExchangeWait, Pending, PendingBox};
use crate::callout::Callout;
use crate::config::Config;
use crate::issuer::MAIN;
use crate::log::Level;
use crate::oidc;
use crate::session::cookie;
use std::rc::Rc;

/// An exchanged token, used until this many seconds (at most a quarter of its lifetime)
/// before it expires.
const MAX_EARLY_SECS: u64 = 30;
/// When the IdP does not say how long the token lives.
const DEFAULT_LIFETIME_SECS: u64 = 60;
/// A failed exchange is remembered this long, so a refusing IdP gets one call per session
/// and interval, not one per request.
const RETRY_SECS: u64 = 2;

/// The request on to the app with the exchanged token in place of the user's tokens, or
/// a callout to get one.
pub(super) fn upstream(
    cx: &mut Context,
    inc: &mut Incoming,
    a: &Admitted,
    reply: Vec<String>,
) -> Step {
    let config = cx.config;
    let (req, cookies) = (inc.req, &inc.cookies[..]);
    let subject = &a.session.access_token;
    if let Some(hit) = cx.exchanged.get(subject, inc.env.now) {
        if hit.token.is_empty() {
            return failed(config, req, "failed_moments_ago");
        }
        return pause(with_token(
            config,
            req,
            cookies,
            &a.upstream,
            &hit.token,
            &reply,
        ));
    }
    let (Some(exchange), Some(provider)) = (&config.lifecycle.token_exchange, cx.login_issuer())
    else {
        return pause(Decision::NeedIssuer(MAIN));
    };
    let Ok(endpoint) = oidc::target(&provider.discovery.token_endpoint) else {
        return respond_step(json_error(502, "token_exchange_failed"), None);
    };
    let assertion = client::assertion(cx, inc.env);
    let request = oidc::token_exchange(
        subject,
        &exchange.audience,
        exchange.scope.as_deref(),
        exchange.resource.as_deref(),
        &config.client(assertion.as_deref()),
    );
    let wait = ExchangeWait {
        req: req.clone(),
        subject: subject.clone(),
        identity: a.upstream.clone(),
        reply,
    };
    pause(Decision::Call(
        Callout::post(endpoint, request),
        PendingBox(Pending::Exchange(Box::new(wait))),
    ))
}

/// The request on to the app with `token` in place of the user's own tokens.
fn with_token(
    config: &Config,
    req: &Request,
    cookies: &[(&str, &str)],
    upstream: &[(&'static str, Rc<str>)],
    token: &str,
    reply: &[String],
) -> Decision {
    let identity: Vec<(&'static str, Rc<str>)> = upstream
        .iter()
        .filter(|(n, _)| !carries_token(n))
        .cloned()
        .chain(replacements(config, token))
        .collect();
    upstream_edits(config, req, &identity, cookies, reply)
}

fn failed(config: &Config, req: &Request, reason: &str) -> Step {
    let page = if req.is_browser() {
        unavailable(&config.pages, 502, Some(req))
    } else {
        json_error(502, "token_exchange_failed")
    };
    respond_step(
        page,
        Some((
            Level::Warn,
            log_line(
                "token_exchange_failed",
                req.path_only(),
                &[("reason", reason)],
            ),
        )),
    )
}

/// Headers that carry one of the user's tokens to the app.
pub(super) fn carries_token(name: &str) -> bool {
    matches!(
        name,
        "authorization" | "x-forwarded-access-token" | "x-auth-request-access-token"
    )
}

fn replacements(config: &Config, token: &str) -> Vec<(&'static str, Rc<str>)> {
    let mut out = vec![("authorization", format!("Bearer {token}").into())];
    if config.pass_access_token {
        let token: Rc<str> = token.into();
        out.push(("x-forwarded-access-token", Rc::clone(&token)));
        if config.set_xauthrequest {
            out.push(("x-auth-request-access-token", token));
        }
    }
    out
}

/// The token endpoint answered (or not) this request's exchange: the outcome is cached under
/// the token that was exchanged, and the request goes on (or fails) without another call.
pub(super) fn on_answer(
    cx: &mut Context,
    wait: ExchangeWait,
    response: Option<(u16, &[u8])>,
    env: &mut Env,
) -> Step {
    let tokens = response.map(|(status, body)| oidc::parse_grant_response(status, body));
    let Some(Ok(tokens)) = tokens else {
        let failure = Exchanged {
            token: String::new(),
            use_until: env.now.saturating_add(RETRY_SECS),
        };
        cx.exchanged.insert(&wait.subject, Rc::new(failure));
        let reason = match response {
            None => "unreachable".to_string(),
            Some((status, _)) => format!("status_{status}"),
        };
        return failed(cx.config, &wait.req, &reason);
    };
    let lifetime = tokens
        .expires_in
        .filter(|s| *s > 0)
        .or_else(|| oidc::unverified_exp(&tokens.access_token).map(|e| e.saturating_sub(env.now)))
        .filter(|s| *s > 0)
        .unwrap_or(DEFAULT_LIFETIME_SECS);
    let early = (lifetime / 4).min(MAX_EARLY_SECS);
    cx.exchanged.insert(
        &wait.subject,
        Rc::new(Exchanged {
            token: tokens.access_token.clone(),
            use_until: env.now.saturating_add(lifetime - early),
        }),
    );
    let cookies = cookie::parse(wait.req.all("cookie"));
    pause(with_token(
        cx.config,
        &wait.req,
        &cookies,
        &wait.identity,
        &tokens.access_token,
        &wait.reply,
    ))
}
