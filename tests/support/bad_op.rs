//! A deliberately misbehaving OpenID Provider: correct discovery, JWKS, authorization and
//! token endpoints (with strict client-auth and PKCE checks), whose ID tokens are crafted
//! per scenario to be wrong in exactly one way.

use super::mock_common::basic_credentials;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use super::http::{Browser, Hop, Response};
use super::jwt::{self, Key};
use super::stack::{App, Idp, Stack};
use super::upstream::{MiniServer, ServerRequest, ServerResponse};

#[derive(Clone, Debug, PartialEq)]
pub enum Scenario {
    /// Everything right (control).
    Good,
    /// Valid RS256 token with one signature byte changed.
    BadSignature,
    /// `alg: none`, no signature.
    AlgNone,
    /// HS256 keyed with the RSA public key's SPKI PEM text.
    Hs256PublicPem,
    /// HS256 keyed with the RSA public key's SPKI DER bytes.
    Hs256PublicDer,
    /// Signed by a key that is never published, with its own kid.
    UnknownKid,
    /// Signed by the unpublished key but claiming the published kid `k1`.
    WrongKeyForKid,
    WrongIssuer,
    WrongAudience,
    Expired,
    NonceMismatch,
    NonceMissing,
    /// `email_verified: false` (the filter must refuse unless configured otherwise).
    EmailUnverified,
    /// The OP redirects back with a state different from the one it was given.
    StateMismatch,
    /// Token endpoint answers 500.
    Token500,
    /// Token endpoint answers after this delay.
    TokenSlow(Duration),
    /// Token endpoint answers 200 with a body that is not JSON.
    TokenGarbage,
    /// Token endpoint answers an OAuth error document (400 `invalid_grant`: the code
    /// expired or was used).
    TokenErrorJson,
}

#[derive(Clone, Debug)]
struct AuthReq {
    nonce: Option<String>,
    state: String,
    challenge: Option<String>,
    redirect_uri: String,
}

pub struct OpState {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uri: String,
    pub scenario: Scenario,
    pub published: Vec<Key>,
    pub signing: Key,
    pub k1: Key,
    pub k2: Key,
    pub k9: Key,
    codes: HashMap<String, AuthReq>,
    /// Protocol violations by the relying party (the filter): must stay empty.
    pub violations: Vec<String>,
    /// What happened, in order (for failure messages).
    pub events: Vec<String>,
    pub token_requests: usize,
    pub jwks_requests: usize,
    pub discovery_requests: usize,
    pub subject: String,
    pub email: String,
    /// Lie about the issuer in the discovery document.
    pub discovery_issuer: Option<String>,
    /// Extra/overriding claims for every ID token (e.g. header-injection attempts).
    pub extra_claims: Value,
    /// `expires_in` of the access tokens (seconds).
    pub access_ttl: u64,
    /// Refresh tokens that are valid now; each refresh replaces the one it used.
    refresh_tokens: std::collections::HashSet<String>,
    /// Successful refresh grants.
    pub refreshes: usize,
}

pub struct BadOp {
    pub server: MiniServer,
    pub state: Arc<Mutex<OpState>>,
}

impl BadOp {
    pub fn start(client_id: &str, client_secret: &str) -> BadOp {
        Self::start_on(0, client_id, client_secret)
    }

    /// Start on a fixed port (e.g. one Envoy was already configured with).
    pub fn start_on(port: u16, client_id: &str, client_secret: &str) -> BadOp {
        let k1 = Key::load("k1", jwt::K1_PEM);
        let k2 = Key::load("k2", jwt::K2_PEM);
        let k9 = Key::load("k9", jwt::K9_PEM);
        let state = Arc::new(Mutex::new(OpState {
            issuer: String::new(),
            client_id: client_id.to_string(),
            client_secret: client_secret.to_string(),
            redirect_uri: String::new(),
            scenario: Scenario::Good,
            published: vec![k1.clone()],
            signing: k1.clone(),
            k1,
            k2,
            k9,
            codes: HashMap::new(),
            violations: Vec::new(),
            events: Vec::new(),
            token_requests: 0,
            jwks_requests: 0,
            discovery_requests: 0,
            subject: "alice".into(),
            email: "alice@example.com".into(),
            discovery_issuer: None,
            extra_claims: json!({}),
            access_ttl: 300,
            refresh_tokens: Default::default(),
            refreshes: 0,
        }));
        let st2 = state.clone();
        let server =
            MiniServer::start_on(port, Arc::new(move |req: &ServerRequest| handle(&st2, req)));
        let port = server.port;
        state.lock().expect("lock").issuer = format!("http://127.0.0.1:{port}");
        BadOp { server, state }
    }

    pub fn port(&self) -> u16 {
        self.server.port
    }
    pub fn issuer(&self) -> String {
        self.state.lock().expect("lock").issuer.clone()
    }
    pub fn set_redirect_uri(&self, u: &str) {
        self.state.lock().expect("lock").redirect_uri = u.to_string();
    }
    pub fn set_scenario(&self, s: Scenario) {
        let mut st = self.state.lock().expect("lock");
        st.events.push(format!("--- scenario {s:?}"));
        st.scenario = s;
    }
    /// Publish only k2 and sign with it from now on.
    pub fn rotate_to_k2(&self) {
        let mut st = self.state.lock().expect("lock");
        st.published = vec![st.k2.clone()];
        st.signing = st.k2.clone();
        st.events.push("--- rotated to k2".into());
    }
    pub fn set_extra_claims(&self, v: Value) {
        self.state.lock().expect("lock").extra_claims = v;
    }
    pub fn set_discovery_issuer(&self, v: Option<String>) {
        self.state.lock().expect("lock").discovery_issuer = v;
    }
    pub fn discovery_requests(&self) -> usize {
        self.state.lock().expect("lock").discovery_requests
    }
    pub fn violations(&self) -> Vec<String> {
        self.state.lock().expect("lock").violations.clone()
    }
    pub fn events(&self) -> String {
        let st = self.state.lock().expect("lock");
        let from = st.events.len().saturating_sub(30);
        st.events[from..].join("\n")
    }
    pub fn token_requests(&self) -> usize {
        self.state.lock().expect("lock").token_requests
    }
    pub fn jwks_requests(&self) -> usize {
        self.state.lock().expect("lock").jwks_requests
    }
    /// Access tokens from now on live `secs` seconds (`expires_in`).
    pub fn set_access_ttl(&self, secs: u64) {
        self.state.lock().expect("lock").access_ttl = secs;
    }
    /// Successful refresh grants so far.
    pub fn refreshes(&self) -> usize {
        self.state.lock().expect("lock").refreshes
    }
    /// Publish k1 and k2, and sign with k2 from now on (a rotation with an overlap, as
    /// IdPs announce the next key before they use it).
    pub fn rotate_to_k2_keeping_k1(&self) {
        let mut st = self.state.lock().expect("lock");
        st.published = vec![st.k1.clone(), st.k2.clone()];
        st.signing = st.k2.clone();
        st.events
            .push("--- rotated to k2 (k1 still published)".into());
    }
}

fn oauth_error(status: u16, code: &str, desc: &str) -> ServerResponse {
    ServerResponse::json(status, &json!({"error": code, "error_description": desc}))
}

fn handle(state: &Arc<Mutex<OpState>>, req: &ServerRequest) -> ServerResponse {
    let mut st = state.lock().expect("lock");
    let iss = st.issuer.clone();
    match (req.method.as_str(), req.path()) {
        ("GET", "/.well-known/openid-configuration") => {
            st.discovery_requests += 1;
            ServerResponse::json(
                200,
                &json!({
                    "issuer": st.discovery_issuer.clone().unwrap_or_else(|| iss.clone()),
                    "authorization_endpoint": format!("{iss}/authorize"),
                    "token_endpoint": format!("{iss}/token"),
                    "jwks_uri": format!("{iss}/jwks"),
                    "userinfo_endpoint": format!("{iss}/userinfo"),
                    "response_types_supported": ["code"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "scopes_supported": ["openid", "email", "profile", "groups"],
                    "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                    "code_challenge_methods_supported": ["S256"],
                    "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "email", "email_verified", "preferred_username", "groups"],
                }),
            )
        }
        ("GET", "/jwks") => {
            st.jwks_requests += 1;
            let kids: Vec<String> = st.published.iter().map(|k| k.kid.clone()).collect();
            st.events
                .push(format!("jwks fetched (publishing {kids:?})"));
            let keys: Vec<Value> = st.published.iter().map(|k| k.jwk()).collect();
            ServerResponse::json(200, &json!({ "keys": keys }))
        }
        ("GET", "/authorize") => authorize(&mut st, req),
        ("POST", "/token") => {
            st.token_requests += 1;
            let scenario = st.scenario.clone();
            let r = token(&mut st, req);
            st.events.push(format!(
                "token ({scenario:?}) -> {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
                    .chars()
                    .take(120)
                    .collect::<String>()
            ));
            r
        }
        ("GET", "/userinfo") | ("POST", "/userinfo") => ServerResponse::json(
            200,
            &json!({"sub": st.subject, "email": st.email, "email_verified": true,
                    "preferred_username": "alice", "groups": ["g1", "g2"]}),
        ),
        _ => ServerResponse::text(404, "not found"),
    }
}

fn authorize(st: &mut OpState, req: &ServerRequest) -> ServerResponse {
    let q = req.query();
    let get = |k: &str| q.get(k).cloned();
    let mut v = Vec::new();
    if get("response_type").as_deref() != Some("code") {
        v.push(format!("response_type={:?}", get("response_type")));
    }
    if get("client_id").as_deref() != Some(st.client_id.as_str()) {
        v.push(format!("client_id={:?}", get("client_id")));
    }
    let redirect_uri = get("redirect_uri").unwrap_or_default();
    if !st.redirect_uri.is_empty() && redirect_uri != st.redirect_uri {
        v.push(format!(
            "redirect_uri={redirect_uri:?} (registered {:?})",
            st.redirect_uri
        ));
    }
    if !get("scope")
        .unwrap_or_default()
        .split(' ')
        .any(|s| s == "openid")
    {
        v.push(format!("scope without openid: {:?}", get("scope")));
    }
    let state = get("state").unwrap_or_default();
    if state.len() < 16 {
        v.push(format!("weak or missing state {state:?}"));
    }
    let nonce = get("nonce");
    if nonce.as_deref().map(|n| n.len() < 16).unwrap_or(true) {
        v.push(format!("weak or missing nonce {nonce:?}"));
    }
    let challenge = get("code_challenge");
    if challenge.is_none() || get("code_challenge_method").as_deref() != Some("S256") {
        v.push(format!(
            "PKCE missing/not S256: code_challenge={challenge:?} method={:?}",
            get("code_challenge_method")
        ));
    }
    if !v.is_empty() {
        st.events.push(format!("authorize violations: {v:?}"));
        st.violations.extend(v.clone());
        if redirect_uri.is_empty() || get("client_id").as_deref() != Some(st.client_id.as_str()) {
            return ServerResponse::text(400, &format!("bad authorization request: {v:?}"));
        }
    }
    let code = super::random_token(24);
    st.codes.insert(
        code.clone(),
        AuthReq {
            nonce,
            state: state.clone(),
            challenge,
            redirect_uri: redirect_uri.clone(),
        },
    );
    let ret_state = if st.scenario == Scenario::StateMismatch {
        format!("{}x", &state[..state.len().saturating_sub(1)])
    } else {
        state
    };
    st.events
        .push(format!("authorize ok -> code {}", &code[..6]));
    let sep = if redirect_uri.contains('?') { '&' } else { '?' };
    let loc = format!(
        "{redirect_uri}{sep}code={}&state={}",
        url::form_urlencoded::byte_serialize(code.as_bytes()).collect::<String>(),
        url::form_urlencoded::byte_serialize(ret_state.as_bytes()).collect::<String>()
    );
    ServerResponse::redirect(&loc)
}

fn token(st: &mut OpState, req: &ServerRequest) -> ServerResponse {
    let f = req.form();
    // Client authentication: Basic (default) or post.
    let creds = match req.header("authorization").and_then(basic_credentials) {
        Some(c) => Some(c),
        None => match (f.get("client_id"), f.get("client_secret")) {
            (Some(i), Some(s)) => Some((i.clone(), s.clone())),
            _ => None,
        },
    };
    match creds {
        Some((i, s)) if i == st.client_id && s == st.client_secret => {}
        other => {
            st.violations
                .push(format!("token: bad client authentication {other:?}"));
            return oauth_error(401, "invalid_client", "client authentication failed");
        }
    }
    if f.get("grant_type").map(String::as_str) == Some("refresh_token") {
        return refresh(st, &f);
    }
    if f.get("grant_type").map(String::as_str) != Some("authorization_code") {
        st.violations
            .push(format!("token: grant_type {:?}", f.get("grant_type")));
        return oauth_error(
            400,
            "unsupported_grant_type",
            "authorization_code or refresh_token",
        );
    }
    let code = f.get("code").cloned().unwrap_or_default();
    let Some(ar) = st.codes.remove(&code) else {
        st.violations.push("token: unknown or reused code".into());
        return oauth_error(400, "invalid_grant", "unknown or used code");
    };
    if f.get("redirect_uri") != Some(&ar.redirect_uri) {
        st.violations.push(format!(
            "token: redirect_uri {:?} != {:?}",
            f.get("redirect_uri"),
            ar.redirect_uri
        ));
        return oauth_error(400, "invalid_grant", "redirect_uri mismatch");
    }
    let verifier = f.get("code_verifier").cloned().unwrap_or_default();
    if ar.challenge.as_deref() != Some(jwt::s256(&verifier).as_str()) {
        st.violations.push(format!(
            "token: PKCE verifier {verifier:?} does not match challenge {:?}",
            ar.challenge
        ));
        return oauth_error(400, "invalid_grant", "PKCE verification failed");
    }
    let _ = ar.state;

    let now = super::now();
    let mut claims = json!({
        "iss": st.issuer,
        "sub": st.subject,
        "aud": st.client_id,
        "exp": now + 300,
        "iat": now,
        "email": st.email,
        "email_verified": true,
        "preferred_username": "alice",
        "groups": ["g1", "g2"],
    });
    if let Some(n) = &ar.nonce {
        claims["nonce"] = json!(n);
    }
    if let (Some(c), Some(extra)) = (claims.as_object_mut(), st.extra_claims.as_object()) {
        for (k, v) in extra {
            c.insert(k.clone(), v.clone());
        }
    }
    let sc = st.scenario.clone();
    match &sc {
        Scenario::WrongIssuer => claims["iss"] = json!("http://127.0.0.1:1/not-the-issuer"),
        Scenario::WrongAudience => claims["aud"] = json!("some-other-client"),
        Scenario::Expired => {
            claims["exp"] = json!(now - 3600);
            claims["iat"] = json!(now - 7200);
        }
        Scenario::NonceMismatch => claims["nonce"] = json!("n-0123456789abcdef-not-yours"),
        Scenario::NonceMissing => {
            if let Some(o) = claims.as_object_mut() {
                o.remove("nonce");
            }
        }
        Scenario::EmailUnverified => claims["email_verified"] = json!(false),
        _ => {}
    }
    let signing = st.signing.clone();
    let id_token = match &sc {
        Scenario::BadSignature => {
            jwt::corrupt_signature(&jwt::sign_rs256(&signing, &signing.kid, &claims))
        }
        Scenario::AlgNone => jwt::sign_none(&signing.kid, &claims),
        Scenario::Hs256PublicPem => {
            jwt::sign_hs256(signing.public_pem().as_bytes(), &signing.kid, &claims)
        }
        Scenario::Hs256PublicDer => jwt::sign_hs256(&signing.public_der(), &signing.kid, &claims),
        Scenario::UnknownKid => jwt::sign_rs256(&st.k9, "k9", &claims),
        Scenario::WrongKeyForKid => jwt::sign_rs256(&st.k9, &signing.kid, &claims),
        _ => jwt::sign_rs256(&signing, &signing.kid, &claims),
    };
    let refresh_token = format!("rt-{}", super::random_token(16));
    st.refresh_tokens.insert(refresh_token.clone());
    let body = json!({
        "access_token": format!("at-{}", super::random_token(16)),
        "token_type": "Bearer",
        "expires_in": st.access_ttl,
        "scope": "openid email profile",
        "id_token": id_token,
        "refresh_token": refresh_token,
    });
    match sc {
        Scenario::TokenErrorJson => oauth_error(400, "invalid_grant", "authorization code expired"),
        Scenario::Token500 => oauth_error(500, "server_error", "the OP is having a bad day"),
        Scenario::TokenGarbage => ServerResponse {
            status: 200,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: b"<html>this is not json</html>".to_vec(),
            delay: None,
        },
        Scenario::TokenSlow(d) => {
            let mut r = ServerResponse::json(200, &body);
            r.delay = Some(d);
            r
        }
        _ => ServerResponse::json(200, &body),
    }
}

/// The refresh_token grant: the presented refresh token must be one issued and not used
/// yet (it is replaced by a new one: rotation); the new ID token is signed with the current
/// signing key, so after a key rotation a session's refresh brings a `kid` the relying party
/// has not seen.
fn refresh(st: &mut OpState, f: &HashMap<String, String>) -> ServerResponse {
    let presented = f.get("refresh_token").cloned().unwrap_or_default();
    if !st.refresh_tokens.remove(&presented) {
        st.events
            .push("refresh with an unknown or used token".into());
        return oauth_error(400, "invalid_grant", "unknown or used refresh token");
    }
    let now = super::now();
    let claims = json!({
        "iss": st.issuer,
        "sub": st.subject,
        "aud": st.client_id,
        "exp": now + 300,
        "iat": now,
        "email": st.email,
        "email_verified": true,
        "preferred_username": "alice",
        "groups": ["g1", "g2"],
    });
    let signing = st.signing.clone();
    let next = format!("rt-{}", super::random_token(16));
    st.refresh_tokens.insert(next.clone());
    st.refreshes += 1;
    st.events
        .push(format!("refresh ok (signed with {})", signing.kid));
    ServerResponse::json(
        200,
        &json!({
            "access_token": format!("at-{}", super::random_token(16)),
            "token_type": "Bearer",
            "expires_in": st.access_ttl,
            "id_token": jwt::sign_rs256(&signing, &signing.kid, &claims),
            "refresh_token": next,
        }),
    )
}

/// A stack (Recorder app, 2 s `idp_timeout`) whose OpenID Provider is `op`, with `op`
/// told the stack's redirect URI.
pub fn bad_op_stack(op: &BadOp) -> Stack {
    let st = Stack::builder()
        .idp(Idp::External { port: op.port() })
        .app(App::Recorder)
        .inline_secrets()
        .client_secret("bad-op-secret")
        .plugin("idp_timeout", json!("2s"))
        .start();
    op.set_redirect_uri(&st.redirect_url());
    st
}

/// Log in against the bad OP with the current scenario. Returns final response + hops.
pub fn bad_op_login(st: &Stack, b: &mut Browser) -> (Response, Vec<Hop>) {
    b.follow_get(&st.url("/private?from=e2e"))
}
