//! `/oauth2/sign_out`: expire every session and login-attempt cookie, end the session at
//! the IdP (refresh-token revocation and `backend_logout_url` server-side, then
//! RP-initiated logout through the browser), and land on `rd` when it is allowed.

use super::client;
use super::request::{Env, Incoming, Request};
use super::respond::{log_line, redirect_to, respond_step};
use super::urls::{requested_return, return_to, target};
use super::vocab::{Context, Decision, Step};
use super::waits::{Pending, PendingBox, SignOut};
use crate::callout::Callout;
use crate::log::Level;
use crate::oidc;
use crate::session::{self, cookie, Session};

pub(super) fn sign_out(cx: &mut Context, inc: &mut Incoming) -> Step {
    let config = cx.config;
    let (req, cookies) = (inc.req, &inc.cookies[..]);
    let value = cookie::read_joined(cookies, &config.cookie.name);
    // Expired sessions still name their tokens: the IdP should forget them too.
    let session = value.as_deref().and_then(|v| {
        cx.sessions.remove(v);
        let previous = config.keys.previous.iter().map(|k| &k.session);
        session::open_any(
            &config.keys.current.session,
            previous,
            &config.cookie.name,
            v,
            0,
        )
        .map(|(s, _)| s)
    });
    let t = target(config, req, inc.env.now);
    let mut set_cookies = cookie::clear_all(&config.cookie, &t, cookies, &config.cookie.name);
    let mut csrf: Vec<&str> = cookie::csrf_cookies(&config.cookie, cookies)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let shared = config.cookie.csrf_name();
    csrf.push(&shared);
    csrf.sort_unstable();
    csrf.dedup();
    set_cookies.extend(
        csrf.into_iter()
            .map(|n| cookie::clear_cookie(&config.cookie, &t, n)),
    );

    let rd = requested_return(req);
    let mut location = return_to(config, req, rd.as_deref());
    let mut calls = Vec::new();
    if let Some(s) = &session {
        calls = server_side_calls(cx, s, inc.env);
        if let Some(end) = end_session_url(cx, req, s, rd.is_some().then_some(&location)) {
            location = end;
        }
    }
    let response = redirect_to(&location, set_cookies);
    let log = Some((Level::Info, log_line("sign_out", req.path_only(), &[])));
    let mut calls = calls.into_iter();
    match calls.next() {
        None => respond_step(response, log),
        Some(first) => Step {
            decision: Decision::Call(
                first,
                PendingBox(Pending::SignOut(Box::new(SignOut {
                    calls: calls.collect(),
                    response,
                }))),
            ),
            log,
            publish: None,
        },
    }
}

/// Revoke the refresh token where the IdP has a revocation endpoint, and call
/// `backend_logout_url` with the ID token.
fn server_side_calls(cx: &Context, s: &Session, env: &mut Env) -> Vec<Callout> {
    let config = cx.config;
    let mut calls = Vec::new();
    let revocation = cx
        .login_issuer()
        .and_then(|p| p.discovery.revocation_endpoint.as_deref())
        .and_then(|url| oidc::target(url).ok());
    if let (Some(to), false) = (revocation, s.refresh_token.is_empty()) {
        let assertion = client::assertion(cx, env);
        calls.push(Callout::post(
            to,
            oidc::revocation(&s.refresh_token, &config.client(assertion.as_deref())),
        ));
    }
    let backend = config.lifecycle.backend_logout_url.as_deref();
    if let (Some(url), false) = (backend, s.id_token.is_empty()) {
        let encoded: String = url::form_urlencoded::byte_serialize(s.id_token.as_bytes()).collect();
        if let Ok(to) = oidc::target(&url.replace("{id_token}", &encoded)) {
            calls.push(Callout {
                method: "GET",
                authority: to.authority,
                path: to.path,
                headers: vec![("accept".into(), "*/*".into())],
                body: Vec::new(),
            });
        }
    }
    calls
}

/// RP-initiated logout: the IdP's `end_session_endpoint` with `id_token_hint`,
/// `client_id`, and `post_logout_redirect_uri` when the browser asked for an allowed `rd`.
fn end_session_url(
    cx: &Context,
    req: &Request,
    s: &Session,
    rd: Option<&String>,
) -> Option<String> {
    let config = cx.config;
    if !config.lifecycle.rp_initiated_logout {
        return None;
    }
    let endpoint = cx
        .login_issuer()?
        .discovery
        .end_session_endpoint
        .as_deref()?;
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query.append_pair("client_id", &config.client_id);
    if !s.id_token.is_empty() {
        query.append_pair("id_token_hint", &s.id_token);
    }
    if let Some(rd) = rd {
        // The IdP needs an absolute URL; `return_to` gives paths for this host.
        let absolute = if rd.starts_with('/') {
            format!(
                "{}://{}{rd}",
                req.scheme(config.reverse_proxy),
                req.authority(config.reverse_proxy)
            )
        } else {
            rd.clone()
        };
        query.append_pair("post_logout_redirect_uri", &absolute);
    }
    let sep = if endpoint.contains('?') { '&' } else { '?' };
    Some(format!("{endpoint}{sep}{}", query.finish()))
}

/// One server-side call answered (its outcome only logged: the browser is signed out here
/// whatever the IdP says); the next, or the redirect.
pub(super) fn next(mut s: SignOut, response: Option<(u16, &[u8])>) -> Step {
    let status = response.map_or("none".to_string(), |(code, _)| code.to_string());
    let log = Some((
        Level::Info,
        log_line("sign_out_call", "", &[("status", &status)]),
    ));
    if s.calls.is_empty() {
        return respond_step(s.response, log);
    }
    let call = s.calls.remove(0);
    Step {
        decision: Decision::Call(call, PendingBox(Pending::SignOut(Box::new(s)))),
        log,
        publish: None,
    }
}
