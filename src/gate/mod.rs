//! The decision engine: given the configuration, a request view, the time, randomness and
//! the caches, say what to do with the request. No I/O happens here; the `filter` adapter
//! carries out the returned [`Decision`] and feeds callout responses back via [`resume`].

mod endpoints;
mod login;
mod request;
mod respond;

pub use request::{Env, Request};

use crate::config::Config;
use crate::cookie;
use crate::csrf::LoginState;
use crate::headers;
use crate::oidc::{self, TokenResponse};
use crate::provider::Provider;
use crate::routes;
use crate::session::{self, Expiring, Session, SessionCache};
use endpoints::{auth, sign_out, userinfo};
use login::{callback, fail, finish_login, sign_in, start_login};
use respond::{json_error, respond_step, text, unauthenticated};
use std::rc::Rc;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// An HTTP request to the identity provider, sent to the `idp_cluster`.
#[derive(Clone, PartialEq, Eq)]
pub struct Callout {
    pub method: &'static str,
    pub authority: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

// The body can carry the authorization code and the client secret.
impl std::fmt::Debug for Callout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Callout({} {}{})",
            self.method, self.authority, self.path
        )
    }
}

/// What the gate needs to remember while a callout is in flight.
#[derive(Debug, Clone)]
pub enum Pending {
    /// Waiting for the token endpoint.
    Token(Box<Callback>),
    /// Token received, signed with a key we did not know: waiting for a fresh JWKS.
    Keys(Box<Callback>, TokenResponse),
}

/// The facts about a callback request that outlive the request headers.
#[derive(Debug, Clone)]
pub struct Callback {
    login: LoginState,
    host: String,
    /// Names of the cookies the browser sent, to expire stale session chunks.
    present: Vec<String>,
}

impl Callback {
    fn target(&self, now: u64) -> cookie::Target<'_> {
        cookie::Target {
            host: &self.host,
            now,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Send the request on to the app after removing and setting these headers.
    Continue {
        remove: Vec<String>,
        set: Vec<(String, String)>,
    },
    /// Answer locally.
    Respond(Response),
    /// Discovery and keys are not loaded yet: wait for them, then decide again.
    NeedProvider,
    /// Call the identity provider, then [`resume`] with the answer.
    Call(Callout, PendingBox),
    /// Fetch the provider's keys again (a token named an unknown `kid`), then [`resume_keys`].
    RefreshKeys(PendingBox),
}

/// `Pending` compared by identity only, so `Decision` can derive `PartialEq` for tests.
#[derive(Debug, Clone)]
pub struct PendingBox(pub Pending);

impl PartialEq for PendingBox {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for PendingBox {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warn,
}

/// A decision and the one structured log line that explains it. Log lines carry event
/// names, paths and user emails, never tokens, cookies or secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub decision: Decision,
    pub log: Option<(Level, String)>,
}

/// Everything a decision reads besides the request.
pub struct Context<'a> {
    pub config: &'a Config,
    pub provider: Option<&'a Provider>,
    pub sessions: &'a mut SessionCache<Admitted>,
}

/// A session as the hot path uses it: opened once, and its headers for the app built once,
/// so a request with a cached session only looks it up and copies the headers out.
#[derive(Debug)]
pub struct Admitted {
    pub session: Session,
    pub upstream: Vec<(&'static str, String)>,
}

impl Admitted {
    pub fn new(config: &Config, session: Session) -> Admitted {
        Admitted {
            upstream: headers::for_upstream(config, &session),
            session,
        }
    }
}

impl Expiring for Admitted {
    fn expires_at(&self) -> u64 {
        self.session.expires_at
    }
}

pub fn decide(cx: &mut Context, req: &Request, env: &mut Env) -> Step {
    let config = cx.config;
    let prefix = config.proxy_prefix.as_str();
    let path = req.path_only();
    let cookies = cookie::parse(req.all("cookie"));

    if path == "/ping" || path == "/ready" {
        return respond_step(text(200, "OK"), None);
    }
    if let Some(endpoint) = path.strip_prefix(prefix).and_then(|p| p.strip_prefix('/')) {
        return match endpoint {
            "start" => start_login(cx, req, &cookies, env, req.query("rd").as_deref()),
            "sign_in" => sign_in(cx, req, &cookies, env),
            "callback" => callback(cx, req, &cookies, env),
            "sign_out" => sign_out(cx, req, &cookies, env),
            "userinfo" => userinfo(cx, req, &cookies, env),
            "auth" => auth(cx, req, &cookies, env),
            _ => respond_step(text(404, "Not Found"), None),
        };
    }

    if routes::skips(
        &config.skip_auth_routes,
        config.skip_auth_preflight,
        req.method(),
        path,
    ) {
        return Step {
            decision: upstream_edits(config, req, &[], &cookies),
            log: None,
        };
    }

    match current_session(cx, &cookies, env.now) {
        // The hot path: no log line (Envoy's access log has the request), no cryptography.
        Some(a) => Step {
            decision: upstream_edits(config, req, &a.upstream, &cookies),
            log: None,
        },
        None if req.is_browser() => {
            let rd = if matches!(req.method(), "GET" | "HEAD") {
                req.path()
            } else {
                "/"
            };
            start_login(cx, req, &cookies, env, Some(rd))
        }
        None => unauthenticated(req, json_error(401, "unauthorized")),
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
        Pending::Token(cb) => {
            let Some((status, body)) = response else {
                return fail(
                    cx.config,
                    &cb.target(env.now),
                    502,
                    "The identity provider could not be reached.",
                    "token_endpoint_unreachable",
                );
            };
            match oidc::parse_token_response(status, body) {
                Ok(tokens) => finish_login(cx, *cb, tokens, false, env),
                Err(e) => fail(
                    cx.config,
                    &cb.target(env.now),
                    502,
                    "The identity provider refused the login.",
                    &format!("token_endpoint: {e}"),
                ),
            }
        }
        Pending::Keys(cb, tokens) => finish_login(cx, *cb, tokens, true, env),
    }
}

/// Continues a login that waited for a JWKS refresh (`cx.provider` now holds the new keys).
pub fn resume_keys(cx: &mut Context, pending: Pending, env: &mut Env) -> Step {
    match pending {
        Pending::Keys(cb, tokens) => finish_login(cx, *cb, tokens, true, env),
        Pending::Token(cb) => fail(
            cx.config,
            &cb.target(env.now),
            500,
            "Unexpected login state.",
            "bad_pending_state",
        ),
    }
}

/// The header edits for a request going to the app: client copies of identity headers
/// removed (whatever their case or count), ours set, and the `Cookie` header rebuilt
/// without our cookies. Other cookies are left byte-for-byte alone unless ours must be cut
/// out of the same header.
/// What goes to the app: client copies of every identity header and our cookies removed,
/// `identity` (the session's headers; none on a skipped route) set.
fn upstream_edits(
    config: &Config,
    req: &Request,
    identity: &[(&'static str, String)],
    cookies: &[(&str, &str)],
) -> Decision {
    let rewrite_cookie = cookies
        .iter()
        .any(|(n, _)| cookie::is_ours(&config.cookie, n));
    let mut set: Vec<(String, String)> = identity
        .iter()
        .map(|(n, v)| (n.to_string(), v.clone()))
        .collect();
    let kept_cookies = if rewrite_cookie {
        cookie::strip_ours(&config.cookie, cookies)
    } else {
        None
    };
    // Setting a header replaces every copy the client sent, so only what is not set again
    // needs removing.
    let mut remove: Vec<String> = req
        .headers
        .iter()
        .filter(|(n, _)| {
            headers::is_owned(n) || (rewrite_cookie && n.eq_ignore_ascii_case("cookie"))
        })
        .map(|(n, _)| n.to_ascii_lowercase())
        .filter(|n| !set.iter().any(|(s, _)| s == n))
        .filter(|n| !(n == "cookie" && kept_cookies.is_some()))
        .collect();
    remove.sort();
    remove.dedup();
    if let Some(rest) = kept_cookies {
        set.push(("cookie".into(), rest));
    }
    Decision::Continue { remove, set }
}

/// The request headers once `remove` and `set` (a `Decision::Continue`) are applied: every
/// copy of a removed or set name is dropped, then each set value is added once.
pub fn edited_headers<'a>(
    headers: &'a [(String, String)],
    remove: &'a [String],
    set: &'a [(String, String)],
) -> Vec<(&'a str, &'a str)> {
    let replaced = |n: &str| {
        remove.iter().any(|r| r.eq_ignore_ascii_case(n))
            || set.iter().any(|(s, _)| s.eq_ignore_ascii_case(n))
    };
    headers
        .iter()
        .filter(|(n, _)| !replaced(n))
        .chain(set.iter())
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect()
}

fn current_session(cx: &mut Context, cookies: &[(&str, &str)], now: u64) -> Option<Rc<Admitted>> {
    let config = cx.config;
    let value = cookie::read_joined(cookies, &config.cookie.name)?;
    if let Some(hit) = cx.sessions.get(&value, now) {
        return Some(hit);
    }
    let s = session::open(&config.session_key, &config.cookie.name, &value, now)?;
    let a = Rc::new(Admitted::new(config, s));
    cx.sessions.insert(value.into_owned(), Rc::clone(&a));
    Some(a)
}

#[cfg(test)]
mod flow_tests;
