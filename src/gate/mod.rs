//! The decision engine: given the configuration, a request view, the time, randomness and
//! the caches, say what to do with the request. No I/O happens here; the `filter` adapter
//! carries out the returned [`Decision`] and feeds callout responses back via [`resume`].

mod bearer;
mod endpoints;
mod exchange;
mod grpc;
mod lifecycle;
mod login;
mod logout;
mod request;
mod respond;

/// Re-exported: the gate's callouts are [`Decision::Call`]'s; the type lives apart so the
/// providers and the loader need not depend on the gate.
pub use crate::callout::Callout;
pub use exchange::{ExchangeWait, Exchanged};
pub use lifecycle::{RefreshCall, Renewal, Settled};
pub use login::ProfileWait;
pub use logout::SignOut;
pub use request::{Env, Request};

use crate::cache::{Cache, Cached};
use crate::config::Config;
use crate::issuer::{Issuers, Metadata, MAIN};
use crate::metrics::Metrics;
use crate::oidc::{self, TokenResponse};
use crate::policy::{self, Denied};
use crate::routing::headers;
use crate::routing::routes;
use crate::session::cookie;
use crate::session::csrf::LoginState;
use crate::session::{self, Session};
use endpoints::{auth, userinfo};
use lifecycle::Due;
use login::{callback, fail, finish_login, resume_profile, sign_in, start_login};
use logout::sign_out;
use respond::{forbidden, json_error, respond_step, text, unauthenticated};
use std::rc::Rc;

/// Bounds of the per-VM caches (each Envoy worker has its own VM): opened sessions and
/// verified bearer tokens. A chunked session with 150 groups weighs about 40 KB here.
pub const SESSION_CACHE_ENTRIES: usize = 1024;
pub const SESSION_CACHE_BYTES: usize = 8 << 20;
pub const BEARER_CACHE_ENTRIES: usize = 1024;
pub const BEARER_CACHE_BYTES: usize = 4 << 20;
/// Tokens from `upstream_token_exchange`, by the access token they were exchanged for.
pub const EXCHANGE_CACHE_ENTRIES: usize = 1024;
pub const EXCHANGE_CACHE_BYTES: usize = 4 << 20;

/// No clock that works reads earlier than 2020-01-01.
const SANE_TIME: u64 = 1_577_836_800;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// What the gate needs to remember while a callout is in flight.
#[derive(Debug, Clone)]
pub enum Pending {
    /// Waiting for the token endpoint.
    Token(Box<Callback>),
    /// Token received, signed with a key we did not know: waiting for a fresh JWKS.
    Keys(Box<Callback>, TokenResponse),
    /// A bearer token signed with a key we did not know: decide again with fresh keys.
    Bearer(Box<Request>),
    /// Waiting for the token endpoint's answer to a refresh, or (with the answer) for
    /// fresh keys to check its ID token.
    Refresh(Box<Renewal>),
    RefreshKeys(Box<Renewal>, TokenResponse),
    /// Waiting for `upstream_token_exchange`'s token for the request.
    Exchange(Box<ExchangeWait>),
    /// Sign-out's server-side calls (revocation, `backend_logout_url`), one at a time.
    SignOut(Box<SignOut>),
    /// A login waiting for one of the provider's profile calls (see `crate::providers`).
    Profile(Box<ProfileWait>),
}

impl Pending {
    /// What the callout this waits for is for, as metrics name it.
    pub fn target(&self) -> &'static str {
        match self {
            Pending::Token(_) | Pending::Keys(..) => "token",
            Pending::Refresh(_) | Pending::RefreshKeys(..) => "refresh",
            Pending::Exchange(_) => "token_exchange",
            Pending::SignOut(_) => "sign_out",
            Pending::Profile(_) => "profile",
            Pending::Bearer(_) => "keys",
        }
    }

    /// Whether this waits with an ID token the token endpoint sent (a login's or a refresh's),
    /// as opposed to a token a client presented.
    pub fn from_token_endpoint(&self) -> bool {
        matches!(self, Pending::Keys(..) | Pending::RefreshKeys(..))
    }

    /// Whether the outcome matters after the request went away: a refresh the IdP may have
    /// answered by rotating the refresh token must still be shared with the others.
    pub fn outlives_request(&self) -> bool {
        matches!(self, Pending::Refresh(_) | Pending::RefreshKeys(..))
    }

    /// Records the slot a refresh claimed and the entry it wrote there, so its outcome is
    /// published only over it.
    pub fn set_claim(&mut self, key: String, claim: Vec<u8>) {
        if let Pending::Refresh(r) = self {
            r.claim = Some((key, claim));
        }
    }

    /// Bytes held, for bounding what waits while keys are fetched.
    pub fn weight(&self) -> usize {
        match self {
            Pending::Token(_) => 1024,
            Pending::Keys(_, t) => {
                1024 + t.access_token.len()
                    + t.id_token.len()
                    + t.refresh_token.as_ref().map_or(0, String::len)
            }
            Pending::Bearer(req) => req.weight(),
            Pending::Exchange(w) => w.weight(),
            Pending::Refresh(r) => r.weight(),
            Pending::RefreshKeys(r, t) => r.weight() + t.access_token.len() + t.id_token.len(),
            Pending::SignOut(s) => s.weight(),
            Pending::Profile(w) => w.weight(),
        }
    }
}

/// The facts about a callback request that outlive the request headers.
#[derive(Debug, Clone)]
pub struct Callback {
    login: LoginState,
    /// The login attempt's cookie, to expire once the login ends either way.
    csrf_cookie: String,
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
    /// Send the request on to the app after removing and setting these headers, and add
    /// `reply` as `Set-Cookie` headers to the app's response (a refreshed or re-sealed
    /// session).
    Continue {
        remove: Vec<String>,
        set: Vec<(String, String)>,
        reply: Vec<String>,
    },
    /// Answer locally.
    Respond(Response),
    /// This issuer's discovery and keys are not loaded yet: wait for them, then decide again.
    NeedIssuer(usize),
    /// Call the identity provider, then [`resume`] with the answer.
    Call(Callout, PendingBox),
    /// Fetch this issuer's keys again (a token named an unknown `kid`), then [`resume_keys`].
    RefreshKeys(usize, PendingBox),
    /// The session is due for a refresh: coordinate through its shared-data slot (see
    /// [`crate::refresh`]), then either make the callout and [`resume`], or [`settle`].
    Refresh(Box<RefreshCall>),
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
    /// A refresh's outcome, for the requests waiting on the same session.
    pub publish: Option<Publish>,
}

/// Write `bytes` to the shared-data `key` if it still holds `claim` (see
/// [`crate::refresh::still_claimed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub key: String,
    pub bytes: Vec<u8>,
    pub claim: Vec<u8>,
}

/// Everything a decision reads besides the request.
pub struct Context<'a> {
    pub config: &'a Config,
    pub issuers: &'a Issuers,
    pub sessions: &'a mut Cache<Admitted>,
    pub bearers: &'a mut Cache<Admitted>,
    pub exchanged: &'a mut Cache<Exchanged>,
    /// The hot path's counts (log lines are counted by whoever writes them out).
    pub metrics: &'a mut Metrics,
}

impl<'a> Context<'a> {
    /// The login issuer's metadata, when loaded.
    fn login_issuer(&self) -> Option<&'a Metadata> {
        self.issuers.get(MAIN)
    }
}

/// A session (from a cookie or a bearer token) as the hot path uses it: opened or verified
/// once, its headers for the app built once and the access rules applied once, so a
/// request with a cached credential only looks it up and copies the headers out.
#[derive(Debug)]
pub struct Admitted {
    pub session: Session,
    pub upstream: Vec<(&'static str, String)>,
    pub verdict: Result<(), Denied>,
    /// The cookie value that replaces the one the request carried (after a refresh, or a
    /// re-seal with the current `cookie_secret`), to be set on the response.
    pub renewed: Option<String>,
}

impl Admitted {
    pub fn new(config: &Config, session: Session) -> Admitted {
        Admitted {
            upstream: headers::for_upstream(config, &session),
            verdict: policy::admit(&config.rules, &session),
            session,
            renewed: None,
        }
    }
}

impl Cached for Admitted {
    fn expires_at(&self) -> u64 {
        self.session.expires_at
    }

    fn weight(&self) -> usize {
        let headers: usize = self.upstream.iter().map(|(_, v)| v.len() + 40).sum();
        self.session.weight() + headers + self.renewed.as_ref().map_or(0, String::len)
    }
}

/// A session of what a verified bearer token says about its user, read as the provider
/// reads a login's token; its tokens are the caller's to fill in.
fn session_from(config: &Config, verified: &oidc::Verified, now: u64, expires_at: u64) -> Session {
    Session {
        created_at: now,
        login_at: now,
        expires_at,
        sub: verified.sub.clone(),
        ..Session::default()
    }
    .with_identity(crate::providers::bearer_identity(
        config.provider.get(),
        &config.provider_cx(None),
        verified,
    ))
}

/// The signed client assertion for a call to the IdP with `private_key_jwt` (RFC 7523): made
/// out to the issuer (the audience the RFC 7523 revision recommends, which no other endpoint
/// of the IdP can be tricked into accepting), fresh `jti`, one minute of validity. `None` with
/// any other client authentication, or when no randomness could be had.
fn client_assertion(cx: &Context, env: &mut Env) -> Option<String> {
    let key = cx.config.client_key.as_ref()?;
    let issuer = cx.login_issuer()?.discovery.issuer.clone();
    let jti = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        env.bytes::<16>()?,
    );
    key.assertion(&cx.config.client_id, &issuer, env.now, &jti)
}

/// The answer when the filter cannot decide at all (the IdP unreachable, a host failure), in
/// the request's own protocol when the request is known.
pub fn unavailable(status: u16, req: Option<&Request>) -> Response {
    let message = "The login service is temporarily unavailable. Please try again shortly.";
    let page = respond::html(status, crate::pages::error(status, message, "/"));
    match req {
        Some(r) if grpc::is_grpc(r) => grpc::response(page),
        _ => page,
    }
}

pub fn decide(cx: &mut Context, req: &Request, env: &mut Env) -> Step {
    decide_request(cx, req, env, false)
}

/// `keys_refreshed`: this request already waited for a fresh JWKS, so an unknown `kid` now
/// means the token is not from its issuer. gRPC clients get errors in gRPC's own form.
fn decide_request(cx: &mut Context, req: &Request, env: &mut Env, keys_refreshed: bool) -> Step {
    let step = decide_http(cx, req, env, keys_refreshed);
    if matches!(step.decision, Decision::Respond(_)) && grpc::is_grpc(req) {
        grpc::answer(step)
    } else {
        step
    }
}

fn decide_http(cx: &mut Context, req: &Request, env: &mut Env, keys_refreshed: bool) -> Step {
    let config = cx.config;
    // What a failed host call looks like, should an adapter ever pass it on: a clock at 0
    // would make every session unexpired, an empty header map an anonymous `GET /`.
    if env.now < SANE_TIME || req.header(":method").is_none() || req.header(":path").is_none() {
        return login::internal_error(config, req.path_only(), "host_failure");
    }
    let prefix = config.proxy_prefix.as_str();
    let path = req.path_only();
    let cookies = cookie::parse(req.all("cookie"));

    if path == config.ping_path || path == config.ready_path || is_ping_agent(config, req) {
        return respond_step(text(200, "OK"), None);
    }
    if let Some(endpoint) = path.strip_prefix(prefix).and_then(|p| p.strip_prefix('/')) {
        let rd = login::requested_return(req);
        return match endpoint {
            "start" => start_login(cx, req, &cookies, env, rd.as_deref()),
            "sign_in" => sign_in(cx, req, &cookies, env),
            "callback" => callback(cx, req, &cookies, env),
            "sign_out" => sign_out(cx, req, &cookies, env),
            "userinfo" | "auth" => {
                let who = identify(cx, req, &cookies, env, keys_refreshed);
                let renewed = match &who {
                    Who::Known(a) => a.renewed.clone().map(|v| (v, a.session.expires_at)),
                    _ => None,
                };
                let mut step = if endpoint == "auth" {
                    auth(config, req, who)
                } else {
                    userinfo(config, req, who)
                };
                // A refreshed session's new cookie, for `auth_request_set` / the browser.
                if let (Some((value, until)), Decision::Respond(r)) = (renewed, &mut step.decision)
                {
                    let set =
                        lifecycle::renewed_cookies(config, req, &cookies, &value, until, env.now);
                    r.headers.extend(
                        set.unwrap_or_default()
                            .into_iter()
                            .map(|c| ("set-cookie".to_string(), c)),
                    );
                }
                step
            }
            _ => respond_step(text(404, "Not Found"), None),
        };
    }

    if routes::skips(
        &config.skip_auth_routes,
        config.skip_auth_preflight,
        req.method(),
        req.path(),
    ) {
        // As oauth2-proxy: a skipped route still gets the identity of a valid session, if
        // the request carries one and the rules admit it; otherwise only the stripping.
        // A session due for a refresh is not refreshed for a public route.
        cx.metrics.skipped_route += 1;
        let identity = current_session(cx, &cookies, env).filter(|a| {
            a.verdict.is_ok() && matches!(lifecycle::due(config, &a.session, env.now), Due::Fresh)
        });
        let Some(a) = identity else {
            return pause(upstream_edits(config, req, &[], &cookies, &[]));
        };
        // No token exchange for a public route: the user's own tokens are not passed instead.
        let set: Vec<(&'static str, String)> = a
            .upstream
            .iter()
            .filter(|(n, _)| {
                config.lifecycle.token_exchange.is_none() || !exchange::carries_token(n)
            })
            .cloned()
            .collect();
        let reply = a.renewed.as_deref().and_then(|value| {
            let until = a.session.expires_at;
            lifecycle::renewed_cookies(config, req, &cookies, value, until, env.now)
        });
        return pause(upstream_edits(
            config,
            req,
            &set,
            &cookies,
            &reply.unwrap_or_default(),
        ));
    }

    match identify(cx, req, &cookies, env, keys_refreshed) {
        // The hot path: no log line (Envoy's access log has the request), no cryptography.
        Who::Known(a) => admitted(cx, req, &cookies, &a, env),
        Who::Pause(step) => *step,
        Who::Nobody(bad) if bad.is_none() || config.bearer_token_login_fallback => {
            if let Some(step) = login_instead(cx, req, &cookies, env) {
                return step;
            }
            match bad {
                Some(e) => bearer::refused(req, e),
                None => unauthenticated(
                    req,
                    bearer::challenge(config, json_error(401, "unauthorized")),
                ),
            }
        }
        Who::Nobody(bad) => bearer::refused(req, bad.unwrap_or(oidc::JwtError::Malformed)),
    }
}

/// A browser on a page route without a valid session goes to log in, back to the same URL
/// afterwards; `None` for API clients and API routes.
fn login_instead(
    cx: &mut Context,
    req: &Request,
    cookies: &[(&str, &str)],
    env: &mut Env,
) -> Option<Step> {
    let config = cx.config;
    if !req.is_browser() || routes::is_api(&config.api_routes, req.path_only()) {
        return None;
    }
    let rd = if matches!(req.method(), "GET" | "HEAD") {
        req.header("x-auth-request-redirect")
            .unwrap_or_else(|| req.uri(config.reverse_proxy))
    } else {
        "/"
    };
    Some(start_login(cx, req, cookies, env, Some(rd)))
}

/// Who a request is: a bearer token (when `skip_jwt_bearer_tokens` is on) or else the
/// session cookie.
enum Who {
    Known(Rc<Admitted>),
    /// Metadata or keys must be fetched first; the step says so.
    Pause(Box<Step>),
    /// No valid credential; the error when a bearer token was presented and refused.
    Nobody(Option<oidc::JwtError>),
}

fn identify(
    cx: &mut Context,
    req: &Request,
    cookies: &[(&str, &str)],
    env: &mut Env,
    keys_refreshed: bool,
) -> Who {
    let now = env.now;
    let mut refused = None;
    if let Some(token) = req
        .bearer_token()
        .filter(|_| cx.config.skip_jwt_bearer_tokens)
    {
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
                return Who::Pause(Box::new(pause(Decision::RefreshKeys(issuer, pending))));
            }
            // With `bearer_token_login_fallback` (the default) a session cookie still counts.
            bearer::Outcome::Invalid(e) if cx.config.bearer_token_login_fallback => {
                refused = Some(e);
            }
            bearer::Outcome::Invalid(e) => return Who::Nobody(Some(e)),
        }
    }
    let Some(a) = current_session(cx, cookies, env) else {
        return Who::Nobody(refused);
    };
    cx.metrics.session_accepted += 1;
    match lifecycle::due(cx.config, &a.session, now) {
        Due::Fresh => Who::Known(a),
        Due::Refresh => Who::Pause(Box::new(lifecycle::refresh(cx, req, cookies, &a, env))),
        Due::Ended => Who::Pause(Box::new(lifecycle::end_session(
            cx,
            req,
            cookies,
            env,
            "access_token_expired",
        ))),
    }
}

/// A step without a log line.
fn pause(decision: Decision) -> Step {
    Step {
        decision,
        log: None,
        publish: None,
    }
}

/// oauth2-proxy's `ping_user_agent`: health checkers that cannot choose a path.
fn is_ping_agent(config: &Config, req: &Request) -> bool {
    config
        .ping_user_agent
        .as_deref()
        .is_some_and(|ua| req.header("user-agent") == Some(ua))
}

/// A request with a valid credential: on to the app with its identity when the access
/// rules admit the user, a 403 otherwise. A renewed session's cookie goes on the response.
fn admitted(
    cx: &mut Context,
    req: &Request,
    cookies: &[(&str, &str)],
    a: &Admitted,
    env: &mut Env,
) -> Step {
    let config = cx.config;
    let reply = match &a.renewed {
        Some(value) => match lifecycle::renewed_cookies(
            config,
            req,
            cookies,
            value,
            a.session.expires_at,
            env.now,
        ) {
            Some(r) => r,
            None => return lifecycle::too_large(cx, req, cookies, env),
        },
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
        return exchange::upstream(cx, req, cookies, a, reply, env);
    }
    pause(upstream_edits(config, req, &a.upstream, cookies, &reply))
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
                    &cb.csrf_cookie,
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
                Ok(tokens) => finish_login(cx, *cb, tokens, false, env),
                Err(e) => fail(
                    cx.config,
                    &cb.target(env.now),
                    &cb.csrf_cookie,
                    502,
                    "The identity provider refused the login.",
                    &format!("token_endpoint: {e}"),
                ),
            }
        }
        Pending::Keys(cb, tokens) => finish_login(cx, *cb, tokens, true, env),
        Pending::Bearer(req) => decide_request(cx, &req, env, true),
        Pending::Refresh(renewal) => lifecycle::on_answer(cx, *renewal, response, env),
        Pending::RefreshKeys(renewal, tokens) => lifecycle::finish(cx, *renewal, tokens, true, env),
        Pending::Exchange(w) => exchange::on_answer(cx, *w, response, env),
        Pending::SignOut(s) => logout::next(*s, response),
        Pending::Profile(w) => resume_profile(cx, *w, response, env),
    }
}

/// Continues a request whose session was due for a refresh that another request (on this
/// worker or another) settled: see [`crate::refresh::plan`].
pub fn settle(cx: &mut Context, pending: Pending, settled: Settled, env: &mut Env) -> Step {
    match pending {
        Pending::Refresh(renewal) => lifecycle::settle(cx, *renewal, settled, env),
        other => resume(cx, other, None, env),
    }
}

/// Continues a login, refresh or bearer request that waited for a JWKS refresh:
/// `cx.providers` now holds the new keys (`fetched`), or the old ones when the fetch failed,
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
            lifecycle::unavailable(cx, *renewal, env, "keys_unavailable")
        }
        Pending::RefreshKeys(renewal, tokens) => lifecycle::finish(cx, *renewal, tokens, true, env),
        other => resume(cx, other, None, env),
    }
}

/// What goes to the app: client copies of every identity header (whatever their case,
/// count or spelling) and our cookies removed, `identity` set. Other cookies are left
/// byte-for-byte alone unless ours must be cut out of the same header.
fn upstream_edits(
    config: &Config,
    req: &Request,
    identity: &[(&'static str, String)],
    cookies: &[(&str, &str)],
    reply: &[String],
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
    Decision::Continue {
        remove,
        set,
        reply: reply.to_vec(),
    }
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

/// Drops the session the request's cookie holds from the cache (it is ending); `false`
/// when the request has no session cookie.
fn forget_session(cx: &mut Context, cookies: &[(&str, &str)]) -> bool {
    let value = cookie::read_joined(cookies, &cx.config.cookie.name);
    if let Some(value) = &value {
        cx.sessions.remove(value);
    }
    value.is_some()
}

/// Waits for the login issuer's keys to be fetched again: an ID token (a login's or a
/// refresh's) named a `kid` they lack.
fn refetch_keys(pending: Pending, path: &str) -> Step {
    Step {
        decision: Decision::RefreshKeys(MAIN, PendingBox(pending)),
        log: Some((
            Level::Info,
            respond::log_line("jwks_refresh", path, &[("reason", "unknown_kid")]),
        )),
        publish: None,
    }
}

fn current_session(
    cx: &mut Context,
    cookies: &[(&str, &str)],
    env: &mut Env,
) -> Option<Rc<Admitted>> {
    let config = cx.config;
    let value = cookie::read_joined(cookies, &config.cookie.name)?;
    if let Some(hit) = cx.sessions.get(&value, env.now) {
        return Some(hit);
    }
    let previous = config.keys.previous.iter().map(|k| &k.session);
    // Opened without the expiry check first, to count an expired session apart from a
    // forged or foreign one.
    let opened = session::open_any(
        &config.keys.current.session,
        previous,
        &config.cookie.name,
        &value,
        0,
    );
    let (s, old_key) = match opened {
        Some((s, _)) if s.expires_at <= env.now => {
            cx.metrics.count("sessions_rejected.expired");
            return None;
        }
        Some(found) => found,
        None => {
            cx.metrics.count("sessions_rejected.invalid");
            return None;
        }
    };
    let mut a = Admitted::new(config, s);
    if old_key {
        // Sealed with a previous `cookie_secret`: seal it again with the current one, set on
        // this response, so the old secret can be retired.
        let nonce = env.bytes::<12>()?;
        a.renewed = session::seal(
            &config.keys.current.session,
            &config.cookie.name,
            &a.session,
            nonce,
        );
        if let Some(new) = &a.renewed {
            let current = Admitted::new(config, a.session.clone());
            cx.sessions.insert(new, Rc::new(current));
        }
    }
    let a = Rc::new(a);
    cx.sessions.insert(&value, Rc::clone(&a));
    Some(a)
}

#[cfg(test)]
mod flow_tests;
