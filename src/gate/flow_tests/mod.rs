//! Whole logins driven through the gate with an in-process fake IdP: the decisions a
//! browser would see, in order, with real keys, real sealing and real PKCE.

use super::*;
use crate::cache::Cache;
use crate::config::tests_support::config;
use crate::config::Config;
use crate::issuer::{Issuers, Metadata, MAIN};

use crate::oidc::testkeys::{self, CLIENT_ID, ISSUER};
use crate::oidc::Discovery;
use crate::session::{self, cookie, Session};
use serde_json::{json, Value};

const NOW: u64 = 1_700_000_000;

fn provider() -> Metadata {
    provider_with(&json!({}), &testkeys::jwks_json())
}

/// The fake IdP's metadata with `extra` discovery fields (say `end_session_endpoint`) and
/// the signing keys `jwks`.
fn provider_with(extra: &Value, jwks: &str) -> Metadata {
    let mut doc = json!({
        "issuer": ISSUER,
        "authorization_endpoint": format!("{ISSUER}/authorize"),
        "token_endpoint": format!("{ISSUER}/token"),
        "jwks_uri": format!("{ISSUER}/jwks"),
    });
    merge(&mut doc, extra);
    let d = Discovery::parse(doc.to_string().as_bytes(), ISSUER).unwrap();
    Metadata::new(d, jwks.as_bytes(), NOW).unwrap()
}

/// Sets `extra`'s fields on the object `into`; a `null` removes the field.
fn merge(into: &mut Value, extra: &Value) {
    let into = into.as_object_mut().unwrap();
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            into.remove(k);
        } else {
            into.insert(k.clone(), v.clone());
        }
    }
}

/// A token endpoint's answer: access token `AT`, `claims` signed as the ID token with the
/// test key, and `extra`'s fields set (or removed with `null`) on top.
fn token_answer(claims: &Value, extra: &Value) -> String {
    let mut body = json!({
        "access_token": "AT",
        "id_token": testkeys::sign_rs256(Some("rsa1"), claims),
        "token_type": "Bearer",
    });
    merge(&mut body, extra);
    body.to_string()
}

fn cfg() -> Config {
    let mut c = config();
    c.client_id = CLIENT_ID.into();
    c.issuers[0].audiences = vec![CLIENT_ID.into()];
    c.set_xauthrequest = true;
    c.pass_access_token = true;
    c.pass_authorization_header = true;
    c
}

struct World {
    config: Config,
    providers: Issuers,
    sessions: Cache<Admitted>,
    bearers: Cache<Admitted>,
    exchanged: Cache<Exchanged>,
    metrics: crate::metrics::Metrics,
    counter: u8,
    now: u64,
}

impl World {
    fn new() -> World {
        let mut providers = Issuers::new(1);
        providers.set(MAIN, provider());
        World {
            config: cfg(),
            providers,
            sessions: Cache::new(16, 1 << 20),
            bearers: Cache::new(16, 1 << 20),
            exchanged: Cache::new(16, 1 << 20),
            metrics: crate::metrics::Metrics::default(),
            counter: 0,
            now: NOW,
        }
    }

    fn run<R>(&mut self, f: impl FnOnce(&mut Context, &mut Env) -> R) -> R {
        let counter = &mut self.counter;
        let mut random = |b: &mut [u8]| {
            for x in b.iter_mut() {
                *counter = counter.wrapping_add(1);
                *x = *counter;
            }
            true
        };
        let mut env = Env {
            now: self.now,
            random: &mut random,
        };
        let mut cx = Context {
            config: &self.config,
            issuers: &self.providers,
            sessions: &mut self.sessions,
            bearers: &mut self.bearers,
            exchanged: &mut self.exchanged,
            metrics: &mut self.metrics,
        };
        f(&mut cx, &mut env)
    }

    fn decide(&mut self, req: &Request) -> Step {
        self.run(|cx, env| decide(cx, req, env))
    }
}

fn get(path: &str, extra: &[(&str, &str)]) -> Request {
    let mut headers = vec![
        (":method".to_string(), "GET".to_string()),
        (":path".to_string(), path.to_string()),
        (":authority".to_string(), "app.example.com".to_string()),
        (":scheme".to_string(), "https".to_string()),
        ("accept".to_string(), "text/html".to_string()),
    ];
    headers.extend(extra.iter().map(|(n, v)| (n.to_string(), v.to_string())));
    Request {
        headers: headers.into(),
    }
}

fn respond(step: Step) -> Response {
    match step.decision {
        Decision::Respond(r) => r,
        other => panic!("expected a response, got {other:?}"),
    }
}

fn header<'a>(r: &'a Response, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn set_cookies(r: &Response) -> Vec<(String, String)> {
    r.headers
        .iter()
        .filter(|(n, _)| n == "set-cookie")
        .map(|(_, v)| {
            let (nv, _) = v.split_once(';').unwrap();
            let (n, v) = nv.split_once('=').unwrap();
            (n.to_string(), v.to_string())
        })
        .collect()
}

fn query(url: &str) -> std::collections::HashMap<String, String> {
    let q = url.split_once('?').unwrap().1;
    url::form_urlencoded::parse(q.as_bytes())
        .into_owned()
        .collect()
}

fn cookie_header(cookies: &[(String, String)]) -> String {
    cookies
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Starts a login at `path`, plays the IdP (checking PKCE) and returns the callback's
/// response given the claims the IdP signs.
fn login_with(w: &mut World, path: &str, claims: impl FnOnce(&str) -> Value) -> Response {
    login_answering(w, path, claims, &json!({}))
}

/// [`login_with`], the token endpoint answering `extra` besides the access and ID tokens
/// (see [`token_answer`]).
fn login_answering(
    w: &mut World,
    path: &str,
    claims: impl FnOnce(&str) -> Value,
    extra: &Value,
) -> Response {
    let start = respond(w.decide(&get(path, &[])));
    assert_eq!(start.status, 302);
    let location = header(&start, "location").unwrap().to_string();
    assert!(location.starts_with(&format!("{ISSUER}/authorize?")));
    let q = query(&location);
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(q["redirect_uri"], "https://app.example.com/oauth2/callback");
    assert_eq!(q["code_challenge_method"], "S256");
    let csrf = set_cookies(&start);
    assert_eq!(csrf[0].0, "_oauth2_proxy_csrf");

    let cb = get(
        &format!("/oauth2/callback?code=the-code&state={}", q["state"]),
        &[("cookie", &cookie_header(&csrf))],
    );
    let (callout, pending) = match w.decide(&cb).decision {
        Decision::Call(c, p) => (c, p),
        other => panic!("expected token callout, got {other:?}"),
    };
    assert_eq!((callout.method, callout.path.as_str()), ("POST", "/token"));
    let form: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(&callout.body)
            .into_owned()
            .collect();
    assert_eq!(form["code"], "the-code");
    assert_eq!(
        crate::session::pkce::challenge(&form["code_verifier"]),
        q["code_challenge"]
    );

    let body = token_answer(&claims(&q["nonce"]), extra);
    respond(w.run(|cx, env| resume(cx, pending.0, Some((200, body.as_bytes())), env)))
}

fn good_claims(nonce: &str) -> Value {
    let mut c = testkeys::id_claims(NOW);
    c["nonce"] = nonce.into();
    c
}

#[test]
fn ping_and_ready_need_no_session() {
    let mut w = World::new();
    for p in ["/ping", "/ready"] {
        assert_eq!(
            respond(w.decide(&get(p, &[("accept", "application/json")]))).status,
            200
        );
    }
}

#[test]
fn api_clients_get_401_and_browsers_a_redirect() {
    let mut w = World::new();
    let mut api = get("/x", &[]);
    api.headers.retain(|n, _| n != "accept");
    assert_eq!(respond(w.decide(&api)).status, 401);
    assert_eq!(
        respond(w.decide(&get("/x", &[("x-requested-with", "XMLHttpRequest")]))).status,
        401
    );
    assert_eq!(respond(w.decide(&get("/x", &[]))).status, 302);
}

#[test]
fn no_provider_means_wait_not_pass() {
    let mut w = World::new();
    w.providers = Issuers::new(1);
    assert_eq!(
        w.decide(&get("/x", &[])).decision,
        Decision::NeedIssuer(MAIN)
    );
}

#[test]
fn full_login_then_identity_headers_and_spoofs_stripped() {
    let mut w = World::new();
    // oauth2-proxy's user_id_claim; its default (email) is in `userinfo_and_auth_endpoints`.
    w.config.user_id_claim = "sub".into();
    let done = login_with(&mut w, "/reports?q=1", good_claims);
    assert_eq!(done.status, 302);
    assert_eq!(header(&done, "location"), Some("/reports?q=1"));
    let cookies = set_cookies(&done);
    assert!(cookies
        .iter()
        .any(|(n, v)| n == "_oauth2_proxy" && !v.is_empty()));
    assert!(cookies
        .iter()
        .any(|(n, v)| n == "_oauth2_proxy_csrf" && v.is_empty()));

    // A fresh cache proves the cookie itself carries the session.
    w.sessions = Cache::new(16, 1 << 20);
    let jar = format!("{}; other=1", cookie_header(&cookies));
    let req = get(
        "/reports",
        &[
            ("cookie", &jar),
            ("X-Forwarded-Email", "evil@x"),
            ("x-forwarded-email", "e2"),
            ("Authorization", "Bearer forged"),
        ],
    );
    match w.decide(&req).decision {
        Decision::Continue { remove, set, .. } => {
            // What the app receives once the edits are applied.
            let seen: Vec<_> = super::edited_headers(&req.headers, &remove, &set).collect();
            let all = |n: &str| -> Vec<&str> {
                seen.iter()
                    .filter(|(k, _)| k.eq_ignore_ascii_case(n))
                    .map(|(_, v)| *v)
                    .collect()
            };
            assert_eq!(all("x-forwarded-email"), ["alice@example.com"]);
            assert_eq!(all("x-auth-request-user"), ["user-123"]);
            assert_eq!(all("x-auth-request-groups"), ["admins,devs"]);
            assert_eq!(all("x-forwarded-access-token"), ["AT"]);
            let authz = all("authorization");
            assert!(
                authz.len() == 1 && authz[0].starts_with("Bearer ey"),
                "{authz:?}"
            );
            assert_eq!(all("cookie"), ["other=1"]);
        }
        other => panic!("expected continue, got {other:?}"),
    }
}

#[test]
fn callback_rejects_wrong_state_and_missing_csrf() {
    let mut w = World::new();
    let start = respond(w.decide(&get("/", &[])));
    let csrf = cookie_header(&set_cookies(&start));
    let wrong = respond(w.decide(&get(
        "/oauth2/callback?code=c&state=other",
        &[("cookie", &csrf)],
    )));
    assert_eq!(wrong.status, 403);
    let state = query(header(&start, "location").unwrap())["state"].clone();
    let missing = respond(w.decide(&get(&format!("/oauth2/callback?code=c&state={state}"), &[])));
    assert_eq!(missing.status, 403);
    for r in [wrong, missing] {
        assert!(!set_cookies(&r)
            .iter()
            .any(|(n, v)| n == "_oauth2_proxy" && !v.is_empty()));
    }
}

#[test]
fn bad_tokens_end_in_error_without_session() {
    type Claims = Box<dyn Fn(&str) -> Value>;
    let cases: Vec<(&str, Claims)> = vec![
        ("nonce", Box::new(|_| good_claims("another"))),
        (
            "issuer",
            Box::new(|n| {
                let mut c = good_claims(n);
                c["iss"] = "https://evil".into();
                c
            }),
        ),
        (
            "audience",
            Box::new(|n| {
                let mut c = good_claims(n);
                c["aud"] = "someone-else".into();
                c
            }),
        ),
        (
            "expired",
            Box::new(|n| {
                let mut c = good_claims(n);
                c["exp"] = (NOW - 3600).into();
                c
            }),
        ),
    ];
    for (name, claims) in cases {
        let mut w = World::new();
        let r = login_with(&mut w, "/", claims);
        assert_eq!(r.status, 401, "{name}");
        assert!(
            !set_cookies(&r)
                .iter()
                .any(|(n, v)| n.starts_with("_oauth2_proxy")
                    && n != "_oauth2_proxy_csrf"
                    && !v.is_empty()),
            "{name}"
        );
    }
}

#[test]
fn unknown_kid_asks_for_keys_once() {
    let mut w = World::new();
    let start = respond(w.decide(&get("/", &[])));
    let q = query(header(&start, "location").unwrap());
    let cb = get(
        &format!("/oauth2/callback?code=c&state={}", q["state"]),
        &[("cookie", &cookie_header(&set_cookies(&start)))],
    );
    let Decision::Call(_, pending) = w.decide(&cb).decision else {
        panic!()
    };
    let token = testkeys::sign_rs256(Some("rotated"), &good_claims(&q["nonce"]));
    let body = json!({"access_token": "AT", "id_token": token, "token_type": "Bearer"}).to_string();
    let Decision::NeedKeys(MAIN, pending) = w
        .run(|cx, env| resume(cx, pending.0, Some((200, body.as_bytes())), env))
        .decision
    else {
        panic!("expected a key refresh")
    };
    let r = respond(w.run(|cx, env| resume_keys(cx, pending.0, true, env)));
    assert_eq!(r.status, 401);
}

#[test]
fn email_domain_policy_applies_at_login() {
    let mut w = World::new();
    w.config.rules.email_domains = vec!["corp.example".into()];
    assert_eq!(login_with(&mut w, "/", good_claims).status, 403);
}

#[test]
fn tampered_cookie_is_no_session_and_gets_cleared() {
    let mut w = World::new();
    let done = login_with(&mut w, "/", good_claims);
    let (_, value) = set_cookies(&done)
        .into_iter()
        .find(|(n, _)| n == "_oauth2_proxy")
        .unwrap();
    let mut bytes = value.into_bytes();
    let mid = bytes.len() / 2;
    bytes[mid] = if bytes[mid] == b'A' { b'B' } else { b'A' };
    let tampered = format!("_oauth2_proxy={}", String::from_utf8(bytes).unwrap());
    let r = respond(w.decide(&get("/", &[("cookie", &tampered)])));
    assert_eq!(r.status, 302);
    assert!(set_cookies(&r)
        .iter()
        .any(|(n, v)| n == "_oauth2_proxy" && v.is_empty()));
}

#[test]
fn expired_session_is_no_session() {
    let mut w = World::new();
    let done = login_with(&mut w, "/", good_claims);
    let jar = cookie_header(&set_cookies(&done));
    w.now += w.config.cookie.expire;
    assert_eq!(
        respond(w.decide(&get("/", &[("cookie", &jar)]))).status,
        302
    );
}

#[test]
fn big_sessions_are_chunked_and_read_back() {
    let mut w = World::new();
    let done = login_with(&mut w, "/", |n| {
        let mut c = good_claims(n);
        c["groups"] = (0..150)
            .map(|i| format!("group-with-a-fairly-long-name-{i:03}"))
            .collect::<Vec<_>>()
            .into();
        c
    });
    let cookies = set_cookies(&done);
    assert!(cookies.iter().any(|(n, _)| n == "_oauth2_proxy_1"));
    w.sessions = Cache::new(16, 1 << 20);
    let Decision::Continue { set, .. } = w
        .decide(&get("/", &[("cookie", &cookie_header(&cookies))]))
        .decision
    else {
        panic!("chunked session not accepted")
    };
    let groups = set
        .iter()
        .find(|(n, _)| *n == "x-forwarded-groups")
        .unwrap();
    assert_eq!(groups.1.split(',').count(), 150);
}

#[test]
fn sign_out_clears_and_only_follows_safe_rd() {
    let mut w = World::new();
    let done = login_with(&mut w, "/", good_claims);
    let jar = cookie_header(&set_cookies(&done));
    let r = respond(w.decide(&get("/oauth2/sign_out?rd=/bye", &[("cookie", &jar)])));
    assert_eq!(header(&r, "location"), Some("/bye"));
    assert!(set_cookies(&r)
        .iter()
        .any(|(n, v)| n == "_oauth2_proxy" && v.is_empty()));
    let r = respond(w.decide(&get("/oauth2/sign_out?rd=https://evil.example/", &[])));
    assert_eq!(header(&r, "location"), Some("/"));
}

#[test]
fn start_never_redirects_back_off_site() {
    let mut w = World::new();
    for rd in ["https://evil.example/", "//evil.example", "/\\evil.example"] {
        let path = format!(
            "/oauth2/start?rd={}",
            url::form_urlencoded::byte_serialize(rd.as_bytes()).collect::<String>()
        );
        let start = respond(w.decide(&get(&path, &[])));
        let csrf = set_cookies(&start);
        let login = crate::session::csrf::verify(
            &w.config.keys.current.csrf,
            "_oauth2_proxy_csrf",
            &csrf[0].1,
            &query(header(&start, "location").unwrap())["state"],
            NOW,
        )
        .unwrap();
        assert_eq!(login.return_to, "/", "{rd}");
    }
}

#[test]
fn userinfo_and_auth_endpoints() {
    let mut w = World::new();
    assert_eq!(respond(w.decide(&get("/oauth2/userinfo", &[]))).status, 401);
    assert_eq!(respond(w.decide(&get("/oauth2/auth", &[]))).status, 401);
    let done = login_with(&mut w, "/", good_claims);
    let jar = cookie_header(&set_cookies(&done));
    let info = respond(w.decide(&get("/oauth2/userinfo", &[("cookie", &jar)])));
    let v: Value = serde_json::from_str(&info.body).unwrap();
    assert_eq!(
        v,
        json!({"user": "alice@example.com", "email": "alice@example.com", "preferredUsername": "alice", "groups": ["admins", "devs"]})
    );
    let auth = respond(w.decide(&get("/oauth2/auth", &[("cookie", &jar)])));
    assert_eq!(auth.status, 202);
    assert_eq!(
        header(&auth, "x-auth-request-email"),
        Some("alice@example.com")
    );
}

/// Arbitrary header soup must always produce a decision, never a panic.
#[test]
fn junk_requests_never_panic() {
    let mut w = World::new();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let alphabet = b"/?=&;%_-.:@\\ aZ09\"'<>#\x7f\t";
    for _ in 0..3000 {
        let mut s = || -> String {
            let n = (next() % 40) as usize;
            (0..n)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize] as char)
                .collect()
        };
        let names = [
            ":path",
            "cookie",
            "accept",
            ":authority",
            "x-forwarded-proto",
            "x-requested-with",
        ];
        let mut headers = vec![(":method".to_string(), "GET".to_string())];
        for name in names {
            let value = match name {
                ":path" => format!("/oauth2/{}", s()),
                "cookie" => format!(
                    "_oauth2_proxy={}; _oauth2_proxy_csrf={}; _oauth2_proxy_0={}",
                    s(),
                    s(),
                    s()
                ),
                _ => s(),
            };
            headers.push((name.to_string(), value));
        }
        let _ = w.decide(&Request {
            headers: headers.into(),
        });
    }
}

#[test]
fn skip_auth_routes_pass_without_a_session_but_never_with_spoofed_identity() {
    let mut w = World::new();
    w.config.skip_auth_routes = vec![
        crate::routing::routes::SkipRoute::parse("GET=^/public/").unwrap(),
        crate::routing::routes::SkipRoute::parse("^/health$").unwrap(),
    ];
    let spoofed = get(
        "/public/app.css?v=1",
        &[
            ("x-forwarded-email", "admin@example.com"),
            ("Authorization", "Bearer forged"),
            ("cookie", "_oauth2_proxy=stolen; theme=dark"),
        ],
    );
    match w.decide(&spoofed).decision {
        Decision::Continue { remove, set, .. } => {
            let seen: Vec<_> = super::edited_headers(&spoofed.headers, &remove, &set).collect();
            let names: Vec<&str> = seen.iter().map(|(n, _)| *n).collect();
            assert!(
                !names.iter().any(|n| crate::routing::headers::is_owned(n)),
                "{seen:?}"
            );
            let cookies: Vec<&str> = seen
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("cookie"))
                .map(|(_, v)| *v)
                .collect();
            assert_eq!(cookies, ["theme=dark"]);
        }
        other => panic!("a skipped route must pass, got {other:?}"),
    }
    // The method is part of the rule, the query is not part of the path, and everything
    // else still needs a login.
    let mut post = get("/public/app.css", &[]);
    post.headers = post
        .headers
        .iter()
        .map(|(n, v)| (n, if n == ":method" { "POST" } else { v }))
        .collect();
    assert_eq!(respond(w.decide(&post)).status, 302);
    assert_eq!(
        respond(w.decide(&get("/app?next=/health", &[]))).status,
        302
    );
    assert!(matches!(
        w.decide(&get("/health", &[])).decision,
        Decision::Continue { .. }
    ));
}

mod access;

mod lifecycle;

mod protocols;

mod providers;
