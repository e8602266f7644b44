//! End-to-end tests of `skip_jwt_bearer_tokens` (oauth2-proxy's machine-client path): a
//! real Envoy running the optimized filter, the real oidc-provider IdP (`idp/server.js`)
//! as the login issuer, and the Rust `BadOp` as an `extra_jwt_issuers` entry whose
//! discovery and JWKS the filter fetches through its own Envoy cluster (`idp_clusters`).
//!
//! Run with (all three variables are required; a missing one FAILS the tests):
//!
//! ```sh
//! WOP_ENVOY=/path/to/envoy WOP_WASM=build/wasm_oauth2_proxy.wasm WOP_ROOT=$PWD \
//!     cargo test --test e2e bearer:: -- --test-threads 2
//! ```

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use rsa::pkcs8::EncodePublicKey;
use serde_json::{json, Value};

use crate::support::bad_op::BadOp;
use crate::support::http::{raw_request, Browser, Response, BROWSER_ACCEPT};
use crate::support::jwt::{self, Key};
use crate::support::stack::{App, Idp, Stack, StackBuilder, CLIENT_ID};
use crate::support::upstream::{Recorder, ServerRequest};

/// The audience the extra issuer's tokens must carry (`extra_jwt_issuers`: `issuer=audience`).
const EXTRA_AUD: &str = "extra-aud";
/// RFC 6750 3.1: what a refused token gets, exactly.
const INVALID_TOKEN: &str = "Bearer error=\"invalid_token\"";
const SESSION: &str = "_oauth2_proxy";
const API: (&str, &str) = ("Accept", "application/json");
const HTML: (&str, &str) = ("Accept", BROWSER_ACCEPT);

/// Identity headers a client tries to forge on every accepted request: none of these
/// values may reach the app.
const SPOOFS: &[(&str, &str)] = &[
    ("X-Forwarded-User", "admin@example.com"),
    ("X-Forwarded-Email", "admin@example.com"),
    ("X-Forwarded-Groups", "admins"),
    ("X-Forwarded-Preferred-Username", "admin"),
    ("X-Forwarded-Access-Token", "forged-access-token"),
    ("X-Auth-Request-Email", "admin@example.com"),
    ("X-Auth-Request-User", "admin@example.com"),
    ("X-Auth-Request-Groups", "admins"),
    ("GAP-Auth", "admin@example.com"),
];

// ------------------------------------------------------------------------- helpers

/// The stack every test starts from: the real IdP as login issuer, the Recorder app,
/// bearer tokens on, `email_domains: [example.com]`, and `op` (if any) configured as the
/// extra issuer `<op issuer>=extra-aud`, reached through the Envoy cluster `extra`.
fn builder(op: Option<&BadOp>) -> StackBuilder {
    let mut b = Stack::builder()
        .app(App::Recorder)
        .plugin("skip_jwt_bearer_tokens", json!(true))
        .plugin("pass_authorization_header", json!(true))
        .plugin("pass_access_token", json!(true))
        .plugin("email_domains", json!(["example.com"]));
    if let Some(op) = op {
        b = b
            .plugin(
                "extra_jwt_issuers",
                json!([format!("{}={EXTRA_AUD}", op.issuer())]),
            )
            .plugin(
                "idp_clusters",
                json!({ format!("127.0.0.1:{}", op.port()): "extra" }),
            )
            .extra_cluster("extra", op.port());
    }
    b
}

/// IdP, app and Envoy, waiting until Envoy serves.
fn start(make: impl Fn() -> StackBuilder) -> Stack {
    let mut st = make().start_no_envoy();
    st.start_envoy()
        .unwrap_or_else(|e| st.fail(&format!("envoy did not become ready: {e}")));
    st
}

fn recorder(st: &Stack) -> &Recorder {
    st.recorder
        .as_ref()
        .expect("the stack runs the Recorder app")
}

/// One request from a fresh client (no cookie jar), headers sent exactly as given.
fn get(st: &Stack, path: &str, headers: &[(&str, &str)]) -> Response {
    let hs: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    raw_request("GET", &st.url(path), &hs, None, Duration::from_secs(20))
        .unwrap_or_else(|e| st.fail(&format!("GET {path}: {e}")))
}

fn auth_header(token: &str) -> String {
    format!("Bearer {token}")
}

/// Every value the app received for `name` (any case).
fn values(req: &ServerRequest, name: &str) -> Vec<String> {
    req.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
        .collect()
}

/// Sends the request and asserts that it reached the app, once, at `path`; returns what
/// the app received.
fn expect_app(st: &Stack, ctx: &str, path: &str, headers: &[(&str, &str)]) -> ServerRequest {
    let rec = recorder(st);
    let n = rec.count();
    let r = get(st, path, headers);
    st.check(r.status == 200, || {
        format!("{ctx}: expected the app's 200, got {}", r.short())
    });
    let seen = rec.requests();
    st.check(seen.len() == n + 1, || {
        format!(
            "{ctx}: the app must have received exactly one request, got {}",
            seen.len() - n
        )
    });
    let last = seen[n].clone();
    st.check(last.target == path, || {
        format!("{ctx}: the app received {} instead of {path}", last.target)
    });
    last
}

/// Asserts the app received exactly these identity headers (each once) and none of the
/// forged values.
fn expect_identity(st: &Stack, ctx: &str, req: &ServerRequest, want: &[(&str, &str)]) {
    for (name, value) in want {
        let got = values(req, name);
        st.check(got.len() == 1 && got[0] == *value, || {
            format!(
                "{ctx}: the app's {name} is {got:?}, want exactly [{value:?}]\nall: {:?}",
                req.headers
            )
        });
    }
    st.check(values(req, "gap-auth").is_empty(), || {
        format!(
            "{ctx}: a client's GAP-Auth reached the app: {:?}",
            req.headers
        )
    });
    for (name, forged) in SPOOFS {
        st.check(!values(req, name).iter().any(|v| v == forged), || {
            format!(
                "{ctx}: the client's forged {name}: {forged} reached the app: {:?}",
                req.headers
            )
        });
    }
}

/// Asserts an RFC 6750 refusal that never reached the app: 401, `WWW-Authenticate:
/// Bearer error="invalid_token"` (exactly one), a JSON `invalid_token` error, no redirect,
/// no cookie.
fn expect_invalid_token(st: &Stack, ctx: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    let rec = recorder(st);
    let n = rec.count();
    let r = get(st, path, headers);
    check_invalid_token(st, ctx, &r);
    st.check(rec.count() == n, || {
        format!("{ctx}: the app received the request:\n{}", rec.summary())
    });
    r
}

fn check_invalid_token(st: &Stack, ctx: &str, r: &Response) {
    st.check(
        r.status == 401 && r.headers_all("www-authenticate") == [INVALID_TOKEN],
        || {
            format!(
                "{ctx}: expected 401 with WWW-Authenticate: {INVALID_TOKEN}, got {}",
                r.short()
            )
        },
    );
    let body: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    st.check(body["error"] == "invalid_token", || {
        format!("{ctx}: the 401 body must say invalid_token: {}", r.short())
    });
    st.check(
        r.header("location").is_none() && r.headers_all("set-cookie").is_empty(),
        || {
            format!(
                "{ctx}: a refusal must not redirect or set cookies: {}",
                r.short()
            )
        },
    );
}

/// Asserts a 302 to the login issuer's authorization endpoint that did not reach the app.
fn expect_login_redirect(st: &Stack, ctx: &str, path: &str, headers: &[(&str, &str)]) {
    let rec = recorder(st);
    let n = rec.count();
    let r = get(st, path, headers);
    let authz = format!("{}/", st.issuer());
    st.check(
        r.status == 302
            && r.location()
                .is_some_and(|l| l.as_str().starts_with(&authz) && l.query().is_some()),
        || {
            format!(
                "{ctx}: expected a 302 to the IdP ({authz}…), got {}",
                r.short()
            )
        },
    );
    let q: std::collections::HashMap<String, String> = r
        .location()
        .map(|l| l.query_pairs().into_owned().collect())
        .unwrap_or_default();
    st.check(
        q.get("client_id").map(String::as_str) == Some(CLIENT_ID)
            && q.get("response_type").map(String::as_str) == Some("code"),
        || {
            format!(
                "{ctx}: the redirect is not an authorization request: {}",
                r.short()
            )
        },
    );
    st.check(rec.count() == n, || {
        format!("{ctx}: the app received the request:\n{}", rec.summary())
    });
}

/// john after a browser login through the gate.
struct John {
    /// The ID token the app received in `Authorization: Bearer …`.
    token: String,
    /// The session's access token, as the app received it in `X-Forwarded-Access-Token`.
    access: String,
    /// The browser holding john's session cookie.
    browser: Browser,
}

/// Logs in as john through the gate (the Recorder echoes `/headers`) and reads his ID
/// token and access token from what the app received.
fn john(st: &Stack) -> John {
    let mut b = Browser::new();
    let (resp, _) = st.login_ok(&mut b, "/headers", "john");
    let h = resp.json();
    let authz = h["authorization"].as_str().unwrap_or_default().to_string();
    let token = authz
        .strip_prefix("Bearer ")
        .unwrap_or_else(|| st.fail(&format!("the app got no Bearer ID token after login: {h}")))
        .to_string();
    let access = h["x-forwarded-access-token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    st.check(!access.is_empty() && access != token, || {
        format!("the app got no separate access token after login: {h}")
    });
    let claims = jwt::payload(&token).unwrap_or(Value::Null);
    st.check(
        claims["iss"] == json!(st.issuer())
            && claims["aud"] == json!(CLIENT_ID)
            && claims["email"] == "john@example.com",
        || format!("john's ID token has unexpected claims: {claims}"),
    );
    John {
        token,
        access,
        browser: b,
    }
}

/// The session cookie header of a logged-in browser.
fn session_cookie(st: &Stack, b: &Browser) -> String {
    let u = url::Url::parse(&st.url("/")).expect("url");
    let c = b
        .cookie_header(&u)
        .unwrap_or_else(|| st.fail("the browser holds no cookie after login"));
    st.check(c.contains(SESSION), || format!("no session cookie in {c}"));
    c
}

/// john's identity as the app must receive it: `token` is his ID token, `access` what the
/// app gets as access token (the token itself when it was the credential, the session's
/// access token when the session was).
fn john_headers(token: &str, access: &str) -> Vec<(&'static str, String)> {
    vec![
        ("x-forwarded-user", "john@example.com".into()),
        ("x-forwarded-email", "john@example.com".into()),
        ("x-forwarded-preferred-username", "john".into()),
        ("x-forwarded-groups", "developers".into()),
        ("x-forwarded-access-token", access.into()),
        ("x-auth-request-email", "john@example.com".into()),
        ("authorization", auth_header(token)),
    ]
}

fn as_refs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(k, s)| (*k, s.as_str())).collect()
}

/// Claims of a good token from the extra issuer, with `changes` applied (null removes).
fn op_claims(op: &BadOp, changes: Value) -> Value {
    let now = crate::support::now();
    let mut c = json!({
        "iss": op.issuer(),
        "sub": "svc-alice",
        "aud": EXTRA_AUD,
        "exp": now + 300,
        "iat": now,
        "email": "alice@example.com",
        "email_verified": true,
        "preferred_username": "alice",
        "groups": ["g1", "g2"],
        // Every token distinct, so none is answered from the filter's cache.
        "jti": crate::support::random_token(9),
    });
    for (k, v) in changes.as_object().expect("object") {
        if v.is_null() {
            c.as_object_mut().expect("object").remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

fn op_key(op: &BadOp, which: &str) -> Key {
    let st = op.state.lock().expect("lock");
    match which {
        "k1" => st.k1.clone(),
        "k2" => st.k2.clone(),
        _ => st.k9.clone(),
    }
}

/// A token from the extra issuer signed with its published key k1.
fn op_token(op: &BadOp, changes: Value) -> String {
    jwt::sign_rs256(&op_key(op, "k1"), "k1", &op_claims(op, changes))
}

fn b64_json(v: &Value) -> String {
    B64URL.encode(serde_json::to_vec(v).expect("json"))
}

/// The IdP's published RSA signing key (the one whose kid `token` names), as SPKI PEM and DER.
fn idp_public_key(st: &Stack, kid: &str) -> (String, Vec<u8>) {
    let fetch = |url: &str| {
        raw_request("GET", url, &[], None, Duration::from_secs(5))
            .unwrap_or_else(|e| st.fail(&format!("GET {url}: {e}")))
            .json()
    };
    let disco = fetch(&format!("{}/.well-known/openid-configuration", st.issuer()));
    let jwks = fetch(disco["jwks_uri"].as_str().expect("jwks_uri"));
    let key = jwks["keys"]
        .as_array()
        .and_then(|ks| ks.iter().find(|k| k["kid"] == kid))
        .unwrap_or_else(|| st.fail(&format!("kid {kid} not in the IdP's JWKS: {jwks}")));
    let num = |f: &str| {
        rsa::BigUint::from_bytes_be(&B64URL.decode(key[f].as_str().expect("n/e")).expect("b64"))
    };
    let public = rsa::RsaPublicKey::new(num("n"), num("e")).expect("rsa key");
    let pem = public
        .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
        .expect("pem");
    let der = public.to_public_key_der().expect("der").as_bytes().to_vec();
    (pem, der)
}

// ============================================================================ tests

/// A real ID token, taken from what the app received after john's browser login, is a
/// credential on its own: a client with no cookies reaches the app as john, with the token
/// itself (and nothing the client sent) as the app's Authorization and access token; the
/// verified token keeps working from the cache; /oauth2/auth and /oauth2/userinfo take it.
#[test]
fn t01_idp_token_reaches_the_app_as_its_user() {
    let st = start(|| builder(None));
    let token = john(&st).token;
    let authz = auth_header(&token);
    // The token is the credential: it is also what the app gets as access token.
    let want = john_headers(&token, &token);

    // No credential: an API client is told a bearer token would do; a browser logs in.
    let r = get(&st, "/api/items", &[API]);
    st.check(
        r.status == 401 && r.headers_all("www-authenticate") == ["Bearer"],
        || {
            format!(
                "no credential: expected 401 + WWW-Authenticate: Bearer, got {}",
                r.short()
            )
        },
    );
    expect_login_redirect(&st, "browser without credential", "/api/items", &[HTML]);

    // A fresh client with the token (and forged identity headers) reaches the app as john.
    let mut headers = vec![API, ("Authorization", authz.as_str())];
    headers.extend_from_slice(SPOOFS);
    let seen = expect_app(&st, "john's ID token as bearer", "/api/items?n=0", &headers);
    expect_identity(&st, "john's ID token as bearer", &seen, &as_refs(&want));
    st.check(values(&seen, "cookie").is_empty(), || {
        format!(
            "the app got a cookie the client never sent: {:?}",
            seen.headers
        )
    });

    // The cached path: the same token many times, over new connections (every worker),
    // with and without forged headers, as API client and as browser.
    let t0 = Instant::now();
    for i in 1..=40 {
        let path = format!("/api/items?n={i}");
        let mut hs = vec![
            if i % 2 == 0 { API } else { HTML },
            ("Authorization", authz.as_str()),
        ];
        if i % 3 == 0 {
            hs.extend_from_slice(SPOOFS);
        }
        let ctx = format!("request {i} with the same token");
        let seen = expect_app(&st, &ctx, &path, &hs);
        expect_identity(&st, &ctx, &seen, &as_refs(&want));
    }
    eprintln!("t01: 40 cached bearer requests in {:?}", t0.elapsed());

    // The lower-case scheme is the same credential (RFC 7235: schemes are case-insensitive).
    let lower = format!("bearer {token}");
    let seen = expect_app(
        &st,
        "`bearer` scheme",
        "/lower",
        &[API, ("Authorization", &lower)],
    );
    expect_identity(&st, "`bearer` scheme", &seen, &as_refs(&want));

    // /oauth2/auth: 202 with john's X-Auth-Request-* headers; never proxied.
    let rec = recorder(&st);
    let n = rec.count();
    let r = get(&st, "/oauth2/auth", &[API, ("Authorization", &authz)]);
    st.check(r.status == 202, || {
        format!("/oauth2/auth with the bearer: {}", r.short())
    });
    for (k, v) in [
        ("x-auth-request-user", "john@example.com"),
        ("x-auth-request-email", "john@example.com"),
        ("x-auth-request-groups", "developers"),
    ] {
        st.check(r.header(k) == Some(v), || {
            format!(
                "/oauth2/auth: {k} = {:?}, want {v}: {}",
                r.header(k),
                r.short()
            )
        });
    }
    // /oauth2/userinfo: john's JSON.
    let r = get(&st, "/oauth2/userinfo", &[API, ("Authorization", &authz)]);
    st.check(r.status == 200, || {
        format!("/oauth2/userinfo with the bearer: {}", r.short())
    });
    let u = r.json();
    st.check(
        u["email"] == "john@example.com"
            && u["user"] == "john@example.com"
            && u["preferredUsername"] == "john"
            && u["groups"] == json!(["developers"]),
        || format!("/oauth2/userinfo body: {u}"),
    );
    // Both refuse a token that does not verify (one signature byte changed).
    let bad = auth_header(&jwt::corrupt_signature(&token));
    for p in ["/oauth2/auth", "/oauth2/userinfo"] {
        let r = get(&st, p, &[API, ("Authorization", &bad)]);
        st.check(r.status == 401, || {
            format!("{p} with a forged bearer: {}", r.short())
        });
    }
    st.check(rec.count() == n, || {
        format!("/oauth2/* must not be proxied:\n{}", rec.summary())
    });
}

/// Everything that is not the exact token the IdP signed is refused with RFC 6750's
/// invalid_token and never reaches the app — checked after the genuine token is in the
/// filter's cache, so a cache keyed on anything looser than the exact token would show.
#[test]
fn t02_forged_tampered_and_foreign_tokens_are_refused() {
    let op = BadOp::start("unused", "unused");
    let stranger = BadOp::start("unused", "unused");
    let st = start(|| builder(Some(&op)));
    let token = john(&st).token;
    expect_app(
        &st,
        "the genuine token (control, now cached)",
        "/control",
        &[API, ("Authorization", &auth_header(&token))],
    );

    let parts: Vec<&str> = token.split('.').collect();
    let (h64, p64, s64) = (parts[0], parts[1], parts[2]);
    let header = jwt::header(&token).expect("header");
    let claims = jwt::payload(&token).expect("payload");
    let kid = header["kid"]
        .as_str()
        .expect("the IdP's token names its kid")
        .to_string();
    let (pem, der) = idp_public_key(&st, &kid);

    let mut richer = claims.clone();
    richer["email"] = json!("admin@example.com");
    richer["groups"] = json!(["admins"]);
    let mut longer = claims.clone();
    longer["exp"] = json!(claims["exp"].as_u64().unwrap_or(0) + 86_400 * 365);

    let now = crate::support::now();
    let stranger_claims = json!({
        "iss": stranger.issuer(), "sub": "x", "aud": CLIENT_ID, "exp": now + 300, "iat": now,
        "email": "x@example.com", "email_verified": true,
    });
    let mut main_iss = claims.clone();
    main_iss["iat"] = json!(now);
    main_iss["exp"] = json!(now + 300);
    let k1 = op_key(&op, "k1");

    let cases: Vec<(&str, String)> = vec![
        ("one signature byte changed", jwt::corrupt_signature(&token)),
        (
            "payload changed (email, groups) and re-encoded",
            format!("{h64}.{}.{s64}", b64_json(&richer)),
        ),
        (
            "payload changed (exp + 1 year)",
            format!("{h64}.{}.{s64}", b64_json(&longer)),
        ),
        (
            "truncated by 10 characters",
            token[..token.len() - 10].to_string(),
        ),
        ("signature dropped", format!("{h64}.{p64}")),
        ("signature empty", format!("{h64}.{p64}.")),
        (
            "truncated inside the payload",
            token[..h64.len() + 1 + p64.len() / 2].to_string(),
        ),
        ("a fourth segment appended", format!("{token}.{s64}")),
        ("alg none", jwt::sign_none(&kid, &claims)),
        (
            "HS256 keyed with the IdP's public key (PEM)",
            jwt::sign_hs256(pem.as_bytes(), &kid, &claims),
        ),
        (
            "HS256 keyed with the IdP's public key (DER)",
            jwt::sign_hs256(&der, &kid, &claims),
        ),
        ("garbage", "garbage".into()),
        ("empty", String::new()),
        (
            "over 16 KB (the filter's size bound)",
            jwt::sign_rs256(&k1, "k1", &json!({"iss": "x", "pad": "x".repeat(20_000)})),
        ),
        ("three garbage segments", "not.a.jwt".into()),
        (
            "JSON without iss",
            format!(
                "{}.{}.{s64}",
                b64_json(&json!({"alg": "RS256"})),
                b64_json(&json!({"sub": "x"}))
            ),
        ),
        (
            "issuer not configured (a live OP nobody named)",
            jwt::sign_rs256(
                &stranger.state.lock().expect("lock").k1,
                "k1",
                &stranger_claims,
            ),
        ),
        (
            "the IdP's iss, signed with the extra issuer's key (kid k1)",
            jwt::sign_rs256(&k1, "k1", &main_iss),
        ),
        (
            "the IdP's iss and kid, signed with the extra issuer's key",
            jwt::sign_rs256(&k1, &kid, &main_iss),
        ),
    ];
    for (name, forged) in &cases {
        let ctx = format!("token {name}");
        let a = auth_header(forged);
        let mut hs = vec![API, ("Authorization", a.as_str())];
        hs.extend_from_slice(SPOOFS);
        expect_invalid_token(&st, &ctx, "/api/items", &hs);
    }
    // Two Authorization headers are ambiguous, whatever they hold: never a credential.
    let good = auth_header(&token);
    for (name, second) in [
        ("the same token twice", good.clone()),
        (
            "the token, then Basic credentials",
            "Basic am9objpqb2hu".to_string(),
        ),
        (
            "the token, then a forged token",
            auth_header(&jwt::corrupt_signature(&token)),
        ),
    ] {
        // (Envoy folds repeated Authorization headers into one comma-joined value before
        // the filter sees them; either way the result must be a refusal.)
        expect_invalid_token(
            &st,
            &format!("two Authorization headers: {name}"),
            "/api/items",
            &[API, ("Authorization", &good), ("Authorization", &second)],
        );
    }
    // Whatever comes first, two headers never let the token through.
    let rec = recorder(&st);
    let n = rec.count();
    let r = get(
        &st,
        "/api/items",
        &[
            API,
            ("Authorization", "Basic am9objpqb2hu"),
            ("Authorization", &good),
        ],
    );
    st.check(r.status == 401 && rec.count() == n, || {
        format!(
            "Basic, then the token: expected 401 and no app request, got {}",
            r.short()
        )
    });

    let s = stranger.state.lock().expect("lock");
    st.check(s.discovery_requests == 0 && s.jwks_requests == 0, || {
        format!(
            "the filter contacted an issuer nobody configured ({} discovery, {} JWKS requests)",
            s.discovery_requests, s.jwks_requests
        )
    });
    drop(s);
    // And the genuine token is still fine.
    expect_app(
        &st,
        "the genuine token after the forgeries",
        "/after",
        &[API, ("Authorization", &good)],
    );
}

/// The extra issuer, verified with its own discovery and JWKS fetched through its own
/// cluster: a good token is accepted with its claims as the identity; one wrong in any
/// registered claim is refused; the access rules apply to its email.
#[test]
fn t03_extra_issuer_tokens_are_checked_like_id_tokens() {
    let op = BadOp::start("unused", "unused");
    let st = start(|| builder(Some(&op)));

    let good = op_token(&op, json!({}));
    let authz = auth_header(&good);
    let mut hs = vec![API, ("Authorization", authz.as_str())];
    hs.extend_from_slice(SPOOFS);
    let seen = expect_app(&st, "a good extra-issuer token", "/svc", &hs);
    expect_identity(
        &st,
        "a good extra-issuer token",
        &seen,
        &[
            ("x-forwarded-user", "alice@example.com"),
            ("x-forwarded-email", "alice@example.com"),
            ("x-forwarded-preferred-username", "alice"),
            ("x-forwarded-groups", "g1,g2"),
            ("x-forwarded-access-token", &good),
            ("authorization", &authz),
        ],
    );
    {
        let s = op.state.lock().expect("lock");
        st.check(s.discovery_requests >= 1 && s.jwks_requests >= 1, || {
            format!(
                "the extra issuer's metadata was not fetched from it ({} discovery, {} JWKS)",
                s.discovery_requests, s.jwks_requests
            )
        });
    }

    // What the brief leaves optional is optional: no iat, no nonce; and no azp rule for
    // a bearer token with several audiences.
    let ok_cases = [
        ("without iat", json!({"iat": null})),
        (
            "aud a list holding ours, azp someone else",
            json!({"aud": ["other-api", EXTRA_AUD], "azp": "other-api"}),
        ),
        (
            "iat 30 s ahead (inside the 60 s skew)",
            json!({"iat": crate::support::now() + 30}),
        ),
    ];
    for (name, changes) in ok_cases {
        let t = op_token(&op, changes);
        let seen = expect_app(
            &st,
            name,
            "/svc/ok",
            &[API, ("Authorization", &auth_header(&t))],
        );
        expect_identity(
            &st,
            name,
            &seen,
            &[("x-forwarded-email", "alice@example.com")],
        );
    }
    // No email claim: no email means no entry under email_domains: 403.
    let t = op_token(&op, json!({"email": null, "email_verified": null}));
    let rec = recorder(&st);
    let n = rec.count();
    let r = get(&st, "/svc", &[API, ("Authorization", &auth_header(&t))]);
    st.check(r.status == 403 && rec.count() == n, || {
        format!(
            "a token without email under email_domains [example.com]: {}",
            r.short()
        )
    });

    let now = crate::support::now();
    let bad_cases = [
        (
            "expired (an hour ago)",
            json!({"exp": now - 3600, "iat": now - 7200}),
        ),
        (
            "expired just beyond the 60 s skew",
            json!({"exp": now - 120}),
        ),
        ("not yet valid (nbf in an hour)", json!({"nbf": now + 3600})),
        (
            "issued in the future (iat in an hour)",
            json!({"iat": now + 3600}),
        ),
        ("wrong audience", json!({"aud": "some-other-api"})),
        (
            "the login client's audience (not this issuer's)",
            json!({"aud": CLIENT_ID}),
        ),
        ("audience list without ours", json!({"aud": ["a", "b"]})),
        ("no aud", json!({"aud": null})),
        ("no exp", json!({"exp": null})),
        ("no sub", json!({"sub": null})),
        ("iss of the login IdP", json!({"iss": st.issuer()})),
        (
            "iss with a trailing slash",
            json!({"iss": format!("{}/", op.issuer())}),
        ),
        (
            "iss of a path below the issuer",
            json!({"iss": format!("{}/tenant", op.issuer())}),
        ),
        ("no iss", json!({"iss": null})),
    ];
    for (name, changes) in bad_cases {
        let t = op_token(&op, changes);
        let a = auth_header(&t);
        let mut hs = vec![API, ("Authorization", a.as_str())];
        hs.extend_from_slice(SPOOFS);
        expect_invalid_token(&st, &format!("extra-issuer token {name}"), "/svc", &hs);
    }
    // Signed with a key the extra issuer never published, but claiming its kid k1.
    let k9 = op_key(&op, "k9");
    let t = jwt::sign_rs256(&k9, "k1", &op_claims(&op, json!({})));
    expect_invalid_token(
        &st,
        "extra-issuer claims signed by another key under kid k1",
        "/svc",
        &[API, ("Authorization", &auth_header(&t))],
    );

    // The access rules: an email outside email_domains gets 403 and never the app.
    for (name, changes) in [
        (
            "email outside email_domains",
            json!({"email": "mallory@evil.org"}),
        ),
        (
            "subdomain not listed",
            json!({"email": "bob@sub.example.com"}),
        ),
        (
            "two @ ending in the allowed domain",
            json!({"email": "mallory@evil.org@example.com"}),
        ),
        ("unverified email", json!({"email_verified": false})),
    ] {
        let t = op_token(&op, changes);
        let a = auth_header(&t);
        for (kind, accept) in [("API", API), ("browser", HTML)] {
            let n = rec.count();
            let r = get(&st, "/svc", &[accept, ("Authorization", &a)]);
            st.check(r.status == 403 && rec.count() == n, || {
                format!(
                    "{name} ({kind}): expected 403 and no app request, got {}",
                    r.short()
                )
            });
            st.check(r.header("location").is_none(), || {
                format!(
                    "{name} ({kind}): a valid token must not be sent to log in: {}",
                    r.short()
                )
            });
        }
        // The 403 holds on the cached path too.
        let n = rec.count();
        let r = get(&st, "/svc", &[API, ("Authorization", &a)]);
        st.check(r.status == 403 && rec.count() == n, || {
            format!("{name} (again, cached): {}", r.short())
        });
    }
    // /oauth2/auth and /oauth2/userinfo apply the same rules.
    let t = auth_header(&op_token(&op, json!({"email": "mallory@evil.org"})));
    for p in ["/oauth2/auth", "/oauth2/userinfo"] {
        let r = get(&st, p, &[API, ("Authorization", &t)]);
        st.check(r.status == 403, || {
            format!("{p} with an outside email: {}", r.short())
        });
    }
    let r = get(&st, "/oauth2/userinfo", &[API, ("Authorization", &authz)]);
    st.check(
        r.status == 200 && r.json()["email"] == "alice@example.com",
        || {
            format!(
                "/oauth2/userinfo with the good extra-issuer token: {}",
                r.short()
            )
        },
    );
}

/// `bearer_token_login_fallback`: on (the default), an invalid token is no worse than no
/// token — a browser is sent to log in and a valid session cookie still counts; off, an
/// invalid token is a 401 invalid_token whatever else the request carries.
#[test]
fn t04_bearer_token_login_fallback() {
    let mut st = start(|| builder(None));
    let j = john(&st);
    let (token, cookie) = (j.token.clone(), session_cookie(&st, &j.browser));
    let forged = auth_header(&jwt::corrupt_signature(&token));
    // With the session as credential the app gets the session's access token; with the
    // token as credential, the token: so the access token says which credential counted.
    let by_session = john_headers(&token, &j.access);
    let by_token = john_headers(&token, &token);

    // Default (true).
    expect_login_redirect(
        &st,
        "fallback on: browser with an invalid bearer",
        "/page",
        &[HTML, ("Authorization", &forged)],
    );
    expect_invalid_token(
        &st,
        "fallback on: API client with an invalid bearer",
        "/page",
        &[API, ("Authorization", &forged)],
    );
    for (kind, accept) in [("browser", HTML), ("API", API)] {
        let ctx = format!("fallback on: invalid bearer + john's session cookie ({kind})");
        let seen = expect_app(
            &st,
            &ctx,
            "/page",
            &[accept, ("Authorization", &forged), ("Cookie", &cookie)],
        );
        // The app gets the session's ID token, never the client's forged one.
        expect_identity(&st, &ctx, &seen, &as_refs(&by_session));
    }
    // A valid session plus a valid token: the token is the credential.
    let valid = auth_header(&token);
    let seen = expect_app(
        &st,
        "fallback on: valid bearer + session",
        "/page",
        &[API, ("Authorization", &valid), ("Cookie", &cookie)],
    );
    expect_identity(
        &st,
        "fallback on: valid bearer + session",
        &seen,
        &as_refs(&by_token),
    );

    // Off.
    st.plugin_config["bearer_token_login_fallback"] = json!(false);
    st.restart_envoy();
    for (kind, hs) in [
        ("browser", vec![HTML, ("Authorization", forged.as_str())]),
        ("API client", vec![API, ("Authorization", forged.as_str())]),
        (
            "browser with john's session cookie",
            vec![
                HTML,
                ("Authorization", forged.as_str()),
                ("Cookie", cookie.as_str()),
            ],
        ),
        (
            "API client with john's session cookie",
            vec![
                API,
                ("Authorization", forged.as_str()),
                ("Cookie", cookie.as_str()),
            ],
        ),
    ] {
        expect_invalid_token(
            &st,
            &format!("fallback off: {kind} with an invalid bearer"),
            "/page",
            &hs,
        );
    }
    // Controls: the session alone and the valid token alone still work.
    let seen = expect_app(
        &st,
        "fallback off: session alone",
        "/page",
        &[HTML, ("Cookie", &cookie)],
    );
    expect_identity(
        &st,
        "fallback off: session alone",
        &seen,
        &as_refs(&by_session),
    );
    let seen = expect_app(
        &st,
        "fallback off: valid token alone",
        "/page",
        &[API, ("Authorization", &valid)],
    );
    expect_identity(
        &st,
        "fallback off: valid token alone",
        &seen,
        &as_refs(&by_token),
    );
    expect_login_redirect(
        &st,
        "fallback off: browser without credential",
        "/page",
        &[HTML],
    );
}

/// Without `skip_jwt_bearer_tokens` a bearer token is not a credential, however valid:
/// browsers log in, API clients get a plain 401, and the client's Authorization header
/// never reaches the app, not even next to a valid session.
#[test]
fn t05_without_skip_jwt_bearer_tokens_a_token_is_no_credential() {
    let mut st = start(|| builder(None).plugin("skip_jwt_bearer_tokens", json!(false)));
    let j = john(&st);
    let (token, cookie) = (j.token.clone(), session_cookie(&st, &j.browser));
    let authz = auth_header(&token);

    expect_login_redirect(
        &st,
        "skip off: browser with a valid bearer",
        "/x",
        &[HTML, ("Authorization", &authz)],
    );
    let rec = recorder(&st);
    for p in ["/x", "/oauth2/auth", "/oauth2/userinfo"] {
        let n = rec.count();
        let r = get(&st, p, &[API, ("Authorization", &authz)]);
        st.check(r.status == 401 && rec.count() == n, || {
            format!(
                "skip off: {p} with a valid bearer must be 401 and not proxied: {}",
                r.short()
            )
        });
        st.check(
            !r.headers_all("www-authenticate")
                .iter()
                .any(|v| v.contains("invalid_token")),
            || {
                format!(
                    "skip off: {p}: a token that is not looked at is not invalid: {}",
                    r.short()
                )
            },
        );
    }
    // With a session, the app's Authorization is the session's ID token, not the client's.
    let other = jwt::corrupt_signature(&token);
    let seen = expect_app(
        &st,
        "skip off: session + a client Authorization",
        "/x",
        &[
            API,
            ("Authorization", &auth_header(&other)),
            ("Cookie", &cookie),
        ],
    );
    expect_identity(
        &st,
        "skip off: session + a client Authorization",
        &seen,
        &as_refs(&john_headers(&token, &j.access)),
    );

    // And without pass_authorization_header / pass_access_token the app gets none at all.
    st.plugin_config["pass_authorization_header"] = json!(false);
    st.plugin_config["pass_access_token"] = json!(false);
    st.restart_envoy();
    let seen = expect_app(
        &st,
        "skip off, pass_authorization_header off: session + client Authorization",
        "/x",
        &[API, ("Authorization", &authz), ("Cookie", &cookie)],
    );
    st.check(
        values(&seen, "authorization").is_empty()
            && values(&seen, "x-forwarded-access-token").is_empty()
            && values(&seen, "x-forwarded-email") == ["john@example.com"],
        || {
            format!(
                "the client's Authorization reached the app: {:?}",
                seen.headers
            )
        },
    );
    // Same with bearer tokens on: the app receives the token only when told to pass it.
    st.plugin_config["skip_jwt_bearer_tokens"] = json!(true);
    st.restart_envoy();
    let seen = expect_app(
        &st,
        "skip on, pass_* off: bearer",
        "/x",
        &[API, ("Authorization", &authz)],
    );
    st.check(
        values(&seen, "authorization").is_empty()
            && values(&seen, "x-forwarded-access-token").is_empty()
            && values(&seen, "x-forwarded-email") == ["john@example.com"],
        || {
            format!(
                "skip on, pass_* off: the app got the token: {:?}",
                seen.headers
            )
        },
    );
}

/// The extra issuer rotates to a key it publishes only now: a token naming the new kid is
/// accepted once the filter has refetched that issuer's JWKS; a kid that is never published
/// is refused, and a burst of such forged tokens costs at most one JWKS fetch per worker
/// (Envoy runs 2) per 5 s.
#[test]
fn t06_extra_issuer_key_rotation_and_bounded_refetch() {
    let op = BadOp::start("unused", "unused");
    let main = BadOp::start(CLIENT_ID, "bad-op-secret");
    let st = start(|| {
        builder(Some(&op))
            .idp(Idp::External { port: main.port() })
            .inline_secrets()
            .client_secret("bad-op-secret")
    });
    let started = Instant::now();
    let (k2, k9) = (op_key(&op, "k2"), op_key(&op, "k9"));

    expect_app(
        &st,
        "a k1 token before the rotation",
        "/r",
        &[
            API,
            ("Authorization", &auth_header(&op_token(&op, json!({})))),
        ],
    );
    // A k2 token before k2 is published: refused (k2 is not a key of this issuer yet).
    let early = jwt::sign_rs256(&k2, "k2", &op_claims(&op, json!({})));
    expect_invalid_token(
        &st,
        "a k2 token before k2 is published",
        "/r",
        &[API, ("Authorization", &auth_header(&early))],
    );

    // Phase 1, more than 5 s after every worker's last JWKS fetch: forged tokens naming a
    // kid that is never published. Each worker may refetch once; the rest are refused
    // without asking the issuer.
    let wait = Duration::from_millis(6000).saturating_sub(started.elapsed());
    std::thread::sleep(wait);
    let j0 = op.jwks_requests();
    let t0 = Instant::now();
    const BURST: usize = 30;
    for i in 0..BURST {
        let forged = jwt::sign_rs256(&k9, "k9", &op_claims(&op, json!({})));
        expect_invalid_token(
            &st,
            &format!("forged token {i} with the never-published kid k9"),
            "/r",
            &[API, ("Authorization", &auth_header(&forged))],
        );
    }
    let took = t0.elapsed();
    let fetched = op.jwks_requests() - j0;
    let allowed = st.concurrency * (1 + took.as_secs() as usize / 5);
    eprintln!("t06: {BURST} forged k9 tokens in {took:?} caused {fetched} JWKS fetch(es)");
    st.check(fetched >= 1 && fetched <= allowed, || {
        format!(
            "{BURST} forged tokens in {took:?} caused {fetched} JWKS fetches; want 1..={allowed} \
             (an unknown kid refetches at most once per 5 s per worker)\nOP events:\n{}",
            op.events()
        )
    });

    // Phase 2: the issuer publishes k2 (and keeps k1) more than 5 s after those refetches.
    std::thread::sleep(Duration::from_millis(5500));
    {
        let mut s = op.state.lock().expect("lock");
        s.published = vec![s.k1.clone(), s.k2.clone()];
        s.events.push("--- published k1 + k2".into());
    }
    let j1 = op.jwks_requests();
    // First, a dozen clients at once, each with its own k2 token: the requests park while
    // the keys are refetched, and each must resume as its own user.
    const AT_ONCE: usize = 12;
    let rec = recorder(&st);
    let n = rec.count();
    let tokens: Vec<String> = (0..AT_ONCE)
        .map(|i| {
            let claims = op_claims(&op, json!({"email": format!("c{i}@example.com")}));
            auth_header(&jwt::sign_rs256(&k2, "k2", &claims))
        })
        .collect();
    let answers: Vec<Response> = std::thread::scope(|scope| {
        let handles: Vec<_> = tokens
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let st = &st;
                scope.spawn(move || get(st, &format!("/c?i={i}"), &[API, ("Authorization", a)]))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect()
    });
    for (i, r) in answers.iter().enumerate() {
        st.check(r.status == 200, || {
            format!(
                "concurrent k2 client {i}: {}\nOP events:\n{}",
                r.short(),
                op.events()
            )
        });
    }
    let seen = rec.requests();
    st.check(seen.len() == n + AT_ONCE, || {
        format!(
            "the app got {} of the {AT_ONCE} concurrent requests",
            seen.len() - n
        )
    });
    for req in &seen[n..] {
        let i = req.target.strip_prefix("/c?i=").unwrap_or("?");
        let want = format!("c{i}@example.com");
        st.check(values(req, "x-forwarded-email") == [want.clone()], || {
            format!(
                "request {} resumed as {:?}, want {want}",
                req.target,
                values(req, "x-forwarded-email")
            )
        });
    }
    let rotated = jwt::sign_rs256(
        &k2,
        "k2",
        &op_claims(&op, json!({"email": "rotated@example.com"})),
    );
    let ra = auth_header(&rotated);
    for i in 0..10 {
        let mut hs = vec![API, ("Authorization", ra.as_str())];
        hs.extend_from_slice(SPOOFS);
        let ctx = format!("k2 token after the rotation (request {i})");
        let seen = expect_app(&st, &ctx, "/r2", &hs);
        expect_identity(
            &st,
            &ctx,
            &seen,
            &[
                ("x-forwarded-email", "rotated@example.com"),
                ("authorization", &ra),
            ],
        );
    }
    // A fresh k2 token per request as well (no cache), through the workers.
    for i in 0..6 {
        let t = jwt::sign_rs256(&k2, "k2", &op_claims(&op, json!({})));
        expect_app(
            &st,
            &format!("fresh k2 token {i}"),
            "/r3",
            &[API, ("Authorization", &auth_header(&t))],
        );
    }
    let refetched = op.jwks_requests() - j1;
    st.check((1..=st.concurrency).contains(&refetched), || {
        format!(
            "accepting k2 tokens needed {refetched} JWKS fetches; want 1..={} (one per worker)\n{}",
            st.concurrency,
            op.events()
        )
    });
    // k1 is still published: its tokens still verify. The never-published kid is still refused.
    expect_app(
        &st,
        "k1 after k2 was added",
        "/r4",
        &[
            API,
            ("Authorization", &auth_header(&op_token(&op, json!({})))),
        ],
    );
    let forged = jwt::sign_rs256(&k9, "k9", &op_claims(&op, json!({})));
    expect_invalid_token(
        &st,
        "k9 after the rotation",
        "/r",
        &[API, ("Authorization", &auth_header(&forged))],
    );
}

/// An extra issuer whose host has no cluster in `idp_clusters` is a configuration error:
/// Envoy refuses the plugin and nothing is ever served (or passed to the app).
#[test]
fn t07_extra_issuer_without_a_cluster_is_refused_at_start() {
    let op = BadOp::start("unused", "unused");
    let main = BadOp::start(CLIENT_ID, "bad-op-secret");
    let mut st = builder(None)
        .idp(Idp::External { port: main.port() })
        .inline_secrets()
        .client_secret("bad-op-secret")
        .plugin(
            "extra_jwt_issuers",
            json!([format!("{}={EXTRA_AUD}", op.issuer())]),
        )
        // A cluster for another host only (and a real cluster Envoy knows).
        .plugin("idp_clusters", json!({ "127.0.0.1:1": "extra" }))
        .extra_cluster("extra", op.port())
        .start_no_envoy();
    match st.spawn_envoy_and_wait(Duration::from_secs(30)) {
        None => st.fail("envoy neither exited nor became ready within 30 s"),
        Some(Err(status)) => {
            eprintln!("t07: envoy refused to start ({status})");
            st.check(!status.success(), || format!("envoy exited with {status}"));
        }
        Some(Ok(())) => {
            eprintln!("t07: envoy started; every request must be refused");
            std::thread::sleep(Duration::from_millis(500));
            let t = op_token(&op, json!({}));
            let a = auth_header(&t);
            for (path, hs) in [
                ("/", vec![HTML]),
                ("/api", vec![API, ("Authorization", a.as_str())]),
                ("/ping", vec![]),
            ] {
                let r = get(&st, path, &hs);
                st.check(r.status >= 500, || {
                    format!("GET {path}: want 5xx, got {}", r.short())
                });
            }
        }
    }
    st.check(recorder(&st).count() == 0, || {
        format!("the app received requests:\n{}", recorder(&st).summary())
    });
    let log = st.envoy_log();
    st.check(
        log.contains("extra_jwt_issuers") && log.contains("idp_clusters"),
        || "envoy's log does not say which key is wrong (extra_jwt_issuers / idp_clusters)".into(),
    );
    let s = op.state.lock().expect("lock");
    st.check(s.discovery_requests == 0 && s.jwks_requests == 0, || {
        "the refused configuration still fetched the extra issuer's metadata".into()
    });
    drop(s);

    // Control: the same configuration with the issuer's host in idp_clusters starts and
    // serves a token from it.
    if let Some(mut p) = st.envoy.take() {
        p.kill();
    }
    st.plugin_config["idp_clusters"] = json!({ format!("127.0.0.1:{}", op.port()): "extra" });
    st.restart_envoy();
    let t = op_token(&op, json!({}));
    expect_app(
        &st,
        "control: the issuer's host in idp_clusters",
        "/ok",
        &[API, ("Authorization", &auth_header(&t))],
    );
}

/// Expiry on the cached path: a token accepted inside the 60 s clock skew (exp 56 s ago)
/// is refused a few seconds later, once past it, however often it was accepted before; a
/// token the filter cached until its `exp` is verified again after that and, still inside
/// the skew, accepted.
#[test]
fn t08_expiry_holds_on_the_cached_path() {
    let op = BadOp::start("unused", "unused");
    let st = start(|| builder(Some(&op)));
    let now = crate::support::now();
    let fading = op_token(&op, json!({"exp": now - 56, "iat": now - 360}));
    let short = op_token(&op, json!({"exp": now + 2}));
    let (fa, sa) = (auth_header(&fading), auth_header(&short));
    for i in 0..6 {
        expect_app(
            &st,
            &format!("a token 56 s past exp, inside the skew (request {i})"),
            "/e",
            &[API, ("Authorization", &fa)],
        );
        expect_app(
            &st,
            &format!("a token 2 s before exp (request {i})"),
            "/e",
            &[API, ("Authorization", &sa)],
        );
    }
    // Past exp + 60 s for the first token (with a second to spare for the clock's edge).
    while crate::support::now() < now + 5 {
        std::thread::sleep(Duration::from_millis(200));
    }
    for i in 0..6 {
        expect_invalid_token(
            &st,
            &format!("the same token, now past exp + skew (request {i})"),
            "/e",
            &[API, ("Authorization", &fa)],
        );
        expect_app(
            &st,
            &format!("the short token after its exp, inside the skew (request {i})"),
            "/e",
            &[API, ("Authorization", &sa)],
        );
    }
}
