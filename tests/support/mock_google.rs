//! Google as the `google` provider meets it: the endpoints on separate hosts, as Google
//! publishes them, each on its own listener here:
//!
//! | Google host                      | here       | serves                                  |
//! |----------------------------------|------------|-----------------------------------------|
//! | `accounts.google.com`            | `accounts` | discovery (the issuer), `/o/oauth2/v2/auth` |
//! | `oauth2.googleapis.com`          | `oauth2`   | `/token`, `/revoke`                     |
//! | `www.googleapis.com`             | `certs`    | `/oauth2/v3/certs` (JWKS)               |
//! | `openidconnect.googleapis.com`   | `userinfo` | `/v1/userinfo`                          |
//!
//! The authorization endpoint redirects straight back as the configured user; the token
//! endpoint checks client credentials (Basic or form), the code, `redirect_uri` and PKCE, and
//! issues an RS256 ID token with Google's claims (`azp`, `at_hash`, `hd` for Workspace
//! accounts only, the request's `nonce`). The authorize request's `hd` (a hint to Google's
//! account chooser) is recorded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{json, Value};

use super::jwt::{self, Key};
use super::mock_common::{
    approve, at_hash, authorization, code_issuer, listen, token_of, with_header, Grant, Late, Log,
};
use super::mock_oidc::{discovery, id_token, jwks, merged, redeem, revoke, want_openid, Refused};
use super::upstream::{MiniServer, ServerRequest, ServerResponse};

#[derive(Clone, Debug)]
pub struct GoogleUser {
    /// Google's numeric subject.
    pub sub: String,
    pub email: String,
    pub email_verified: bool,
    /// The Workspace domain; `None` for a consumer (gmail.com) account.
    pub hd: Option<String>,
    pub given_name: String,
    pub family_name: String,
}

impl GoogleUser {
    pub fn new(sub: &str, email: &str, hd: Option<&str>) -> GoogleUser {
        let local = email.split('@').next().unwrap_or("user");
        GoogleUser {
            sub: sub.to_string(),
            email: email.to_string(),
            email_verified: true,
            hd: hd.map(str::to_string),
            given_name: local.to_string(),
            family_name: "Mock".into(),
        }
    }
}

pub struct GoogleState {
    pub client_id: String,
    pub client_secret: String,
    pub users: HashMap<String, GoogleUser>,
    /// The email of the user who approves the next authorization request.
    pub current: String,
    /// Published keys; the first signs.
    pub keys: Vec<Key>,
    codes: HashMap<String, Grant>,
    tokens: HashMap<String, String>,
    pub violations: Vec<String>,
}

code_issuer!(GoogleState);

pub struct MockGoogle {
    pub accounts: MiniServer,
    pub oauth2: MiniServer,
    pub certs: MiniServer,
    pub userinfo: MiniServer,
    pub state: Arc<Mutex<GoogleState>>,
    pub log: Log,
}

/// Where each endpoint lives (filled in once every listener has its port).
#[derive(Clone, Default)]
struct Urls {
    issuer: String,
    oauth2: String,
    certs: String,
    userinfo: String,
}

impl MockGoogle {
    pub fn start(client_id: &str, client_secret: &str) -> MockGoogle {
        let state = Arc::new(Mutex::new(GoogleState {
            client_id: client_id.to_string(),
            client_secret: client_secret.to_string(),
            users: HashMap::new(),
            current: String::new(),
            keys: vec![
                Key::load("6f7254101f56e41cf35c9926de84a2d552b4c6f1", jwt::K1_PEM),
                Key::load("c7e04465649ffa606557650c7e65f0a87ae00fe8", jwt::K2_PEM),
            ],
            codes: HashMap::new(),
            tokens: HashMap::new(),
            violations: Vec::new(),
        }));
        let log = Log::default();
        let urls = Late::default();
        let listener = |name: &'static str| {
            listen(name, &state, &urls, &log, move |st, u, req| {
                handle(st, u, name, req)
            })
        };
        let (accounts, oauth2, certs, userinfo) = (
            listener("accounts"),
            listener("oauth2"),
            listener("certs"),
            listener("userinfo"),
        );
        urls.set(Urls {
            issuer: format!("http://127.0.0.1:{}", accounts.port),
            oauth2: format!("http://127.0.0.1:{}", oauth2.port),
            certs: format!("http://127.0.0.1:{}", certs.port),
            userinfo: format!("http://127.0.0.1:{}", userinfo.port),
        });
        MockGoogle {
            accounts,
            oauth2,
            certs,
            userinfo,
            state,
            log,
        }
    }

    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.accounts.port)
    }
    pub fn add_user(&self, u: GoogleUser) {
        self.st().users.insert(u.email.clone(), u);
    }
    pub fn approve_as(&self, email: &str) {
        self.st().current = email.to_string();
    }
    pub fn violations(&self) -> Vec<String> {
        self.st().violations.clone()
    }
    fn st(&self) -> MutexGuard<'_, GoogleState> {
        self.state.lock().expect("google")
    }
}

fn google_error(status: u16, code: &str, description: &str) -> ServerResponse {
    ServerResponse::json(
        status,
        &json!({"error": code, "error_description": description}),
    )
}

fn handle(
    st: &mut GoogleState,
    urls: &Urls,
    listener: &str,
    req: &ServerRequest,
) -> ServerResponse {
    match (listener, req.method.as_str(), req.path()) {
        ("accounts", "GET", "/.well-known/openid-configuration") => {
            ServerResponse::json(200, &google_discovery(urls))
        }
        ("accounts", "GET", "/o/oauth2/v2/auth") => authorize(st, req),
        ("oauth2", "POST", "/token") => token(st, urls, req),
        ("oauth2", "POST", "/revoke") => {
            if revoke(req, &mut st.tokens) {
                ServerResponse::json(200, &json!({}))
            } else {
                google_error(400, "invalid_token", "Token expired or revoked")
            }
        }
        ("certs", "GET", "/oauth2/v3/certs") => with_header(
            jwks(st.keys.iter().map(Key::jwk).collect()),
            "Cache-Control",
            "public, max-age=21600, must-revalidate, no-transform",
        ),
        ("userinfo", "GET", "/v1/userinfo") => {
            let Some(email) = token_of(req, &st.tokens) else {
                let r = google_error(401, "invalid_request", "Invalid Credentials");
                return with_header(
                    r,
                    "WWW-Authenticate",
                    "Bearer realm=\"https://accounts.google.com/\", error=\"invalid_token\"",
                );
            };
            let Some(u) = st.users.get(&email) else {
                return google_error(401, "invalid_request", "Invalid Credentials");
            };
            ServerResponse::json(200, &profile(u))
        }
        _ => ServerResponse::text(404, "Not Found"),
    }
}

/// The claims about `u` that the userinfo endpoint answers and the ID token carries.
fn profile(u: &GoogleUser) -> Value {
    let mut v = json!({
        "sub": u.sub,
        "name": format!("{} {}", u.given_name, u.family_name),
        "given_name": u.given_name,
        "family_name": u.family_name,
        "picture": "https://lh3.googleusercontent.com/a/default-user=s96-c",
        "email": u.email,
        "email_verified": u.email_verified,
    });
    if let Some(hd) = &u.hd {
        v["hd"] = json!(hd);
    }
    v
}

/// Google's discovery document, with its hosts replaced by the mock's listeners.
fn google_discovery(u: &Urls) -> Value {
    discovery(
        &u.issuer,
        json!({
            "authorization_endpoint": format!("{}/o/oauth2/v2/auth", u.issuer),
            "device_authorization_endpoint": format!("{}/device/code", u.oauth2),
            "token_endpoint": format!("{}/token", u.oauth2),
            "userinfo_endpoint": format!("{}/v1/userinfo", u.userinfo),
            "revocation_endpoint": format!("{}/revoke", u.oauth2),
            "jwks_uri": format!("{}/oauth2/v3/certs", u.certs),
            "response_types_supported": ["code", "token", "id_token", "code token", "code id_token", "token id_token", "code token id_token", "none"],
            "subject_types_supported": ["public"],
            "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "claims_supported": ["aud", "email", "email_verified", "exp", "family_name", "given_name", "iat", "iss", "name", "picture", "sub"],
            "code_challenge_methods_supported": ["plain", "S256"],
            "grant_types_supported": ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code", "urn:ietf:params:oauth:grant-type:jwt-bearer"],
        }),
    )
}

fn authorize(st: &mut GoogleState, req: &ServerRequest) -> ServerResponse {
    let Some((g, state)) = authorization(st, req) else {
        return ServerResponse::text(401, "Error 401: invalid_client");
    };
    let response_type = req.query().get("response_type").cloned();
    if response_type.as_deref() != Some("code") {
        st.violations
            .push(format!("authorize: response_type {response_type:?}"));
    }
    want_openid(st, &g);
    if !st.users.contains_key(&st.current) {
        return ServerResponse::text(500, &format!("mock: no user {:?}", st.current));
    }
    let code = format!("4/0A{}", super::random_token(30));
    approve(
        st,
        &code,
        g,
        &[
            ("state", &state),
            ("code", &code),
            ("scope", "email profile openid https://www.googleapis.com/auth/userinfo.email https://www.googleapis.com/auth/userinfo.profile"),
            ("authuser", "0"),
            ("prompt", "none"),
        ],
    )
}

fn token(st: &mut GoogleState, urls: &Urls, req: &ServerRequest) -> ServerResponse {
    let grant = match redeem(st, req) {
        Ok(g) => g,
        Err(Refused::Client) => return google_error(401, "invalid_client", "Unauthorized"),
        Err(r) => return google_error(r.status(), r.error(), "Bad Request"),
    };
    let Some(u) = st.users.get(&grant.user).cloned() else {
        return google_error(400, "invalid_grant", "Bad Request");
    };
    let access_token = format!("ya29.a0{}", super::random_token(40));
    st.tokens.insert(access_token.clone(), u.email.clone());
    let now = super::now();
    let claims = json!({
        "iss": urls.issuer,
        "azp": st.client_id,
        "aud": st.client_id,
        "at_hash": at_hash(&access_token),
        "iat": now,
        "exp": now + 3600,
    });
    let id_token = id_token(&st.keys[0], &grant, merged(profile(&u), claims));
    ServerResponse::json(
        200,
        &json!({
            "access_token": access_token,
            "expires_in": 3599,
            "scope": "openid https://www.googleapis.com/auth/userinfo.email https://www.googleapis.com/auth/userinfo.profile",
            "token_type": "Bearer",
            "id_token": id_token,
        }),
    )
}
