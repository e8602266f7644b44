//! Plumbing shared by the provider mocks (`mock_github`, `mock_google`, `mock_gitlab`,
//! `mock_entra`): listeners that log every request they receive, client authentication at
//! a token endpoint, the authorization code's round trip (grant, redirect back, redemption
//! checks, PKCE), bearer tokens, and `at_hash`. What only the OpenID Providers share is in
//! `mock_oidc`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use sha2::{Digest, Sha256};

use super::upstream::{MiniServer, ServerRequest, ServerResponse};

/// One request a mock received, and which of its listeners (`web`, `api`, `token`, …) took it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub listener: &'static str,
    pub method: String,
    /// Path and query as received.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The status the mock answered.
    pub status: u16,
}

impl Seen {
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn query(&self) -> HashMap<String, String> {
        let q = self.target.split_once('?').map(|(_, q)| q).unwrap_or("");
        url::form_urlencoded::parse(q.as_bytes())
            .into_owned()
            .collect()
    }
    /// `listener METHOD target -> status [header: value …]` for failure messages.
    pub fn line(&self) -> String {
        let hs: Vec<String> = self
            .headers
            .iter()
            .filter(|(k, _)| {
                [
                    "host",
                    "authorization",
                    "accept",
                    "user-agent",
                    "content-type",
                ]
                .iter()
                .any(|n| k.eq_ignore_ascii_case(n))
            })
            .map(|(k, v)| {
                let v = if v.len() > 40 {
                    format!("{}…", &v[..40])
                } else {
                    v.clone()
                };
                format!("{}: {v}", k.to_ascii_lowercase())
            })
            .collect();
        format!(
            "{} {} {} -> {} [{}]",
            self.listener,
            self.method,
            self.target,
            self.status,
            hs.join(" | ")
        )
    }
}

/// Every request of one mock, in arrival order (shared by its listeners).
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<Seen>>>);

impl Log {
    pub fn push(&self, listener: &'static str, req: &ServerRequest, status: u16) {
        self.0.lock().expect("log").push(Seen {
            listener,
            method: req.method.clone(),
            target: req.target.clone(),
            headers: req.headers.clone(),
            body: String::from_utf8_lossy(&req.body).into_owned(),
            status,
        });
    }
    pub fn all(&self) -> Vec<Seen> {
        self.0.lock().expect("log").clone()
    }
    pub fn clear(&self) {
        self.0.lock().expect("log").clear();
    }
    /// Requests whose path (without query) is `path`.
    pub fn to_path(&self, path: &str) -> Vec<Seen> {
        self.all()
            .into_iter()
            .filter(|s| s.path() == path)
            .collect()
    }
    /// Requests one listener received.
    pub fn on(&self, listener: &str) -> Vec<Seen> {
        self.all()
            .into_iter()
            .filter(|s| s.listener == listener)
            .collect()
    }
    /// Every request, one per line.
    pub fn dump(&self) -> String {
        self.all()
            .iter()
            .map(|s| format!("  {}", s.line()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// `Authorization: Basic` credentials, each part form-decoded (RFC 6749 2.3.1).
pub fn basic_credentials(h: &str) -> Option<(String, String)> {
    let b64 = h
        .strip_prefix("Basic ")
        .or_else(|| h.strip_prefix("basic "))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let (id, secret) = raw.split_once(':')?;
    let dec = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some((dec(id), dec(secret)))
}

/// How a client authenticated at a token endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientAuthSeen {
    Basic,
    Post,
}

/// The client's credentials from `Authorization: Basic` or the form body.
pub fn client_credentials(req: &ServerRequest) -> Option<(String, String, ClientAuthSeen)> {
    if let Some((id, secret)) = req.header("authorization").and_then(basic_credentials) {
        return Some((id, secret, ClientAuthSeen::Basic));
    }
    let f = req.form();
    match (f.get("client_id"), f.get("client_secret")) {
        (Some(i), Some(s)) => Some((i.clone(), s.clone(), ClientAuthSeen::Post)),
        _ => None,
    }
}

/// The bearer token of a resource request (`Bearer x`; GitHub also takes `token x`).
pub fn bearer(req: &ServerRequest) -> Option<String> {
    let h = req.header("authorization")?;
    let (scheme, token) = h.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token"))
        .then(|| token.trim().to_string())
}

/// RFC 7636 S256: `challenge == base64url(sha256(verifier))`.
pub fn pkce_s256_ok(challenge: &str, verifier: &str) -> bool {
    super::jwt::s256(verifier) == challenge
}

/// OIDC Core 3.1.3.6 `at_hash`: the left half of SHA-256 of the access token, base64url.
pub fn at_hash(access_token: &str) -> String {
    let d = Sha256::digest(access_token.as_bytes());
    super::jwt::b64(&d[..16])
}

/// A 302 back to the relying party's `redirect_uri` with `params` in its query.
pub fn redirect_back(redirect_uri: &str, params: &[(&str, &str)]) -> ServerResponse {
    let q = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter())
        .finish();
    let sep = if redirect_uri.contains('?') { '&' } else { '?' };
    ServerResponse::redirect(&format!("{redirect_uri}{sep}{q}"))
}

/// `resp` with one more header.
pub fn with_header(mut resp: ServerResponse, k: &str, v: &str) -> ServerResponse {
    resp.headers.push((k.to_string(), v.to_string()));
    resp
}

/// An empty answer with `status` (e.g. GitHub's 204 "is a collaborator").
pub fn empty(status: u16) -> ServerResponse {
    ServerResponse {
        status,
        headers: Vec::new(),
        body: Vec::new(),
        delay: None,
    }
}

/// What an authorization request asked for, kept under the code it was answered with.
#[derive(Clone, Debug)]
pub struct Grant {
    /// Which of the mock's users approved.
    pub user: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
}

/// The query of an authorization request, as a [`Grant`] for `user`.
pub fn grant_of(req: &ServerRequest, user: &str) -> Grant {
    let q = req.query();
    let get = |k: &str| q.get(k).cloned();
    Grant {
        user: user.to_string(),
        client_id: get("client_id").unwrap_or_default(),
        redirect_uri: get("redirect_uri").unwrap_or_default(),
        scope: get("scope").unwrap_or_default(),
        nonce: get("nonce"),
        code_challenge: get("code_challenge"),
        code_challenge_method: get("code_challenge_method"),
    }
}

/// Checks the `authorization_code` grant of a token request against what the code was
/// issued for: the same client, `redirect_uri` and (when a challenge was sent) the PKCE
/// verifier. `Err` is the OAuth error code to answer with.
pub fn check_code_grant(req: &ServerRequest, grant: &Grant) -> Result<(), &'static str> {
    let f = req.form();
    if f.get("grant_type").map(String::as_str) != Some("authorization_code") {
        return Err("unsupported_grant_type");
    }
    if f.get("redirect_uri") != Some(&grant.redirect_uri) {
        return Err("invalid_grant");
    }
    if let Some(ch) = &grant.code_challenge {
        let verifier = f.get("code_verifier").cloned().unwrap_or_default();
        if !pkce_s256_ok(ch, &verifier) {
            return Err("invalid_grant");
        }
    }
    Ok(())
}

/// What the shared steps of the authorization-code flow use of a mock's state; a state with
/// the usual fields (`client_id`, `client_secret`, `current`, `codes`, `violations`) gets it
/// from [`code_issuer!`].
pub trait CodeIssuer {
    /// The registered client: id and secret.
    fn client(&self) -> (&str, &str);
    /// Who approves the next authorization request.
    fn current(&self) -> &str;
    /// Grants by the code they were answered with.
    fn codes(&mut self) -> &mut HashMap<String, Grant>;
    /// Notes a protocol mistake of the relying party.
    fn violation(&mut self, what: String);
}

/// `impl CodeIssuer` for a mock's state type with the usual fields.
macro_rules! code_issuer {
    ($state:ty) => {
        impl super::mock_common::CodeIssuer for $state {
            fn client(&self) -> (&str, &str) {
                (&self.client_id, &self.client_secret)
            }
            fn current(&self) -> &str {
                &self.current
            }
            fn codes(
                &mut self,
            ) -> &mut std::collections::HashMap<String, super::mock_common::Grant> {
                &mut self.codes
            }
            fn violation(&mut self, what: String) {
                self.violations.push(what);
            }
        }
    };
}
pub(crate) use code_issuer;

/// The start of every authorization request: what it asks for, as the current user approves
/// it, and its `state`. `None`, noted as a violation, when it names another client than the
/// registered one (the caller refuses it as its provider does).
pub fn authorization(st: &mut impl CodeIssuer, req: &ServerRequest) -> Option<(Grant, String)> {
    let g = grant_of(req, st.current());
    if g.client_id != st.client().0 {
        st.violation(format!("authorize: client_id {:?}", g.client_id));
        return None;
    }
    let state = req.query().get("state").cloned().unwrap_or_default();
    Some((g, state))
}

/// Keeps `grant` under `code` and sends the browser back to its `redirect_uri` with `params`.
pub fn approve(
    st: &mut impl CodeIssuer,
    code: &str,
    grant: Grant,
    params: &[(&str, &str)],
) -> ServerResponse {
    let back = redirect_back(&grant.redirect_uri, params);
    st.codes().insert(code.to_string(), grant);
    back
}

/// The grant of a token request's code, taken out of the state's codes (a code redeems once).
pub fn take_code(st: &mut impl CodeIssuer, req: &ServerRequest) -> Option<Grant> {
    let code = req.form().get("code").cloned().unwrap_or_default();
    st.codes().remove(&code)
}

/// [`check_code_grant`], a failure noted as a violation (`token: <error>`).
pub fn check_grant(
    st: &mut impl CodeIssuer,
    req: &ServerRequest,
    grant: &Grant,
) -> Result<(), &'static str> {
    check_code_grant(req, grant).inspect_err(|e| st.violation(format!("token: {e}")))
}

/// What `tokens` holds for the bearer token of a resource request.
pub fn token_of<V: Clone>(req: &ServerRequest, tokens: &HashMap<String, V>) -> Option<V> {
    bearer(req).and_then(|t| tokens.get(&t).cloned())
}

/// A value a mock's handlers need that is known only once every listener has its port (an
/// issuer, an API base).
#[derive(Default)]
pub struct Late<T>(Arc<Mutex<T>>);

impl<T> Clone for Late<T> {
    fn clone(&self) -> Self {
        Late(self.0.clone())
    }
}

impl<T: Clone> Late<T> {
    pub fn get(&self) -> T {
        self.0.lock().expect("late").clone()
    }
    pub fn set(&self, v: T) {
        *self.0.lock().expect("late") = v;
    }
}

/// Starts the listener `name` of a mock: `handle` answers each request with the mock's state
/// locked and the value of `late` as it is then; `log` records the request and its status.
pub fn listen<S, L>(
    name: &'static str,
    state: &Arc<Mutex<S>>,
    late: &Late<L>,
    log: &Log,
    handle: impl Fn(&mut S, &L, &ServerRequest) -> ServerResponse + Send + Sync + 'static,
) -> MiniServer
where
    S: Send + 'static,
    L: Clone + Send + 'static,
{
    let (s, late, log) = (state.clone(), late.clone(), log.clone());
    MiniServer::start(Arc::new(move |req: &ServerRequest| {
        let l = late.get();
        let r = handle(&mut s.lock().expect("mock state"), &l, req);
        log.push(name, req, r.status);
        r
    }))
}
