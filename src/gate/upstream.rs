//! A request with a valid credential on its way to the app: its identity when the access
//! rules admit the user (through `upstream_token_exchange` when that is on), a 403 when
//! they do not, and a renewed session's cookies on the response either way.

use super::edits::upstream_edits;
use super::exchange;
use super::lifecycle::{renewed_cookies, too_large};
use super::request::Incoming;
use super::respond::{forbidden, pause};
use super::vocab::{Admitted, Context, Decision, Step};
use std::rc::Rc;

pub(super) fn admitted(cx: &mut Context, inc: &mut Incoming, a: &Admitted) -> Step {
    let config = cx.config;
    let req = inc.req;
    let reply = match &a.renewed {
        Some(value) => {
            let until = a.session.expires_at;
            match renewed_cookies(config, req, &inc.cookies, value, until, inc.env.now) {
                Some(r) => r,
                None => return too_large(cx, inc),
            }
        }
        None => Vec::new(),
    };
    if let Err(denied) = a.verdict {
        let mut step = forbidden(config, req, denied, &a.session.email);
        if let Decision::Respond(r) = &mut step.decision {
            r.headers
                .extend(reply.into_iter().map(|c| ("set-cookie".to_string(), c)));
        }
        return step;
    }
    if config.lifecycle.token_exchange.is_some() && !a.session.access_token.is_empty() {
        return exchange::upstream(cx, inc, a, reply);
    }
    pause(upstream_edits(
        config,
        req,
        &a.upstream,
        &inc.cookies,
        &reply,
    ))
}

/// A public route (`skip_auth_routes`): as oauth2-proxy, it still gets the identity of a
/// valid session, if the request carries one the rules admit; otherwise only the stripping.
/// No token exchange here: the user's own tokens are not passed instead.
pub(super) fn public(cx: &mut Context, inc: &mut Incoming, a: Option<&Admitted>) -> Step {
    let config = cx.config;
    let req = inc.req;
    let Some(a) = a else {
        return pause(upstream_edits(config, req, &[], &inc.cookies, &[]));
    };
    let set: Vec<(&'static str, Rc<str>)> = a
        .upstream
        .iter()
        .filter(|(n, _)| config.lifecycle.token_exchange.is_none() || !exchange::carries_token(n))
        .cloned()
        .collect();
    let reply = a.renewed.as_deref().and_then(|value| {
        let until = a.session.expires_at;
        renewed_cookies(config, req, &inc.cookies, value, until, inc.env.now)
    });
    pause(upstream_edits(
        config,
        req,
        &set,
        &inc.cookies,
        &reply.unwrap_or_default(),
    ))
}
