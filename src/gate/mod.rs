//! The decision engine: given the configuration, a request view, the time, randomness and
//! the caches, say what to do with the request. No I/O happens here; the `filter` adapter
//! carries out the returned [`Decision`] and feeds callout responses back via [`resume`].

use crate::config::Config;
use crate::cookie::{self, Target};
use crate::csrf::{self, LoginState};
use crate::oidc::{self, Discovery, IdTokenRules, JwtError, TokenResponse};
use crate::provider::Provider;
use crate::session::{self, Session, SessionCache};
use crate::{headers, pages, pkce, policy, redirect};
use std::rc::Rc;

/// The parts of an HTTP request the gate looks at: all headers, pseudo-headers included,
/// exactly as Envoy presents them (lowercase names).
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub headers: Vec<(String, String)>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn method(&self) -> &str {
        self.header(":method").unwrap_or("GET")
    }

    /// Path and query as sent.
    fn path(&self) -> &str {
        self.header(":path").unwrap_or("/")
    }

    fn path_only(&self) -> &str {
        let p = self.path();
        p.split_once('?').map_or(p, |(path, _)| path)
    }

    fn query(&self, key: &str) -> Option<String> {
        let (_, q) = self.path().split_once('?')?;
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    }

    fn authority(&self) -> &str {
        self.header(":authority")
            .or_else(|| self.header("host"))
            .unwrap_or("")
    }

    fn host(&self) -> &str {
        let a = self.authority();
        if a.starts_with('[') {
            return a
                .split_once(']')
                .map_or(a, |(h, _)| h.trim_start_matches('['));
        }
        a.rsplit_once(':').map_or(a, |(h, _)| h)
    }

    fn scheme(&self) -> &str {
        self.header("x-forwarded-proto")
            .or_else(|| self.header(":scheme"))
            .unwrap_or("http")
    }

    /// Browsers get redirected to log in; API clients get a 401 they can act on.
    fn is_browser(&self) -> bool {
        self.header("x-requested-with").is_none()
            && self.all("accept").any(|a| a.contains("text/html"))
    }
}

/// Clock and randomness, injected so tests can pin both.
pub struct Env<'a> {
    /// Unix seconds.
    pub now: u64,
    /// Fills the buffer with secure random bytes; `false` if the source failed.
    pub random: &'a mut dyn FnMut(&mut [u8]) -> bool,
}

impl Env<'_> {
    fn bytes<const N: usize>(&mut self) -> Option<[u8; N]> {
        let mut b = [0u8; N];
        (self.random)(&mut b).then_some(b)
    }
}

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

fn log_line(event: &str, req_path: &str, fields: &[(&str, &str)]) -> String {
    let mut m = serde_json::Map::new();
    m.insert("event".into(), event.into());
    m.insert("path".into(), req_path.into());
    for (k, v) in fields {
        m.insert((*k).into(), (*v).into());
    }
    serde_json::Value::Object(m).to_string()
}

/// Everything a decision reads besides the request.
pub struct Context<'a> {
    pub config: &'a Config,
    pub provider: Option<&'a Provider>,
    pub sessions: &'a mut SessionCache,
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

    match current_session(cx, &cookies, env.now) {
        Some(s) => Step {
            decision: Decision::Continue {
                remove: strip_list(config, req, &cookies),
                set: upstream_headers(config, &s, &cookies),
            },
            log: Some((
                Level::Debug,
                log_line(
                    "authenticated",
                    path,
                    &[("email", &s.email), ("user", &s.user)],
                ),
            )),
        },
        None if req.is_browser() => {
            let rd = if matches!(req.method(), "GET" | "HEAD") {
                req.path()
            } else {
                "/"
            };
            start_login(cx, req, &cookies, env, Some(rd))
        }
        None => respond_step(
            json_error(401, "unauthorized"),
            Some((Level::Info, log_line("unauthenticated", path, &[]))),
        ),
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
                    &cb,
                    502,
                    "The identity provider could not be reached.",
                    "token_endpoint_unreachable",
                );
            };
            match oidc::parse_token_response(status, body) {
                Ok(tokens) => finish_login(cx, *cb, tokens, false, env),
                Err(e) => fail(
                    cx.config,
                    &cb,
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
            &cb,
            500,
            "Unexpected login state.",
            "bad_pending_state",
        ),
    }
}

fn respond_step(response: Response, log: Option<(Level, String)>) -> Step {
    Step {
        decision: Decision::Respond(response),
        log,
    }
}

fn text(status: u16, body: &str) -> Response {
    Response {
        status,
        headers: vec![
            ("content-type".into(), "text/plain; charset=utf-8".into()),
            ("cache-control".into(), "no-store".into()),
        ],
        body: format!("{body}\n"),
    }
}

fn json_error(status: u16, error: &str) -> Response {
    Response {
        status,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("cache-control".into(), "no-store".into()),
        ],
        body: serde_json::json!({ "error": error }).to_string(),
    }
}

fn html(status: u16, body: String) -> Response {
    Response {
        status,
        headers: vec![
            ("content-type".into(), "text/html; charset=utf-8".into()),
            ("cache-control".into(), "no-store".into()),
            ("x-frame-options".into(), "DENY".into()),
            (
                "content-security-policy".into(),
                "default-src 'none'; style-src 'unsafe-inline'".into(),
            ),
        ],
        body,
    }
}

fn redirect_to(location: &str, set_cookies: Vec<String>) -> Response {
    let mut headers = vec![
        ("location".to_string(), location.to_string()),
        ("cache-control".to_string(), "no-store".to_string()),
    ];
    headers.extend(
        set_cookies
            .into_iter()
            .map(|c| ("set-cookie".to_string(), c)),
    );
    Response {
        status: 302,
        headers,
        body: String::new(),
    }
}

fn error_page(prefix: &str, status: u16, message: &str) -> Response {
    html(
        status,
        pages::error(status, message, &format!("{prefix}/sign_in")),
    )
}

/// Client copies of identity headers, whatever their case or count, and the `Cookie`
/// header (rebuilt without our cookies by [`upstream_headers`]).
fn strip_list(config: &Config, req: &Request, cookies: &[(&str, &str)]) -> Vec<String> {
    // Other cookies are left byte-for-byte alone unless ours must be cut out.
    let rewrite_cookie = cookies
        .iter()
        .any(|(n, _)| cookie::is_ours(&config.cookie, n));
    let mut names: Vec<String> = req
        .headers
        .iter()
        .filter(|(n, _)| {
            headers::is_owned(n) || (rewrite_cookie && n.eq_ignore_ascii_case("cookie"))
        })
        .map(|(n, _)| n.to_ascii_lowercase())
        .collect();
    names.sort();
    names.dedup();
    names
}

fn upstream_headers(
    config: &Config,
    s: &Session,
    cookies: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut set: Vec<(String, String)> = headers::for_upstream(config, s)
        .into_iter()
        .map(|(n, v)| (n.to_string(), v))
        .collect();
    if cookies
        .iter()
        .any(|(n, _)| cookie::is_ours(&config.cookie, n))
    {
        if let Some(rest) = cookie::strip_ours(&config.cookie, cookies) {
            set.push(("cookie".into(), rest));
        }
    }
    set
}

fn current_session(cx: &mut Context, cookies: &[(&str, &str)], now: u64) -> Option<Rc<Session>> {
    let config = cx.config;
    let value = cookie::read_joined(cookies, &config.cookie.name)?;
    if let Some(hit) = cx.sessions.get(&value, now) {
        return Some(hit);
    }
    let s = Rc::new(session::open(
        &config.session_key,
        &config.cookie.name,
        &value,
        now,
    )?);
    cx.sessions.insert(value, Rc::clone(&s));
    Some(s)
}

fn target<'a>(req: &'a Request, now: u64) -> Target<'a> {
    Target {
        host: req.host(),
        now,
    }
}

fn redirect_uri(config: &Config, req: &Request) -> String {
    match &config.redirect_url {
        Some(u) => u.clone(),
        None => format!(
            "{}://{}{}",
            req.scheme(),
            req.authority(),
            config.callback_path()
        ),
    }
}

fn start_login(
    cx: &mut Context,
    req: &Request,
    cookies: &[(&str, &str)],
    env: &mut Env,
    rd: Option<&str>,
) -> Step {
    let config = cx.config;
    let Some(provider) = cx.provider else {
        return Step {
            decision: Decision::NeedProvider,
            log: None,
        };
    };
    let return_to = rd
        .and_then(|rd| redirect::allowed(rd, req.authority(), &config.whitelist_domains))
        .unwrap_or_else(|| "/".to_string());
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
    let Some(sealed) = csrf::seal(
        &config.csrf_key,
        &config.cookie.csrf_name(),
        &login,
        seal_nonce,
    ) else {
        return internal_error(config, req.path_only(), "seal_failed");
    };
    let location = authorize_url(config, &provider.discovery, req, &login);
    let t = target(req, env.now);
    let mut set_cookies = vec![cookie::set_cookie(
        &config.cookie,
        &t,
        &config.cookie.csrf_name(),
        &sealed,
        config.cookie.csrf_expire,
    )];
    // A session cookie that failed to open is dead weight on every request: drop it.
    if cookie::read_joined(cookies, &config.cookie.name).is_some() {
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

fn authorize_url(config: &Config, d: &Discovery, req: &Request, login: &LoginState) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", &config.client_id)
        .append_pair("redirect_uri", &redirect_uri(config, req))
        .append_pair("scope", &config.scope)
        .append_pair("state", &login.state)
        .append_pair("nonce", &login.nonce)
        .append_pair("code_challenge", &pkce::challenge(&login.code_verifier))
        .append_pair("code_challenge_method", "S256")
        .finish();
    let sep = if d.authorization_endpoint.contains('?') {
        '&'
    } else {
        '?'
    };
    format!("{}{sep}{query}", d.authorization_endpoint)
}

fn internal_error(config: &Config, path: &str, what: &str) -> Step {
    respond_step(
        error_page(
            &config.proxy_prefix,
            500,
            "Something went wrong. Please try again.",
        ),
        Some((Level::Warn, log_line("error", path, &[("reason", what)]))),
    )
}

fn sign_in(cx: &mut Context, req: &Request, cookies: &[(&str, &str)], env: &mut Env) -> Step {
    let config = cx.config;
    let rd = req.query("rd");
    if config.skip_provider_button {
        return start_login(cx, req, cookies, env, rd.as_deref());
    }
    let safe = rd
        .as_deref()
        .and_then(|rd| redirect::allowed(rd, req.authority(), &config.whitelist_domains))
        .unwrap_or_else(|| "/".into());
    let start = format!(
        "{}/start?{}",
        config.proxy_prefix,
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("rd", &safe)
            .finish()
    );
    respond_step(html(200, pages::sign_in(&start)), None)
}

fn callback(cx: &mut Context, req: &Request, cookies: &[(&str, &str)], env: &mut Env) -> Step {
    let config = cx.config;
    let path = req.path_only();
    let prefix = config.proxy_prefix.as_str();
    let csrf_name = config.cookie.csrf_name();
    let t = target(req, env.now);
    let clear_csrf = || vec![cookie::clear_cookie(&config.cookie, &t, &csrf_name)];
    let deny = |status: u16, message: &str, reason: &str| {
        let mut r = error_page(prefix, status, message);
        r.headers.extend(
            clear_csrf()
                .into_iter()
                .map(|c| ("set-cookie".to_string(), c)),
        );
        respond_step(
            r,
            Some((
                Level::Warn,
                log_line("login_failed", path, &[("reason", reason)]),
            )),
        )
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
    let Some(login) = csrf::verify(&config.csrf_key, &csrf_name, csrf_cookie, &state, env.now)
    else {
        return deny(
            403,
            "Your login attempt expired or was started elsewhere. Please sign in again.",
            "csrf_state_mismatch",
        );
    };
    let Some(provider) = cx.provider else {
        return Step {
            decision: Decision::NeedProvider,
            log: None,
        };
    };
    let Ok(endpoint) = oidc::target(&provider.discovery.token_endpoint) else {
        return deny(
            500,
            "The identity provider is misconfigured.",
            "bad_token_endpoint",
        );
    };
    let request = oidc::code_exchange(
        &code,
        &redirect_uri(config, req),
        &login.code_verifier,
        &config.client_id,
        &config.client_secret,
        config.client_auth,
    );
    let pending = Callback {
        login,
        host: req.host().to_string(),
        present: cookies.iter().map(|(n, _)| n.to_string()).collect(),
    };
    Step {
        decision: Decision::Call(
            Callout {
                method: "POST",
                authority: endpoint.authority,
                path: endpoint.path,
                headers: request.headers,
                body: request.body,
            },
            PendingBox(Pending::Token(Box::new(pending))),
        ),
        log: None,
    }
}

fn fail(config: &Config, cb: &Callback, status: u16, message: &str, reason: &str) -> Step {
    let t = Target {
        host: &cb.host,
        now: 0,
    };
    let mut r = error_page(&config.proxy_prefix, status, message);
    r.headers.push((
        "set-cookie".into(),
        cookie::clear_cookie(&config.cookie, &t, &config.cookie.csrf_name()),
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

fn finish_login(
    cx: &mut Context,
    cb: Callback,
    tokens: TokenResponse,
    keys_refreshed: bool,
    env: &mut Env,
) -> Step {
    let config = cx.config;
    let prefix = config.proxy_prefix.as_str();
    let callback_path = config.callback_path();
    let t = Target {
        host: &cb.host,
        now: env.now,
    };
    let csrf_name = config.cookie.csrf_name();
    let failed = |status: u16, message: &str, reason: &str| {
        let mut r = error_page(prefix, status, message);
        r.headers.push((
            "set-cookie".into(),
            cookie::clear_cookie(&config.cookie, &t, &csrf_name),
        ));
        respond_step(
            r,
            Some((
                Level::Warn,
                log_line("login_failed", &callback_path, &[("reason", reason)]),
            )),
        )
    };
    let Some(provider) = cx.provider else {
        return failed(
            503,
            "The identity provider is unavailable.",
            "provider_not_loaded",
        );
    };
    let rules = IdTokenRules {
        issuer: &provider.discovery.issuer,
        client_id: &config.client_id,
        nonce: Some(&cb.login.nonce),
        now: env.now,
        skew: oidc::id_token::DEFAULT_SKEW,
        groups_claim: &config.groups_claim,
        email_claim: &config.email_claim,
    };
    let claims = match oidc::validate_id_token(&tokens.id_token, &provider.jwks, &rules) {
        Ok(c) => c,
        Err(JwtError::UnknownKid) if !keys_refreshed => {
            return Step {
                decision: Decision::RefreshKeys(PendingBox(Pending::Keys(Box::new(cb), tokens))),
                log: Some((
                    Level::Info,
                    log_line("jwks_refresh", &callback_path, &[("reason", "unknown_kid")]),
                )),
            };
        }
        Err(e) => {
            return failed(
                401,
                "The identity provider's token could not be verified.",
                &format!("id_token: {e}"),
            );
        }
    };
    if let Err(denied) = policy::admit(config, claims.email.as_deref(), claims.email_verified) {
        return failed(
            403,
            "You are not allowed to access this application.",
            denied.reason(),
        );
    }
    let session = Session {
        user: claims.sub.clone(),
        email: claims.email.clone().unwrap_or_default(),
        preferred_username: claims.preferred_username.clone().unwrap_or_default(),
        groups: claims.groups.clone(),
        access_token: tokens.access_token.clone(),
        id_token: tokens.id_token.clone(),
        refresh_token: tokens.refresh_token.clone().unwrap_or_default(),
        created_at: env.now,
        expires_at: env.now.saturating_add(config.cookie.expire),
    };
    let Some(nonce) = env.bytes::<12>() else {
        return failed(
            500,
            "Something went wrong. Please try again.",
            "random_source_failed",
        );
    };
    let Some(sealed) = session::seal(&config.session_key, &config.cookie.name, &session, nonce)
    else {
        return failed(
            500,
            "Something went wrong. Please try again.",
            "seal_failed",
        );
    };
    let present: Vec<(&str, &str)> = cb.present.iter().map(|n| (n.as_str(), "")).collect();
    let mut set_cookies = cookie::set_chunked(
        &config.cookie,
        &t,
        &present,
        &config.cookie.name,
        &sealed,
        config.cookie.expire,
    );
    set_cookies.push(cookie::clear_cookie(&config.cookie, &t, &csrf_name));
    let email = session.email.clone();
    cx.sessions.insert(sealed, Rc::new(session));
    respond_step(
        redirect_to(&cb.login.return_to, set_cookies),
        Some((
            Level::Info,
            log_line("login", &callback_path, &[("email", &email)]),
        )),
    )
}

fn sign_out(cx: &mut Context, req: &Request, cookies: &[(&str, &str)], env: &mut Env) -> Step {
    let config = cx.config;
    if let Some(value) = cookie::read_joined(cookies, &config.cookie.name) {
        cx.sessions.remove(&value);
    }
    let t = target(req, env.now);
    let mut set_cookies = cookie::clear_all(&config.cookie, &t, cookies, &config.cookie.name);
    set_cookies.push(cookie::clear_cookie(
        &config.cookie,
        &t,
        &config.cookie.csrf_name(),
    ));
    let location = req
        .query("rd")
        .and_then(|rd| redirect::allowed(&rd, req.authority(), &config.whitelist_domains))
        .unwrap_or_else(|| "/".into());
    respond_step(
        redirect_to(&location, set_cookies),
        Some((Level::Info, log_line("sign_out", req.path_only(), &[]))),
    )
}

fn userinfo(cx: &mut Context, req: &Request, cookies: &[(&str, &str)], env: &mut Env) -> Step {
    match current_session(cx, cookies, env.now) {
        Some(s) => respond_step(
            Response {
                status: 200,
                headers: vec![
                    ("content-type".into(), "application/json".into()),
                    ("cache-control".into(), "no-store".into()),
                ],
                body: serde_json::json!({
                    "user": s.user,
                    "email": s.email,
                    "preferredUsername": s.preferred_username,
                    "groups": s.groups,
                })
                .to_string(),
            },
            None,
        ),
        None => respond_step(
            json_error(401, "unauthorized"),
            Some((
                Level::Info,
                log_line("unauthenticated", req.path_only(), &[]),
            )),
        ),
    }
}

fn auth(cx: &mut Context, req: &Request, cookies: &[(&str, &str)], env: &mut Env) -> Step {
    let config = cx.config;
    match current_session(cx, cookies, env.now) {
        Some(s) => {
            let mut r = text(202, "Accepted");
            r.headers.extend(
                headers::for_auth_response(config, &s)
                    .into_iter()
                    .map(|(n, v)| (n.to_string(), v)),
            );
            respond_step(r, None)
        }
        None => respond_step(
            text(401, "Unauthorized"),
            Some((
                Level::Info,
                log_line("unauthenticated", req.path_only(), &[]),
            )),
        ),
    }
}

#[cfg(test)]
mod flow_tests;
