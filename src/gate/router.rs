//! Where each request goes: health checks, oauth2-proxy's endpoints under `proxy_prefix`,
//! public routes, and everything else by who the request is ([`identify`]: a bearer token,
//! else the session cookie). Also where waiting requests come back in: [`resume`] with a
//! callout's answer, [`settle`] with another request's refresh, [`resume_keys`] after a
//! JWKS fetch.

use super::bearer;
use super::callback::{callback, finish_login, on_token, resume_profile};
use super::endpoints::{auth, userinfo};
use super::exchange;
use super::grpc;
use super::lifecycle::{self, end_session, renewed_cookies, Due};
use super::login::{login_instead, sign_in, start_login};
use super::logout::{self, sign_out};
use super::renew;
use super::request::{Env, Incoming, Request};
use super::respond::{
    bearer_refused, challenge, internal_error, json_error, pause, respond_step, text,
    unauthenticated,
};
use super::sessions;
use super::upstream::{admitted, public};
use super::urls::requested_return;
use super::vocab::{Context, Decision, Outcome, Step, Who};
use super::waits::{Pending, PendingBox, Settled};
use crate::config::Config;
use crate::oidc::JwtError;
use crate::routing::routes;

/// No clock that works reads earlier than 2020-01-01.
const SANE_TIME: u64 = 1_577_836_800;

pub fn decide(cx: &mut Context, req: &Request, env: &mut Env) -> Step {
    decide_request(cx, req, env, false)
}

/// `keys_refreshed`: this request already waited for a fresh JWKS, so an unknown `kid` now
/// means the token is not from its issuer. gRPC clients get errors in gRPC's own form.
fn decide_request(cx: &mut Context, req: &Request, env: &mut Env, keys_refreshed: bool) -> Step {
    let mut inc = Incoming::new(req, env);
    let step = decide_http(cx, &mut inc, keys_refreshed);
    if matches!(step.decision, Decision::Respond(_)) && req.is_grpc() {
        grpc::answer(step)
    } else {
        step
    }
}

fn decide_http(cx: &mut Context, inc: &mut Incoming, keys_refreshed: bool) -> Step {
    let config = cx.config;
    let req = inc.req;
    // What a failed host call looks like, should an adapter ever pass it on: a clock at 0
    // would make every session unexpired, an empty header map an anonymous `GET /`.
    if inc.env.now < SANE_TIME || req.header(":method").is_none() || req.header(":path").is_none() {
        return internal_error(config, req, "host_failure");
    }
    let path = req.path_only();
    if path == config.ping_path || path == config.ready_path || is_ping_agent(config, req) {
        return respond_step(text(200, "OK"), None);
    }
    let endpoint = path
        .strip_prefix(config.proxy_prefix.as_str())
        .and_then(|p| p.strip_prefix('/'));
    if let Some(endpoint) = endpoint {
        return match endpoint {
            "start" => start_login(cx, inc, requested_return(req).as_deref()),
            "sign_in" => sign_in(cx, inc),
            "callback" => callback(cx, inc),
            "sign_out" => sign_out(cx, inc),
            "userinfo" | "auth" => informational(cx, inc, endpoint, keys_refreshed),
            _ => respond_step(text(404, "Not Found"), None),
        };
    }
    let skipped = routes::skips(
        &config.skip_auth_routes,
        config.skip_auth_preflight,
        req.method(),
        req.path(),
    );
    if skipped {
        // A session due for a refresh is not refreshed for a public route.
        cx.metrics.skipped_route += 1;
        let now = inc.env.now;
        let identity = sessions::current(cx, inc).filter(|a| {
            a.verdict.is_ok() && matches!(lifecycle::due(config, &a.session, now), Due::Fresh)
        });
        return public(cx, inc, identity.as_deref());
    }

    match identify(cx, inc, keys_refreshed) {
        // The hot path: no log line (Envoy's access log has the request), no cryptography.
        Who::Known(a) => admitted(cx, inc, &a),
        Who::Pause(step) => *step,
        Who::Nobody(bad) if bad.is_none() || config.bearer_token_login_fallback => {
            if let Some(step) = login_instead(cx, inc) {
                return step;
            }
            match bad {
                Some(e) => bearer_refused(req, e),
                None => unauthenticated(req, challenge(config, json_error(401, "unauthorized"))),
            }
        }
        Who::Nobody(bad) => bearer_refused(req, bad.unwrap_or(JwtError::Malformed)),
    }
}

/// `/oauth2/userinfo` and `/oauth2/auth`, with a refreshed session's new cookie for
/// `auth_request_set` / the browser.
fn informational(cx: &mut Context, inc: &mut Incoming, endpoint: &str, keys: bool) -> Step {
    let config = cx.config;
    let req = inc.req;
    let who = identify(cx, inc, keys);
    let renewed = match &who {
        Who::Known(a) => a.renewed.clone().map(|v| (v, a.session.expires_at)),
        _ => None,
    };
    let mut step = if endpoint == "auth" {
        auth(config, req, who)
    } else {
        userinfo(config, req, who)
    };
    if let (Some((value, until)), Decision::Respond(r)) = (renewed, &mut step.decision) {
        let set = renewed_cookies(config, req, &inc.cookies, &value, until, inc.env.now);
        r.headers.extend(
            set.unwrap_or_default()
                .into_iter()
                .map(|c| ("set-cookie".to_string(), c)),
        );
    }
    step
}

/// Who the request is: a bearer token (when `skip_jwt_bearer_tokens` is on) or else the
/// session cookie, refreshed or ended when it is due.
fn identify(cx: &mut Context, inc: &mut Incoming, keys_refreshed: bool) -> Who {
    let now = inc.env.now;
    let req = inc.req;
    let mut refused = None;
    let bearer = req
        .bearer_token()
        .filter(|_| cx.config.skip_jwt_bearer_tokens);
    if let Some(token) = bearer {
        match bearer::verify(cx, token, now, keys_refreshed) {
            bearer::Outcome::Admitted(a) => {
                cx.metrics.bearer_accepted += 1;
                return Who::Known(a);
            }
            bearer::Outcome::NeedIssuer(issuer) => {
                return Who::Pause(Box::new(pause(Decision::NeedIssuer(issuer))));
            }
            bearer::Outcome::NeedKeys(issuer) => {
                let pending = PendingBox(Pending::Bearer(Box::new(req.clone())));
                return Who::Pause(Box::new(pause(Decision::NeedKeys(issuer, pending))));
            }
            // With `bearer_token_login_fallback` (the default) a session cookie still counts.
            bearer::Outcome::Invalid(e) if cx.config.bearer_token_login_fallback => {
                refused = Some(e);
            }
            bearer::Outcome::Invalid(e) => return Who::Nobody(Some(e)),
        }
    }
    let Some(a) = sessions::current(cx, inc) else {
        return Who::Nobody(refused);
    };
    cx.metrics.session_accepted += 1;
    match lifecycle::due(cx.config, &a.session, now) {
        Due::Fresh => Who::Known(a),
        Due::Refresh => Who::Pause(Box::new(renew::refresh(cx, inc, &a))),
        Due::Ended => Who::Pause(Box::new(end_session(cx, inc, "access_token_expired"))),
    }
}

/// oauth2-proxy's `ping_user_agent`: health checkers that cannot choose a path.
fn is_ping_agent(config: &Config, req: &Request) -> bool {
    config
        .ping_user_agent
        .as_deref()
        .is_some_and(|ua| req.header("user-agent") == Some(ua))
}

/// A waiting request's outcome as a step: a renewed session decides its request again,
/// sharing the refresh's outcome and saying it refreshed unless the new decision says more.
fn carry_out(cx: &mut Context, outcome: Outcome, env: &mut Env) -> Step {
    match outcome {
        Outcome::Step(step) => step,
        Outcome::DecideAgain { req, publish, log } => {
            let mut step = decide_request(cx, &req, env, false);
            step.publish = publish;
            step.log = step.log.or(log);
            step
        }
    }
}

/// Continues a request after the identity provider answered `pending`'s callout.
/// `response` is `None` when the callout failed (timeout, reset, no route).
pub fn resume(
    cx: &mut Context,
    pending: Pending,
    response: Option<(u16, &[u8])>,
    env: &mut Env,
) -> Step {
    match pending {
        Pending::Token(cb) => on_token(cx, *cb, response, env),
        Pending::Keys(cb, tokens) => finish_login(cx, *cb, tokens, true, env),
        Pending::Bearer(req) => decide_request(cx, &req, env, true),
        Pending::Refresh(renewal) => {
            let outcome = renew::on_answer(cx, *renewal, response, env);
            carry_out(cx, outcome, env)
        }
        Pending::RefreshKeys(renewal, tokens) => {
            let outcome = renew::finish(cx, *renewal, tokens, true, env);
            carry_out(cx, outcome, env)
        }
        Pending::Exchange(w) => exchange::on_answer(cx, *w, response, env),
        Pending::SignOut(s) => logout::next(*s, response),
        Pending::Profile(w) => resume_profile(cx, *w, response, env),
    }
}

/// Continues a request whose session was due for a refresh that another request (on this
/// worker or another) settled: see [`crate::refresh::plan`].
pub fn settle(cx: &mut Context, pending: Pending, settled: Settled, env: &mut Env) -> Step {
    match pending {
        Pending::Refresh(renewal) => {
            let outcome = renew::settle(cx, *renewal, settled, env);
            carry_out(cx, outcome, env)
        }
        other => resume(cx, other, None, env),
    }
}

/// Continues a login, refresh or bearer request that waited for a JWKS refresh:
/// `cx.issuers` now holds the new keys (`fetched`), or the old ones when the fetch failed,
/// in which case a login or refresh is told the IdP is unavailable rather than that its
/// token is bad (a bearer token is judged with the keys there are).
pub fn resume_keys(cx: &mut Context, pending: Pending, fetched: bool, env: &mut Env) -> Step {
    match pending {
        Pending::Keys(cb, _) if !fetched => cb.fail(
            cx.config,
            env.now,
            503,
            "The identity provider is unavailable.",
            "keys_unavailable",
        ),
        Pending::Keys(cb, tokens) => finish_login(cx, *cb, tokens, true, env),
        Pending::Bearer(req) => decide_request(cx, &req, env, true),
        Pending::RefreshKeys(renewal, _) if !fetched => {
            renew::failed(cx, *renewal, env, "keys_unavailable")
        }
        Pending::RefreshKeys(renewal, tokens) => {
            let outcome = renew::finish(cx, *renewal, tokens, true, env);
            carry_out(cx, outcome, env)
        }
        other => resume(cx, other, None, env),
    }
}
