//! What the native benchmarks (`benches/core.rs`) and the hot-path profile
//! (`examples/hot_path.rs`) both start from: the configuration, a session shaped like the
//! IdP's, and the login issuer's metadata. Included by `#[path]` from each.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::json;
use wasm_oauth2_proxy::config::Config;
use wasm_oauth2_proxy::issuer::Metadata;
use wasm_oauth2_proxy::oidc::Discovery;
use wasm_oauth2_proxy::session::cookie;
use wasm_oauth2_proxy::session::{self, Session};

pub const NOW: u64 = 1_700_000_000;
pub const ISSUER: &str = "https://idp.example.com";
pub const COOKIE: &str = "_oauth2_proxy";

pub fn config() -> Config {
    let json = json!({
        "oidc_issuer_url": ISSUER,
        "idp_cluster": "idp",
        "client_id": "bench",
        "client_secret": "bench-secret",
        "cookie_secret": "0123456789abcdef0123456789abcdef",
        "email_domains": ["*"],
        "cookie_secure": false,
        "skip_auth_routes": ["GET=^/public/", "^/healthz$", "POST=^/hooks/[a-z]+$"],
        "skip_jwt_bearer_tokens": true,
    });
    match Config::parse(json.to_string().as_bytes(), &|_| None) {
        Ok(c) => c,
        Err(e) => panic!("bench config: {e}"),
    }
}

/// A session shaped like the IdP's: a JWT-sized ID token that repeats the groups.
pub fn session(groups: usize) -> Session {
    let groups: Vec<String> = (0..groups)
        .map(|i| format!("group-with-a-fairly-long-name-{i:03}"))
        .collect();
    let claims = json!({"sub": "john", "email": "john@example.com", "groups": groups});
    Session {
        user: "john".into(),
        email: "john@example.com".into(),
        preferred_username: "john".into(),
        email_verified: Some(true),
        groups,
        roles: Vec::new(),
        access_token: "a".repeat(43),
        id_token: format!(
            "eyJhbGciOiJSUzI1NiJ9.{}.{}",
            b64(claims.to_string().as_bytes()),
            "s".repeat(342)
        ),
        refresh_token: "r".repeat(43),
        created_at: NOW,
        expires_at: NOW + 3600,
        id: "b".repeat(22),
        sub: "john".into(),
        access_expires_at: NOW + 300,
        generation: 0,
        login_at: NOW,
        id_expires_at: NOW + 300,
        ..Session::default()
    }
}

pub fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

/// The login issuer loaded with `keys` (a JWKS document).
pub fn provider(keys: &str) -> Metadata {
    let doc = json!({
        "issuer": ISSUER,
        "authorization_endpoint": format!("{ISSUER}/authorize"),
        "token_endpoint": format!("{ISSUER}/token"),
        "jwks_uri": format!("{ISSUER}/jwks"),
    });
    match Discovery::parse(doc.to_string().as_bytes(), ISSUER)
        .and_then(|d| Metadata::new(d, keys.as_bytes(), NOW))
    {
        Ok(p) => p,
        Err(e) => panic!("provider: {e}"),
    }
}

/// The session cookie value for a session with `groups` groups.
pub fn sealed(c: &Config, groups: usize) -> String {
    session::seal(&c.keys.current.session, COOKIE, &session(groups), [7; 12]).unwrap_or_default()
}

/// The `Cookie` header a browser sends for `value`, chunked the way the gate sets it.
pub fn cookie_header(c: &Config, value: &str) -> String {
    let target = cookie::Target {
        host: "app.example.com",
        now: NOW,
    };
    let set = cookie::set_chunked(&c.cookie, &target, &[], COOKIE, value, 3600).unwrap_or_default();
    let mut pairs: Vec<String> = set
        .iter()
        .filter_map(|s| s.split(';').next().map(str::to_string))
        .collect();
    pairs.insert(0, "theme=dark".into());
    pairs.join("; ")
}
