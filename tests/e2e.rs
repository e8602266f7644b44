//! End-to-end suite: a real Envoy running the optimized filter, in front of the demo app,
//! against a real OpenID Provider (panva/oidc-provider, `idp/server.js`) and against a
//! deliberately misbehaving OP written in Rust (`tests/support/bad_op.rs`).
//!
//! Run with (all three variables are required; a missing one FAILS the tests):
//!
//! ```sh
//! WOP_ENVOY=/path/to/envoy WOP_WASM=build/wasm_oauth2_proxy.wasm WOP_ROOT=$PWD \
//!     cargo test --test e2e -- --test-threads 2
//! ```

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use url::Url;

use support::bad_op::{BadOp, Scenario};
use support::http::{format_hops, origin_of, Browser, Hop, Response, SetCookie};
use support::jwt;
use support::stack::{App, Idp, Stack};

const SESSION: &str = "_oauth2_proxy";
const CSRF: &str = "_oauth2_proxy_csrf";

/// Every identity header the filter owns: the client may never supply any of them.
const IDENTITY_HEADERS: &[&str] = &[
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-preferred-username",
    "x-forwarded-groups",
    "x-forwarded-access-token",
    "x-auth-request-user",
    "x-auth-request-email",
    "x-auth-request-preferred-username",
    "x-auth-request-groups",
    "x-auth-request-access-token",
];

// ------------------------------------------------------------------------- helpers

/// `_oauth2_proxy` or `_oauth2_proxy_<n>` (not the CSRF cookie).
fn is_session_cookie_name(n: &str) -> bool {
    n == SESSION
        || n.strip_prefix("_oauth2_proxy_")
            .map(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            .unwrap_or(false)
}

fn session_cookies_in_jar(b: &Browser, origin: &str) -> Vec<String> {
    let mut v: Vec<String> = b
        .cookies(origin)
        .iter()
        .filter(|c| is_session_cookie_name(&c.name))
        .map(|c| c.name.clone())
        .collect();
    v.sort();
    v
}

/// Session Set-Cookies (not deletions) in a chain of hops.
fn session_cookies_set(hops: &[Hop]) -> Vec<SetCookie> {
    hops.iter()
        .flat_map(|h| h.set_cookies.iter().map(|s| SetCookie::parse(s)))
        .filter(|c| is_session_cookie_name(&c.name) && !c.is_deletion() && !c.value.is_empty())
        .collect()
}

fn header_str(v: &Value, name: &str) -> Option<String> {
    v.get(name).and_then(|x| x.as_str()).map(|s| s.to_string())
}

/// How many times the app received header `name` (from `_raw`).
fn raw_count(v: &Value, name: &str) -> usize {
    v.get("_raw")
        .and_then(|r| r.as_array())
        .map(|a| {
            a.iter()
                .filter(|p| {
                    p.get(0)
                        .and_then(|n| n.as_str())
                        .map(|n| n.eq_ignore_ascii_case(name))
                        .unwrap_or(false)
                })
                .count()
        })
        .unwrap_or(0)
}

fn find_hop<'a>(hops: &'a [Hop], path_part: &str) -> Option<&'a Hop> {
    hops.iter().find(|h| h.url.contains(path_part))
}

fn discovery(st: &Stack) -> Value {
    let r = support::http::raw_request(
        "GET",
        &format!("{}/.well-known/openid-configuration", st.issuer()),
        &[],
        None,
        Duration::from_secs(5),
    )
    .expect("discovery");
    r.json()
}

/// Assert `resp` is a 302 to the OP's authorization endpoint (a browser being sent to log in).
fn assert_login_redirect(st: &Stack, resp: &Response, authz: &str, ctx: &str) {
    let loc = resp.location();
    st.check(
        resp.status == 302
            && loc
                .as_ref()
                .map(|l| {
                    let mut endpoint = l.clone();
                    endpoint.set_query(None);
                    endpoint.as_str() == authz
                })
                .unwrap_or(false),
        || {
            format!(
                "{ctx}: expected 302 to the authorization endpoint {authz}, got {}",
                resp.short()
            )
        },
    );
}

/// Assert `resp` is a 401 without a Location (an API client without a session).
fn assert_401(st: &Stack, resp: &Response, ctx: &str) {
    st.check(
        resp.status == 401 && resp.header("location").is_none(),
        || format!("{ctx}: expected 401 without redirect, got {}", resp.short()),
    );
    st.check(session_cookies_set(&[hop_of(resp)]).is_empty(), || {
        format!(
            "{ctx}: a 401 must not set a session cookie: {}",
            resp.short()
        )
    });
}

fn hop_of(r: &Response) -> Hop {
    Hop {
        method: "GET".into(),
        url: r.url.clone(),
        status: r.status,
        location: r.header("location").map(|s| s.to_string()),
        set_cookies: r
            .headers_all("set-cookie")
            .iter()
            .map(|s| s.to_string())
            .collect(),
    }
}

fn authz_endpoint(st: &Stack) -> String {
    discovery(st)["authorization_endpoint"]
        .as_str()
        .expect("authorization_endpoint")
        .to_string()
}

const API: &[(&str, &str)] = &[("Accept", "application/json")];

// ============================================================== A. real IdP (oidc-provider)

/// A1: full browser login as john; identity headers; session cookie hidden from the app.
#[test]
fn a01_login_flow_passes_identity_headers() {
    let st = Stack::builder().start();
    let authz = authz_endpoint(&st);
    let mut b = Browser::new();

    // 1. Unauthenticated browser request -> 302 to the OP with a complete, PKCE'd request.
    let r = b.get(&st.url("/headers?probe=1"));
    assert_login_redirect(&st, &r, &authz, "GET /headers?probe=1 without session");
    let loc = r.location().expect("location");
    let q: std::collections::HashMap<String, String> = loc.query_pairs().into_owned().collect();
    for (k, want) in [
        ("response_type", Some("code")),
        ("client_id", Some(st.client_id.as_str())),
        ("code_challenge_method", Some("S256")),
        ("redirect_uri", Some(st.redirect_url().as_str())),
        ("state", None),
        ("nonce", None),
        ("code_challenge", None),
        ("scope", None),
    ] {
        let got = q.get(k);
        st.check(
            got.is_some()
                && want
                    .map(|w| got.map(|g| g == w).unwrap_or(false))
                    .unwrap_or(true),
            || format!("authorization request: `{k}` is {got:?}, want {want:?} in {loc}"),
        );
    }
    st.check(q["scope"].split(' ').any(|s| s == "openid"), || {
        format!("scope lacks openid: {loc}")
    });
    st.check(q["code_challenge"].len() >= 43, || {
        format!("code_challenge too short: {loc}")
    });
    st.check(q["state"].len() >= 16 && q["nonce"].len() >= 16, || {
        format!("state/nonce too short: {loc}")
    });
    let csrf = r.set_cookie(CSRF);
    st.check(
        csrf.as_ref()
            .map(|c| c.http_only && !c.value.is_empty() && !c.is_deletion())
            .unwrap_or(false),
        || {
            format!(
                "the login redirect must set an HttpOnly {CSRF} cookie: {}",
                r.short()
            )
        },
    );
    st.check(session_cookies_set(&[hop_of(&r)]).is_empty(), || {
        "no session cookie before login".into()
    });

    // 2. Log in at the IdP; land on the original URL.
    let (resp, hops) = st.login(&mut b, &st.url("/headers?probe=1"), "john", "john");
    st.check(
        resp.status == 200 && resp.url == st.url("/headers?probe=1"),
        || {
            format!(
                "login did not return to /headers?probe=1:\n{}\nfinal: {}",
                format_hops(&hops),
                resp.short()
            )
        },
    );
    let cb = find_hop(&hops, "/oauth2/callback")
        .unwrap_or_else(|| st.fail(&format!("no callback hop:\n{}", format_hops(&hops))));
    st.check(cb.status == 302, || format!("callback status: {cb}"));
    let cb_loc = Url::parse(&cb.url)
        .unwrap()
        .join(cb.location.as_deref().unwrap_or(""))
        .unwrap();
    st.check(cb_loc.as_str() == st.url("/headers?probe=1"), || {
        format!("callback must redirect to the original URL: {cb}")
    });
    let sess = session_cookies_set(std::slice::from_ref(cb));
    st.check(sess.len() == 1 && sess[0].name == SESSION, || {
        format!("callback must set exactly `{SESSION}`: {cb}")
    });
    st.check(sess[0].http_only, || {
        format!("session cookie must be HttpOnly: {}", sess[0].raw)
    });
    st.check(sess[0].path.as_deref() == Some("/"), || {
        format!("session cookie must have Path=/: {}", sess[0].raw)
    });
    let csrf_cleared = cb
        .set_cookies
        .iter()
        .map(|s| SetCookie::parse(s))
        .any(|c| c.name == CSRF && c.is_deletion());
    st.check(csrf_cleared, || format!("callback must clear {CSRF}: {cb}"));
    st.check(b.cookie(&st.origin(), CSRF).is_none(), || {
        "CSRF cookie still in jar after login".into()
    });

    // 3. The app sees the identity.
    let h = resp.json();
    let expect = [
        ("x-forwarded-user", "john@example.com"),
        ("x-forwarded-email", "john@example.com"),
        ("x-forwarded-preferred-username", "john"),
        ("x-forwarded-groups", "developers"),
        ("x-auth-request-user", "john@example.com"),
        ("x-auth-request-email", "john@example.com"),
        ("x-auth-request-preferred-username", "john"),
        ("x-auth-request-groups", "developers"),
    ];
    for (k, v) in expect {
        st.check(
            header_str(&h, k).as_deref() == Some(v) && raw_count(&h, k) == 1,
            || {
                format!(
                    "app saw {k} = {:?} ({} times), want {v:?}; headers: {h}",
                    header_str(&h, k),
                    raw_count(&h, k)
                )
            },
        );
    }
    let at = header_str(&h, "x-forwarded-access-token").unwrap_or_default();
    st.check(at.len() >= 16, || {
        format!("x-forwarded-access-token missing/short: {at:?}")
    });
    let authz_h = header_str(&h, "authorization").unwrap_or_default();
    let idt = authz_h.strip_prefix("Bearer ").unwrap_or_else(|| {
        st.fail(&format!(
            "Authorization is {authz_h:?}, want Bearer <id_token>"
        ))
    });
    let p = jwt::payload(idt)
        .unwrap_or_else(|| st.fail(&format!("Authorization bearer is not a JWT: {idt:?}")));
    st.check(
        p["email"] == "john@example.com" && p["sub"] == "john" && p["iss"] == json!(st.issuer()),
        || format!("id_token payload: {p}"),
    );
    st.check(
        p["aud"] == json!(st.client_id)
            || p["aud"]
                .as_array()
                .map(|a| a.contains(&json!(st.client_id)))
                .unwrap_or(false),
        || format!("id_token aud: {p}"),
    );
    // The session cookie never reaches the app.
    let ck = header_str(&h, "cookie").unwrap_or_default();
    st.check(!ck.contains(SESSION), || {
        format!("the app received our cookie: {ck:?}")
    });

    // 4. Another cookie passes through, ours is stripped.
    b.set(&st.origin(), "other", "1");
    let r = b.get(&st.url("/headers"));
    st.check(r.status == 200, || {
        format!("authenticated GET /headers: {}", r.short())
    });
    let h = r.json();
    st.check(
        header_str(&h, "cookie").as_deref() == Some("other=1"),
        || {
            format!(
                "the app must see exactly `other=1` as Cookie, saw {:?}",
                header_str(&h, "cookie")
            )
        },
    );
    st.check(
        header_str(&h, "x-forwarded-email").as_deref() == Some("john@example.com"),
        || format!("{h}"),
    );

    // 5. The demo app's HTML greets the user.
    let r = b.get(&st.url("/"));
    st.check(
        r.status == 200 && r.text().contains("Hello, john@example.com"),
        || format!("GET /: {}", r.short()),
    );
}

/// A2: spoofed identity headers never reach the app.
#[test]
fn a02_spoofed_identity_headers_never_reach_the_app() {
    let st = Stack::builder().app(App::Recorder).start();
    let authz = authz_endpoint(&st);
    let rec = st.recorder.as_ref().expect("recorder");

    // Unauthenticated, with spoofed headers: browser -> login redirect, API -> 401, and the
    // app receives nothing.
    let spoof_once: Vec<(&str, &str)> = vec![
        ("X-Forwarded-Email", "evil@evil.example"),
        ("X-Forwarded-User", "evil"),
        ("X-Auth-Request-Email", "evil@evil.example"),
        ("X-Forwarded-Groups", "admins"),
    ];
    let mut anon = Browser::new();
    let r = anon.get_with(&st.url("/headers"), &spoof_once);
    assert_login_redirect(
        &st,
        &r,
        &authz,
        "unauthenticated browser request with spoofed headers",
    );
    let mut hs = spoof_once.clone();
    hs.push(("Accept", "application/json"));
    let r = anon.get_with(&st.url("/headers"), &hs);
    assert_401(&st, &r, "unauthenticated API request with spoofed headers");
    let r = anon.get_with(&st.url("/ping"), &spoof_once);
    st.check(r.status == 200, || format!("/ping: {}", r.short()));
    st.check(rec.count() == 0, || {
        format!(
            "the app received unauthenticated requests:\n{}",
            rec.summary()
        )
    });

    // Authenticated: every spoofed copy is removed, the real values set once.
    let mut b = Browser::new();
    st.login_ok(&mut b, "/", "john");
    let mut spoof: Vec<(String, String)> = Vec::new();
    for (i, name) in IDENTITY_HEADERS.iter().enumerate() {
        let upper = name.to_ascii_uppercase();
        let mixed: String = name
            .chars()
            .enumerate()
            .map(|(j, c)| {
                if (i + j) % 2 == 0 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect();
        spoof.push((upper, "evil@evil.example".into()));
        spoof.push((mixed, "spoofed-value".into()));
        spoof.push((name.to_string(), "admins,root".into()));
    }
    spoof.push(("Authorization".into(), "Bearer spoofed.jwt.value".into()));
    let refs: Vec<(&str, &str)> = spoof
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let r = b.get_with(&st.url("/headers"), &refs);
    st.check(r.status == 200, || {
        format!(
            "authenticated GET /headers with spoofed headers: {}",
            r.short()
        )
    });
    let h = r.json();
    let want = [
        ("x-forwarded-user", Some("john@example.com")),
        ("x-forwarded-email", Some("john@example.com")),
        ("x-forwarded-preferred-username", Some("john")),
        ("x-forwarded-groups", Some("developers")),
        ("x-auth-request-user", Some("john@example.com")),
        ("x-auth-request-email", Some("john@example.com")),
        ("x-auth-request-preferred-username", Some("john")),
        ("x-auth-request-groups", Some("developers")),
    ];
    for (k, v) in want {
        st.check(
            header_str(&h, k).as_deref() == v && raw_count(&h, k) == 1,
            || {
                format!(
                    "spoofed {k}: app saw {:?} ({} copies), want {v:?}",
                    header_str(&h, k),
                    raw_count(&h, k)
                )
            },
        );
    }
    for k in ["x-forwarded-access-token", "authorization"] {
        let v = header_str(&h, k).unwrap_or_default();
        st.check(
            raw_count(&h, k) == 1 && !v.contains("evil") && !v.contains("spoofed"),
            || format!("spoofed {k}: app saw {v:?} ({} copies)", raw_count(&h, k)),
        );
    }
    // x-auth-request-access-token is not configured here (oauth2-proxy sets it only with
    // pass_access_token + set_xauthrequest); whatever the app sees must not be spoofed.
    let dump = h.to_string();
    st.check(
        !dump.contains("evil") && !dump.contains("spoofed") && !dump.contains("admins"),
        || format!("a spoofed value reached the app: {dump}"),
    );
}

/// A2b: the client's copies are removed even for header groups that are switched off.
#[test]
fn a02b_spoofed_headers_removed_when_options_off() {
    let st = Stack::builder()
        .app(App::Recorder)
        .plugin("set_xauthrequest", json!(false))
        .plugin("pass_access_token", json!(false))
        .plugin("pass_authorization_header", json!(false))
        .plugin("pass_user_headers", json!(false))
        .start();
    let mut b = Browser::new();
    st.login_ok(&mut b, "/", "john");
    let mut spoof: Vec<(String, String)> = Vec::new();
    for name in IDENTITY_HEADERS {
        spoof.push((name.to_ascii_uppercase(), "evil@evil.example".into()));
        spoof.push((name.to_string(), "spoofed-value".into()));
    }
    spoof.push(("Authorization".into(), "Bearer spoofed.jwt.value".into()));
    let refs: Vec<(&str, &str)> = spoof
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let r = b.get_with(&st.url("/headers"), &refs);
    st.check(r.status == 200, || format!("GET /headers: {}", r.short()));
    let h = r.json();
    for k in IDENTITY_HEADERS.iter().chain(["authorization"].iter()) {
        st.check(raw_count(&h, k) == 0, || {
            format!(
                "with every header option off, the app still received {k}: {:?}",
                header_str(&h, k)
            )
        });
    }
}

/// A3: modified, truncated and foreign cookies are "no session".
#[test]
fn a03_tampered_or_foreign_cookies_are_no_session() {
    let mut st = Stack::builder().start();
    let authz = authz_endpoint(&st);
    let mut b = Browser::new();
    st.login_ok(&mut b, "/", "john");
    let good = b
        .cookie(&st.origin(), SESSION)
        .unwrap_or_else(|| st.fail("no session cookie"));
    st.check(good.len() > 40, || {
        format!("session cookie suspiciously short: {good:?}")
    });

    // Control: the untouched cookie works (so the checks below can fail).
    let probe = |st: &Stack, value: &str, ctx: &str, expect_ok: bool| {
        let cookie = format!("{SESSION}={value}");
        let mut fresh = Browser::new();
        let r = fresh.get_with(&st.url("/headers"), &[("Cookie", cookie.as_str())]);
        if expect_ok {
            st.check(r.status == 200, || {
                format!("{ctx}: expected 200, got {}", r.short())
            });
            return;
        }
        assert_login_redirect(st, &r, &authz, &format!("{ctx} (browser)"));
        let r = fresh.get_with(
            &st.url("/headers"),
            &[("Cookie", cookie.as_str()), ("Accept", "application/json")],
        );
        assert_401(st, &r, &format!("{ctx} (API)"));
    };
    probe(&st, &good, "untouched cookie", true);

    let mid = good.len() / 2;
    let c = good.as_bytes()[mid] as char;
    let repl = if c == 'A' { 'B' } else { 'A' };
    let flipped = format!("{}{}{}", &good[..mid], repl, &good[mid + 1..]);
    probe(
        &st,
        &flipped,
        "cookie with one character changed in the middle",
        false,
    );
    // Flip the last character too (the GCM tag lives there).
    let last = good.len() - 2;
    let c = good.as_bytes()[last] as char;
    let repl = if c == 'A' { 'B' } else { 'A' };
    let flipped_tail = format!("{}{}{}", &good[..last], repl, &good[last + 1..]);
    probe(
        &st,
        &flipped_tail,
        "cookie with a character near the end changed",
        false,
    );
    probe(&st, &good[..good.len() / 2], "truncated cookie", false);
    probe(
        &st,
        &good[..good.len() - 1],
        "cookie missing its last character",
        false,
    );
    probe(&st, "", "empty cookie", false);
    probe(&st, "garbage!!", "garbage cookie", false);

    // A cookie sealed under another cookie_secret: restart Envoy with a new secret.
    st.cookie_secret = support::random_cookie_secret();
    st.restart_envoy();
    probe(
        &st,
        &good,
        "cookie sealed with a different cookie_secret",
        false,
    );
    // And the new instance still works normally.
    let mut b2 = Browser::new();
    st.login_ok(&mut b2, "/", "john");
}

/// A4: sign_out ends the session and only follows safe rd values.
#[test]
fn a04_sign_out() {
    // The `rd` rule on its own; RP-initiated logout is tests/lifecycle.rs's.
    let st = Stack::builder()
        .plugin("oidc_rp_initiated_logout", json!(false))
        .start();
    let authz = authz_endpoint(&st);
    let mut b = Browser::new();
    st.login_ok(&mut b, "/", "john");

    let r = b.get(&st.url("/oauth2/sign_out?rd=%2Fafter%3Fx%3D1"));
    st.check(
        r.status == 302
            && r.location()
                .map(|l| l.as_str() == st.url("/after?x=1"))
                .unwrap_or(false),
        || format!("sign_out?rd=/after?x=1: {}", r.short()),
    );
    st.check(
        r.set_cookies()
            .iter()
            .any(|c| c.name == SESSION && c.is_deletion()),
        || format!("sign_out must expire {SESSION}: {}", r.short()),
    );
    st.check(session_cookies_in_jar(&b, &st.origin()).is_empty(), || {
        "session still in jar after sign_out".into()
    });
    let r = b.get(&st.url("/"));
    assert_login_redirect(&st, &r, &authz, "GET / after sign_out");

    for (rd, ctx) in [
        ("https%3A%2F%2Fevil.example%2F", "absolute foreign URL"),
        ("%2F%2Fevil.example", "protocol-relative //evil.example"),
        ("%2F%5Cevil.example", "/\\evil.example"),
        ("https%3Aevil.example", "https:evil.example"),
    ] {
        st.login_ok(&mut b, "/", "john"); // IdP session still alive: no login form
        let r = b.get(&st.url(&format!("/oauth2/sign_out?rd={rd}")));
        let loc = r.location();
        st.check(r.status == 302, || {
            format!("sign_out rd={ctx}: {}", r.short())
        });
        st.check(
            loc.as_ref()
                .map(|l| origin_of(l) == st.origin() && l.path() == "/")
                .unwrap_or(false)
                && !r.header("location").unwrap_or("").contains("evil"),
            || {
                format!(
                    "sign_out with unsafe rd ({ctx}) must go to `/`: {}",
                    r.short()
                )
            },
        );
        st.check(session_cookies_in_jar(&b, &st.origin()).is_empty(), || {
            format!("sign_out rd={ctx}: session kept")
        });
    }
    // No rd: back to "/".
    st.login_ok(&mut b, "/", "john");
    let r = b.get(&st.url("/oauth2/sign_out"));
    st.check(
        r.status == 302
            && r.location()
                .map(|l| l.as_str() == st.url("/"))
                .unwrap_or(false),
        || format!("sign_out without rd: {}", r.short()),
    );
}

/// A5: /ping and /ready need no login; API-style requests get 401, not a redirect.
#[test]
fn a05_ping_ready_and_api_requests() {
    let st = Stack::builder().app(App::Recorder).start();
    let rec = st.recorder.as_ref().expect("recorder");
    let mut b = Browser::new();
    let r = b.get(&st.url("/ping"));
    st.check(r.status == 200, || format!("GET /ping: {}", r.short()));
    st.check(rec.count() == 0, || {
        format!("/ping must be answered by the filter:\n{}", rec.summary())
    });
    let r = b.get_with(&st.url("/ping"), API);
    st.check(r.status == 200, || {
        format!("GET /ping (json): {}", r.short())
    });
    let r = b.get(&st.url("/ready"));
    st.check(r.status == 200, || format!("GET /ready: {}", r.short()));

    for (ctx, hs) in [
        (
            "Accept: application/json",
            vec![("Accept", "application/json")],
        ),
        (
            "X-Requested-With with Accept text/html",
            vec![("X-Requested-With", "XMLHttpRequest")],
        ),
        ("Accept: */*", vec![("Accept", "*/*")]),
    ] {
        for path in ["/", "/api/items?x=1"] {
            let r = b.get_with(&st.url(path), &hs);
            assert_401(&st, &r, &format!("GET {path} ({ctx}) without session"));
        }
        let r = b.send("POST", &st.url("/api/items"), &hs, Some(b"{}"));
        assert_401(&st, &r, &format!("POST /api/items ({ctx}) without session"));
    }
    // Without a session nothing reaches the app (/ping and /ready are answered by the filter).
    st.check(rec.count() == 0, || {
        format!(
            "unauthenticated requests reached the app:\n{}",
            rec.summary()
        )
    });
    // With a session the same API request goes through.
    st.login_ok(&mut b, "/", "john");
    let r = b.get_with(&st.url("/api/items?x=1"), API);
    st.check(
        r.status == 200 && r.json()["path"] == "/api/items?x=1",
        || format!("API request with session: {}", r.short()),
    );
    // Request bodies pass through intact.
    let body = br#"{"name":"widget","qty":3}"#;
    let r = b.send(
        "POST",
        &st.url("/api/items"),
        &[
            ("Accept", "application/json"),
            ("Content-Type", "application/json"),
        ],
        Some(body),
    );
    let last = rec.requests().pop();
    st.check(
        r.status == 200
            && last
                .as_ref()
                .map(|q| q.body == body && q.method == "POST")
                .unwrap_or(false),
        || {
            format!(
                "authenticated POST body did not reach the app intact: {}",
                r.short()
            )
        },
    );
}

/// A15: path tricks around the unauthenticated endpoints never reach the app without a
/// session (Envoy normalises paths; /ping and /ready are answered, never proxied).
#[test]
fn a15_path_tricks_do_not_bypass_the_gate() {
    let st = Stack::builder().app(App::Recorder).start();
    let rec = st.recorder.as_ref().unwrap();
    let mut seen = Vec::new();
    for target in [
        "/ping/../headers",
        "/ping/%2e%2e/headers",
        "/ready/..%2fheaders",
        "/ping%2f..%2fheaders",
        "/./ping/../headers",
        "/oauth2/callback/../../headers",
        "/oauth2/../headers",
        "/ping;/../headers",
        "/ping%00/../headers",
        "/PING",
        "/ping/",
        "/headers#/ping",
        "/headers?/ping",
    ] {
        let r = support::http::raw_request_target(
            false,
            "GET",
            "127.0.0.1",
            st.listen_port,
            target,
            &st.url(target),
            &[("Accept".into(), "application/json".into())],
            None,
            Duration::from_secs(10),
        )
        .unwrap_or_else(|e| st.fail(&format!("GET {target}: {e}")));
        seen.push(format!("{target} -> {}", r.status));
        st.check(r.status != 200 || !r.text().contains("\"host\""), || {
            format!("GET {target} without session was proxied: {}", r.short())
        });
        st.check(rec.count() == 0, || {
            format!(
                "GET {target} without session reached the app:\n{}",
                rec.summary()
            )
        });
    }
    eprintln!("a15 statuses: {}", seen.join("; "));
}

/// A6: bigjohn's session is split into chunks; later a smaller session clears stale chunks.
#[test]
fn a06_big_session_is_chunked_and_stale_chunks_cleared() {
    let st = Stack::builder().start();
    let mut b = Browser::new();
    let (resp, hops) = st.login_ok(&mut b, "/headers", "bigjohn");
    let cb = find_hop(&hops, "/oauth2/callback").unwrap_or_else(|| st.fail("no callback hop"));
    let set = session_cookies_set(std::slice::from_ref(cb));
    let names: Vec<&str> = set.iter().map(|c| c.name.as_str()).collect();
    st.check(set.len() >= 2, || {
        format!("bigjohn's session must be chunked, callback set {names:?}: {cb}")
    });
    for (i, c) in set.iter().enumerate() {
        st.check(c.name == format!("{SESSION}_{i}"), || {
            format!(
                "chunk {i} is named {}, want {SESSION}_{i} ({names:?})",
                c.name
            )
        });
        st.check(c.raw.len() < 4096, || {
            format!(
                "chunk {} Set-Cookie is {} bytes (must be < 4096)",
                c.name,
                c.raw.len()
            )
        });
        st.check(c.http_only && c.path.as_deref() == Some("/"), || {
            format!("chunk attributes: {}", c.raw)
        });
    }
    st.check(!names.contains(&SESSION), || {
        format!("unchunked {SESSION} set alongside chunks: {names:?}")
    });

    let groups_want: Vec<String> = (0..150)
        .map(|i| format!("group-with-a-fairly-long-name-{i:03}"))
        .collect();
    let check_big = |r: &Response, ctx: &str| {
        st.check(r.status == 200, || format!("{ctx}: {}", r.short()));
        let h = r.json();
        st.check(
            header_str(&h, "x-forwarded-email").as_deref() == Some("bigjohn@example.com"),
            || {
                format!(
                    "{ctx}: x-forwarded-email = {:?}",
                    header_str(&h, "x-forwarded-email")
                )
            },
        );
        let g = header_str(&h, "x-forwarded-groups").unwrap_or_default();
        let got: Vec<String> = g.split(',').map(|s| s.trim().to_string()).collect();
        st.check(got == groups_want, || {
            format!(
                "{ctx}: x-forwarded-groups has {} entries: {}…",
                got.len(),
                &g[..g.len().min(200)]
            )
        });
        let ck = header_str(&h, "cookie").unwrap_or_default();
        st.check(!ck.contains(SESSION), || {
            format!(
                "{ctx}: session chunks leaked to the app: {}…",
                &ck[..ck.len().min(200)]
            )
        });
    };
    check_big(&resp, "landing after bigjohn's login");
    let r = b.get(&st.url("/headers"));
    check_big(&r, "next request with chunked session");

    // Signing out expires every chunk (checked on a copy of the browser).
    let mut so = b.clone();
    let r = so.get(&st.url("/oauth2/sign_out"));
    let expired: Vec<String> = r
        .set_cookies()
        .into_iter()
        .filter(|c| c.is_deletion())
        .map(|c| c.name)
        .collect();
    for c in &set {
        st.check(expired.contains(&c.name), || {
            format!(
                "sign_out must expire chunk {} (expired {expired:?}): {}",
                c.name,
                r.short()
            )
        });
    }
    st.check(session_cookies_in_jar(&so, &st.origin()).is_empty(), || {
        "chunks left in the jar after sign_out".into()
    });

    // Now john logs in in the same browser (new IdP login, explicit /oauth2/start since the
    // browser still holds bigjohn's session).
    st.forget_idp_session(&mut b);
    let (resp, hops) = st.login(
        &mut b,
        &st.url("/oauth2/start?rd=%2Fheaders"),
        "john",
        "john",
    );
    st.check(resp.status == 200 && resp.url == st.url("/headers"), || {
        format!(
            "john's login via /oauth2/start:\n{}\nfinal: {}",
            format_hops(&hops),
            resp.short()
        )
    });
    let jar = session_cookies_in_jar(&b, &st.origin());
    st.check(jar == vec![SESSION.to_string()], || {
        format!(
            "after john's login the jar must hold only {SESSION}, holds {jar:?}:\n{}",
            format_hops(&hops)
        )
    });
    let h = resp.json();
    st.check(
        header_str(&h, "x-forwarded-email").as_deref() == Some("john@example.com")
            && header_str(&h, "x-forwarded-groups").as_deref() == Some("developers"),
        || format!("after switching to john: {h}"),
    );

    // /oauth2/start already expired the chunks above. The callback must clean up too: a
    // browser that still sends stale chunks when it comes back from the IdP (e.g. another
    // tab stored them meanwhile) must end with only the new, unchunked cookie.
    st.forget_idp_session(&mut b);
    b.pause_before = Some("/oauth2/callback".into());
    let (at_idp, hops) = st.login(
        &mut b,
        &st.url("/oauth2/start?rd=%2Fheaders"),
        "john",
        "john",
    );
    b.pause_before = None;
    let cb_url = at_idp.location().unwrap_or_else(|| {
        st.fail(&format!(
            "no redirect to the callback:\n{}",
            format_hops(&hops)
        ))
    });
    for c in &set {
        b.set(&st.origin(), &c.name, &c.value); // bigjohn's chunks are back
    }
    let (resp, hops) = b.follow_get(cb_url.as_str());
    let cleared: Vec<String> = hops
        .first()
        .map(|h| {
            h.set_cookies
                .iter()
                .map(|s| SetCookie::parse(s))
                .filter(|c| c.is_deletion())
                .map(|c| c.name)
                .collect()
        })
        .unwrap_or_default();
    for c in &set {
        st.check(cleared.contains(&c.name), || {
            format!(
                "the callback must expire the stale chunk {} the browser sent (expired {cleared:?}):\n{}",
                c.name,
                format_hops(&hops)
            )
        });
    }
    let jar = session_cookies_in_jar(&b, &st.origin());
    st.check(
        resp.status == 200 && jar == vec![SESSION.to_string()],
        || {
            format!(
                "after a callback carrying stale chunks the jar holds {jar:?}:\n{}\nfinal: {}",
                format_hops(&hops),
                resp.short()
            )
        },
    );
    let h = resp.json();
    st.check(
        header_str(&h, "x-forwarded-email").as_deref() == Some("john@example.com"),
        || format!("after the callback with stale chunks: {h}"),
    );
}

/// A7: /oauth2/userinfo and /oauth2/auth.
#[test]
fn a07_userinfo_and_auth_endpoints() {
    let st = Stack::builder().app(App::Recorder).start();
    let rec = st.recorder.as_ref().expect("recorder");
    let mut b = Browser::new();
    for p in ["/oauth2/userinfo", "/oauth2/auth"] {
        let r = b.get_with(&st.url(p), API);
        assert_401(&st, &r, &format!("{p} without session"));
        let r = b.get(&st.url(p));
        st.check(r.status == 401, || {
            format!(
                "{p} without session (browser Accept) must be 401: {}",
                r.short()
            )
        });
    }
    st.login_ok(&mut b, "/", "john");
    let n = rec.count();
    let r = b.get_with(&st.url("/oauth2/userinfo"), API);
    st.check(r.status == 200, || {
        format!("/oauth2/userinfo: {}", r.short())
    });
    let u = r.json();
    st.check(
        u["email"] == "john@example.com"
            && u["user"] == "john@example.com"
            && u["preferredUsername"] == "john"
            && u["groups"] == json!(["developers"]),
        || format!("/oauth2/userinfo body: {u}"),
    );
    let r = b.get_with(&st.url("/oauth2/auth"), API);
    st.check(r.status == 202, || {
        format!("/oauth2/auth with session: {}", r.short())
    });
    for (k, v) in [
        ("x-auth-request-user", "john@example.com"),
        ("x-auth-request-email", "john@example.com"),
        ("x-auth-request-preferred-username", "john"),
        ("x-auth-request-groups", "developers"),
    ] {
        st.check(r.header(k) == Some(v), || {
            format!(
                "/oauth2/auth response header {k} = {:?}, want {v}: {}",
                r.header(k),
                r.short()
            )
        });
    }
    st.check(rec.count() == n, || {
        format!(
            "/oauth2/* endpoints must not be proxied:\n{}",
            rec.summary()
        )
    });
    // The sign-in page.
    let mut anon = Browser::new();
    let r = anon.get(&st.url("/oauth2/sign_in"));
    st.check(
        r.status == 200 && r.header("content-type").unwrap_or("").contains("text/html"),
        || format!("/oauth2/sign_in: {}", r.short()),
    );
    let page = r.text();
    let has_start = support::html::hrefs(&page)
        .iter()
        .any(|h| h.contains("/oauth2/start"))
        || support::html::forms(&page)
            .iter()
            .any(|f| f.action.contains("/oauth2/start"));
    st.check(has_start, || {
        format!("/oauth2/sign_in has no link/form to /oauth2/start: {page}")
    });
}

/// A8: the client_secret_post client.
#[test]
fn a08_client_secret_post() {
    let mut st = Stack::builder()
        .plugin(
            "client_id",
            json!(format!("{}-post", support::stack::CLIENT_ID)),
        )
        .plugin("token_endpoint_auth_method", json!("client_secret_post"))
        .start();
    let mut b = Browser::new();
    let (resp, _) = st.login_ok(&mut b, "/headers", "john");
    let h = resp.json();
    st.check(
        header_str(&h, "x-forwarded-email").as_deref() == Some("john@example.com"),
        || format!("{h}"),
    );
    let idt = header_str(&h, "authorization").unwrap_or_default();
    let p = jwt::payload(idt.trim_start_matches("Bearer ")).unwrap_or(Value::Null);
    st.check(
        p["aud"] == json!(format!("{}-post", support::stack::CLIENT_ID)),
        || format!("id_token aud: {p}"),
    );

    // Control: the same client with client_secret_basic is refused by the IdP -> error page.
    st.plugin_config["token_endpoint_auth_method"] = json!("client_secret_basic");
    st.restart_envoy();
    let mut b = Browser::new();
    let (resp, hops) = st.login(&mut b, &st.url("/"), "john", "john");
    st.check(
        resp.status >= 400 && resp.url.contains("/oauth2/callback"),
        || {
            format!(
                "-post client using client_secret_basic must fail at the callback:\n{}\nfinal: {}",
                format_hops(&hops),
                resp.short()
            )
        },
    );
    st.check(
        session_cookies_set(&hops).is_empty()
            && session_cookies_in_jar(&b, &st.origin()).is_empty(),
        || {
            format!(
                "failed token exchange set a session:\n{}",
                format_hops(&hops)
            )
        },
    );
}

/// A key pair for `private_key_jwt`: the private key as PKCS#8 PEM and the public one as
/// the IdP's client JWK Set.
fn client_key_pair(kid: &str) -> (String, String) {
    use base64::Engine;
    use rsa::pkcs8::EncodePrivateKey;
    use rsa::traits::PublicKeyParts;
    let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("RSA key");
    let b64 = |b: Vec<u8>| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let jwks = json!({"keys": [{
        "kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
        "n": b64(key.n().to_bytes_be()), "e": b64(key.e().to_bytes_be()),
    }]});
    let pem = key
        .to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)
        .expect("PEM")
        .to_string();
    (pem, jwks.to_string())
}

/// A18: the private_key_jwt client: no secret, a signed client assertion the real IdP checks.
#[test]
fn a18_private_key_jwt() {
    let (pem, jwks) = client_key_pair("client-1");
    let mut st = Stack::builder()
        .idp_env("IDP_CLIENT_JWKS", &jwks)
        .plugin(
            "client_id",
            json!(format!("{}-jwt", support::stack::CLIENT_ID)),
        )
        .plugin("client_secret_env", Value::Null)
        .plugin("client_secret", Value::Null)
        .plugin("token_endpoint_auth_method", json!("private_key_jwt"))
        .plugin("client_private_key", json!(pem))
        .plugin("client_private_key_id", json!("client-1"))
        .start();
    let mut b = Browser::new();
    let (resp, _) = st.login_ok(&mut b, "/headers", "john");
    let h = resp.json();
    st.check(
        header_str(&h, "x-forwarded-email").as_deref() == Some("john@example.com"),
        || format!("{h}"),
    );

    // Control: a key the IdP does not know gets no session.
    let (other, _) = client_key_pair("client-1");
    st.plugin_config["client_private_key"] = json!(other);
    st.restart_envoy();
    let mut b = Browser::new();
    let (resp, hops) = st.login(&mut b, &st.url("/"), "john", "john");
    st.check(
        resp.status >= 400
            && resp.url.contains("/oauth2/callback")
            && session_cookies_set(&hops).is_empty(),
        || {
            format!(
                "an unknown client key must fail at the callback:\n{}\nfinal: {}",
                format_hops(&hops),
                resp.short()
            )
        },
    );
}

/// A9: email_domains restricts who gets in.
#[test]
fn a09_email_domains() {
    let st = Stack::builder()
        .plugin("email_domains", json!(["example.com"]))
        .start();
    let authz = authz_endpoint(&st);
    let mut b = Browser::new();
    let (resp, _) = st.login_ok(&mut b, "/headers", "john");
    st.check(
        header_str(&resp.json(), "x-forwarded-email").as_deref() == Some("john@example.com"),
        || resp.short(),
    );

    let mut jb = Browser::new();
    let (resp, hops) = st.login(&mut jb, &st.url("/headers"), "jane", "jane");
    st.check(
        resp.status == 403 && resp.url.contains("/oauth2/callback"),
        || {
            format!(
                "jane@other.org must get 403 at the callback:\n{}\nfinal: {}",
                format_hops(&hops),
                resp.short()
            )
        },
    );
    st.check(
        resp.header("content-type")
            .unwrap_or("")
            .contains("text/html"),
        || format!("error page must be HTML: {}", resp.short()),
    );
    st.check(
        session_cookies_set(&hops).is_empty()
            && session_cookies_in_jar(&jb, &st.origin()).is_empty(),
        || format!("jane got a session:\n{}", format_hops(&hops)),
    );
    let r = jb.get(&st.url("/headers"));
    assert_login_redirect(&st, &r, &authz, "jane's next request");

    // Unverified email is refused too (insecure_oidc_allow_unverified_email defaults to false).
    let mut ub = Browser::new();
    let (resp, hops) = st.login(&mut ub, &st.url("/"), "unverified", "unverified");
    st.check(
        resp.status >= 400 && resp.status < 600 && session_cookies_set(&hops).is_empty(),
        || {
            format!(
                "unverified@example.com must be refused:\n{}\nfinal: {}",
                format_hops(&hops),
                resp.short()
            )
        },
    );
}

/// A10: a bad cookie_secret never lets traffic through.
#[test]
fn a10_bad_cookie_secret_is_refused() {
    let bad = "tooShortSecret"; // 14 chars; base64 of 10 bytes: neither is 16/24/32 bytes
    let mut st = Stack::builder()
        .app(App::Recorder)
        .inline_secrets()
        .cookie_secret(bad)
        .start_no_envoy();
    match st.spawn_envoy_and_wait(Duration::from_secs(60)) {
        None => {
            st.fail("envoy neither exited nor became ready within 60s with a bad cookie_secret")
        }
        Some(Err(status)) => {
            eprintln!("a10: envoy refused to start ({status})");
            st.check(!status.success(), || {
                format!("envoy exited with {status} (must be non-zero)")
            });
        }
        Some(Ok(())) => {
            eprintln!("a10: envoy started; every request must be answered with 5xx");
            // Give the plugin a moment to (fail to) configure, then every request is 5xx.
            std::thread::sleep(Duration::from_millis(500));
            let mut b = Browser::new();
            for (path, hs) in [
                ("/", vec![]),
                ("/headers", vec![("Accept", "application/json")]),
                ("/oauth2/start?rd=%2F", vec![]),
                ("/oauth2/callback?code=x&state=y", vec![]),
                ("/ping", vec![]),
            ] {
                let r = b.get_with(&st.url(path), &hs);
                st.check(r.status >= 500, || {
                    format!(
                        "with a bad cookie_secret, GET {path} must be 5xx, got {}",
                        r.short()
                    )
                });
            }
        }
    }
    let rec = st.recorder.as_ref().expect("recorder");
    st.check(rec.count() == 0, || {
        format!("the app received requests:\n{}", rec.summary())
    });
    let log = st.envoy_log();
    st.check(log.contains("cookie_secret"), || {
        "envoy's log does not name `cookie_secret`".into()
    });
    st.check(!log.contains(bad), || {
        "envoy's log contains the secret value".into()
    });
    st.check(!log.contains(&st.client_secret), || {
        "envoy's log contains the client secret".into()
    });
}

/// A11: open-redirect attempts through `rd` end on our own origin.
#[test]
fn a11_open_redirects_are_neutralised() {
    // `rd` on its own: RP-initiated logout would send sign-out to the IdP first.
    let st = Stack::builder()
        .plugin("whitelist_domains", json!(["trusted.example"]))
        .plugin("oidc_rp_initiated_logout", json!(false))
        .start();
    let mut b = Browser::new();
    st.login_ok(&mut b, "/", "john"); // IdP session for the rest
    let attempts = [
        "https://evil.example/",
        "//evil.example",
        "/\\evil.example",
        "/\\/evil.example",
        "\\\\evil.example",
        "///evil.example",
        "https:evil.example",
        "http://127.0.0.1.evil.example/",
        "/%2F/evil.example",
        "/%5Cevil.example",
        "javascript:alert(1)",
        "http://evil.example@127.0.0.1/",
        " //evil.example",
        "/\t/evil.example",
        "https://trusted.example.evil.example/",
    ];
    for rd in attempts {
        let enc: String = url::form_urlencoded::byte_serialize(rd.as_bytes()).collect();
        let mut bb = b.clone();
        bb.jar.retain(|c| !is_session_cookie_name(&c.name)); // keep the IdP session only
        let (resp, hops) = bb.follow_get(&st.url(&format!("/oauth2/start?rd={enc}")));
        let after_cb: Vec<&Hop> = hops
            .iter()
            .skip_while(|h| !h.url.contains("/oauth2/callback"))
            .collect();
        st.check(!after_cb.is_empty(), || {
            format!(
                "rd={rd:?}: the flow never reached the callback:\n{}",
                format_hops(&hops)
            )
        });
        for h in &after_cb {
            if let Some(l) = &h.location {
                let abs = Url::parse(&h.url).unwrap().join(l).ok();
                // url::Url::join follows the WHATWG URL rules a browser applies to Location
                // (backslashes, tabs, scheme-relative forms), so this is where a browser goes.
                st.check(
                    abs.as_ref()
                        .map(|a| origin_of(a) == st.origin())
                        .unwrap_or(false),
                    || {
                        format!(
                            "rd={rd:?}: redirect off-site after the callback: {h}\n{}",
                            format_hops(&hops)
                        )
                    },
                );
            }
        }
        st.check(
            resp.status == 200 && origin_of(&Url::parse(&resp.url).unwrap()) == st.origin(),
            || {
                format!(
                    "rd={rd:?}: must end on our origin with 200:\n{}\nfinal: {}",
                    format_hops(&hops),
                    resp.short()
                )
            },
        );
    }
    // A whitelisted domain is honoured (sign_out), a look-alike is not.
    let r = b.get(&st.url("/oauth2/sign_out?rd=https%3A%2F%2Ftrusted.example%2Fbye"));
    st.check(
        r.status == 302 && r.header("location") == Some("https://trusted.example/bye"),
        || format!("sign_out to a whitelisted domain: {}", r.short()),
    );
    st.login_ok(&mut b, "/", "john");
    let r = b.get(&st.url("/oauth2/sign_out?rd=https%3A%2F%2Ftrusted.example.evil.example%2F"));
    st.check(
        r.status == 302 && !r.header("location").unwrap_or("").contains("evil"),
        || format!("sign_out to a look-alike domain: {}", r.short()),
    );
}

/// A12: the callback itself rejects forged or replayed requests.
#[test]
fn a12_callback_rejects_forged_requests() {
    let st = Stack::builder().app(App::Recorder).start();
    let authz = authz_endpoint(&st);
    let mut b = Browser::new();
    // Callback without any login in progress.
    let r = b.get(&st.url("/oauth2/callback?code=abc&state=def"));
    st.check(
        (400..500).contains(&r.status) && session_cookies_set(&[hop_of(&r)]).is_empty(),
        || format!("callback without CSRF cookie: {}", r.short()),
    );
    // Start a login, then come back with the real code but another state.
    let r = b.get(&st.url("/"));
    assert_login_redirect(&st, &r, &authz, "GET /");
    // A clone of the browser (same CSRF cookie) completes the login and uses the code.
    let mut bb = b.clone();
    let (_, hops) = st.login(&mut bb, r.location().unwrap().as_str(), "john", "john");
    // That login reached the app once; nothing below may.
    let app_requests = st.recorder.as_ref().unwrap().count();
    let cb = find_hop(&hops, "/oauth2/callback")
        .unwrap_or_else(|| st.fail(&format!("no callback:\n{}", format_hops(&hops))));
    let cb_url = Url::parse(&cb.url).unwrap();
    // `b` still holds the CSRF cookie but the clone already used the code: replay it.
    let r = b.get(cb_url.as_str());
    st.check(
        r.status >= 400 && session_cookies_set(&[hop_of(&r)]).is_empty(),
        || format!("replayed authorization code must fail: {}", r.short()),
    );
    // Error page must be HTML.
    st.check(
        r.header("content-type").unwrap_or("").contains("text/html"),
        || format!("callback error page is not HTML: {}", r.short()),
    );
    // An error from the OP (user denied) is shown, no session.
    let mut d = Browser::new();
    let r = d.get(&st.url("/"));
    let state = r
        .location()
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let enc: String = url::form_urlencoded::byte_serialize(state.as_bytes()).collect();
    let r = d.get(&st.url(&format!("/oauth2/callback?error=access_denied&error_description=%3Cscript%3Ealert(1)%3C%2Fscript%3E&state={enc}")));
    st.check(
        r.status >= 400 && r.status < 500 && session_cookies_set(&[hop_of(&r)]).is_empty(),
        || format!("callback with error=access_denied: {}", r.short()),
    );
    st.check(!r.text().contains("<script>alert(1)</script>"), || {
        format!("error_description reflected unescaped: {}", r.short())
    });
    st.check(
        st.recorder.as_ref().unwrap().count() == app_requests,
        || "no forged callback may have reached the app".into(),
    );
}

// ====================================================== B. a misbehaving OpenID Provider

fn bad_op_stack(op: &BadOp) -> Stack {
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
fn bad_op_login(st: &Stack, b: &mut Browser) -> (Response, Vec<Hop>) {
    b.follow_get(&st.url("/private?from=e2e"))
}

fn expect_good(st: &Stack, op: &BadOp, ctx: &str) {
    let rec = st.recorder.as_ref().unwrap();
    let n = rec.count();
    let mut b = Browser::new();
    let (resp, hops) = bad_op_login(st, &mut b);
    st.check(
        resp.status == 200 && resp.url == st.url("/private?from=e2e"),
        || {
            format!(
                "{ctx}: control login must succeed:\n{}\nfinal: {}\nOP events:\n{}",
                format_hops(&hops),
                resp.short(),
                op.events()
            )
        },
    );
    st.check(rec.count() == n + 1, || {
        format!("{ctx}: the app must have seen exactly one request")
    });
    let last = rec.requests().pop().unwrap();
    st.check(
        last.header("x-forwarded-email") == Some("alice@example.com"),
        || format!("{ctx}: app saw {:?}", last.headers),
    );
    let v = op.violations();
    st.check(v.is_empty(), || {
        format!("{ctx}: the filter broke the protocol: {v:?}")
    });
}

fn expect_rejected(
    st: &Stack,
    op: &BadOp,
    name: &str,
    status_ok: impl Fn(u16) -> bool,
    status_desc: &str,
) -> u16 {
    let rec = st.recorder.as_ref().unwrap();
    let n = rec.count();
    let mut b = Browser::new();
    let (resp, hops) = bad_op_login(st, &mut b);
    let ctx = format!("scenario `{name}`");
    let msg = || {
        format!(
            "{}\nfinal: {}\nOP events:\n{}",
            format_hops(&hops),
            resp.short(),
            op.events()
        )
    };
    st.check(resp.url.contains("/oauth2/callback"), || {
        format!("{ctx}: must end at the callback:\n{}", msg())
    });
    st.check(resp.status >= 400 && status_ok(resp.status), || {
        format!("{ctx}: status must be {status_desc}:\n{}", msg())
    });
    st.check(
        resp.header("content-type")
            .unwrap_or("")
            .contains("text/html"),
        || format!("{ctx}: error page must be HTML:\n{}", msg()),
    );
    st.check(session_cookies_set(&hops).is_empty(), || {
        format!("{ctx}: a session cookie was set:\n{}", msg())
    });
    st.check(session_cookies_in_jar(&b, &st.origin()).is_empty(), || {
        format!("{ctx}: session cookie in jar:\n{}", msg())
    });
    st.check(rec.count() == n, || {
        format!("{ctx}: the app received a request:\n{}", rec.summary())
    });
    // The next request is still unauthenticated.
    let r = b.get(&st.url("/"));
    st.check(
        r.status == 302
            && r.location()
                .map(|l| {
                    l.as_str()
                        .starts_with(&format!("{}/authorize", op.issuer()))
                })
                .unwrap_or(false),
        || format!("{ctx}: next GET / must redirect to login: {}", r.short()),
    );
    resp.status
}

/// B1: every way an OP can be wrong ends in an error page and no session.
#[test]
fn b01_misbehaving_op_scenarios() {
    let op = BadOp::start(support::stack::CLIENT_ID, "bad-op-secret");
    let st = bad_op_stack(&op);
    op.set_scenario(Scenario::Good);
    expect_good(&st, &op, "scenario `good` (first)");

    let any4xx5xx = |s: u16| (400..600).contains(&s);
    let mut statuses = Vec::new();
    let token_problems: Vec<(&str, Scenario)> = vec![
        ("bad signature", Scenario::BadSignature),
        ("alg none", Scenario::AlgNone),
        (
            "HS256 keyed with the RSA public key (PEM)",
            Scenario::Hs256PublicPem,
        ),
        (
            "HS256 keyed with the RSA public key (DER)",
            Scenario::Hs256PublicDer,
        ),
        ("unknown kid", Scenario::UnknownKid),
        ("known kid, wrong key", Scenario::WrongKeyForKid),
        ("wrong iss", Scenario::WrongIssuer),
        ("wrong aud", Scenario::WrongAudience),
        ("expired", Scenario::Expired),
        ("nonce mismatch", Scenario::NonceMismatch),
        ("nonce missing", Scenario::NonceMissing),
        ("email not verified", Scenario::EmailUnverified),
        ("token endpoint 500", Scenario::Token500),
        ("token endpoint returns non-JSON", Scenario::TokenGarbage),
    ];
    for (name, sc) in token_problems {
        op.set_scenario(sc);
        let s = expect_rejected(&st, &op, name, any4xx5xx, "4xx/5xx");
        statuses.push(format!("{name}: {s}"));
    }
    op.set_scenario(Scenario::StateMismatch);
    let s = expect_rejected(&st, &op, "state mismatch", |s| s == 403, "403");
    statuses.push(format!("state mismatch: {s}"));
    let tr = op.token_requests();
    op.set_scenario(Scenario::TokenSlow(Duration::from_secs(4)));
    let t0 = std::time::Instant::now();
    let s = expect_rejected(
        &st,
        &op,
        "token endpoint slower than idp_timeout (2s)",
        |s| s >= 500,
        "5xx (502/504)",
    );
    statuses.push(format!("slow token endpoint: {s}"));
    st.check(t0.elapsed() < Duration::from_secs(4), || {
        format!("the filter waited {:?} for a 2s idp_timeout", t0.elapsed())
    });
    st.check(op.token_requests() == tr + 1, || {
        "slow scenario: exactly one token request expected".into()
    });

    // After all that, a good login still works.
    std::thread::sleep(Duration::from_secs(3)); // let the slow OP thread finish
    op.set_scenario(Scenario::Good);
    expect_good(&st, &op, "scenario `good` (after the failures)");
    eprintln!("b01 statuses: {}", statuses.join("; "));
}

/// B2: the OP rotates its signing key; the filter refetches the JWKS on an unknown kid.
#[test]
fn b02_jwks_key_rotation() {
    let op = BadOp::start(support::stack::CLIENT_ID, "bad-op-secret");
    let st = bad_op_stack(&op);
    op.set_scenario(Scenario::Good);
    expect_good(&st, &op, "login with k1");
    let j = op.jwks_requests();
    st.check(j >= 1, || "the JWKS was never fetched".into());
    // The filter refetches keys on an unknown kid at most every KEY_REFETCH_MIN_SECS (5 s);
    // a real rotation comes long after the last fetch.
    std::thread::sleep(Duration::from_secs(6));
    op.rotate_to_k2();
    expect_good(&st, &op, "login after rotation to k2");
    st.check(op.jwks_requests() > j, || {
        format!(
            "the JWKS was not refetched after rotation ({} fetches)",
            op.jwks_requests()
        )
    });
    // Whether tokens signed with the retired k1 are still accepted depends on the key cache
    // policy (replace vs. merge); not asserted.
}

/// B3: interleaved logins in two browsers each use their own state, nonce and PKCE verifier
/// (the OP checks the verifier and the filter the nonce), and a callback carrying another
/// browser's state is refused.
#[test]
fn b03_concurrent_logins_keep_their_own_pkce_and_nonce() {
    let op = BadOp::start(support::stack::CLIENT_ID, "bad-op-secret");
    let st = bad_op_stack(&op);
    op.set_scenario(Scenario::Good);
    // Two browsers start logins; they complete in reverse order.
    let mut b1 = Browser::new();
    let mut b2 = Browser::new();
    let r1 = b1.get(&st.url("/one"));
    let r2 = b2.get(&st.url("/two"));
    let a1 = b1.get(r1.location().unwrap().as_str());
    let a2 = b2.get(r2.location().unwrap().as_str());
    let (f2, h2) = b2.follow_get(a2.location().unwrap().as_str());
    let (f1, h1) = b1.follow_get(a1.location().unwrap().as_str());
    st.check(f2.status == 200 && f2.url == st.url("/two"), || {
        format!("browser 2:\n{}\n{}", format_hops(&h2), f2.short())
    });
    st.check(f1.status == 200 && f1.url == st.url("/one"), || {
        format!("browser 1:\n{}\n{}", format_hops(&h1), f1.short())
    });
    let v = op.violations();
    st.check(v.is_empty(), || format!("protocol violations: {v:?}"));
    // Browser 1's callback URL replayed in browser 2 (CSRF cookie of another login) fails.
    let mut b3 = Browser::new();
    let r3 = b3.get(&st.url("/three"));
    let a3 = b3.get(r3.location().unwrap().as_str());
    let cb3 = a3.location().unwrap();
    let mut b4 = Browser::new();
    let _ = b4.get(&st.url("/four")); // b4 has its own CSRF cookie
    let r = b4.get(cb3.as_str());
    st.check(
        (400..500).contains(&r.status) && session_cookies_set(&[hop_of(&r)]).is_empty(),
        || {
            format!(
                "a callback carrying another browser's state must be refused: {}",
                r.short()
            )
        },
    );
}

/// A13: session lifetime is enforced from the sealed cookie, not just by the browser;
/// custom cookie_name; skip_provider_button; unknown /oauth2/* paths.
#[test]
fn a13_session_expiry_and_cookie_settings() {
    let st = Stack::builder()
        .app(App::Recorder)
        .plugin("cookie_expire", json!("3s"))
        .plugin("cookie_name", json!("_wop"))
        .plugin("skip_provider_button", json!(true))
        .start();
    let authz = authz_endpoint(&st);
    let rec = st.recorder.as_ref().unwrap();
    let mut b = Browser::new();
    // skip_provider_button: /oauth2/sign_in goes straight to the IdP.
    let r = b.get(&st.url("/oauth2/sign_in?rd=%2Fx"));
    assert_login_redirect(&st, &r, &authz, "/oauth2/sign_in with skip_provider_button");
    st.check(r.set_cookie("_wop_csrf").is_some(), || {
        format!(
            "CSRF cookie must follow cookie_name (`_wop_csrf`): {}",
            r.short()
        )
    });
    let (_, hops) = st.login(&mut b, &st.url("/private"), "john", "john");
    let cb = find_hop(&hops, "/oauth2/callback").unwrap_or_else(|| st.fail("no callback"));
    let sess = cb
        .set_cookies
        .iter()
        .map(|s| SetCookie::parse(s))
        .find(|c| c.name == "_wop");
    let sess = sess.unwrap_or_else(|| st.fail(&format!("no `_wop` session cookie: {cb}")));
    st.check(sess.max_age == Some(3), || {
        format!("session Max-Age must be cookie_expire (3): {}", sess.raw)
    });
    // Our cookie is hidden from the app; one named like the default is not ours any more.
    let r = b.get_with(
        &st.url("/headers"),
        &[(
            "Cookie",
            &format!("_oauth2_proxy=foreign; _wop={}; a=b", sess.value),
        )],
    );
    st.check(r.status == 200, || {
        format!("GET /headers with session: {}", r.short())
    });
    let h = r.json();
    st.check(
        header_str(&h, "cookie").as_deref() == Some("_oauth2_proxy=foreign; a=b"),
        || format!("app Cookie header: {:?}", header_str(&h, "cookie")),
    );
    // Unknown endpoint under the prefix: answered by the filter, not proxied.
    let n = rec.count();
    let r = b.get(&st.url("/oauth2/nope"));
    st.check(r.status == 404 && rec.count() == n, || {
        format!("/oauth2/nope must be a local 404: {}", r.short())
    });
    // After cookie_expire, replaying the (browser-expired) cookie is no session.
    std::thread::sleep(Duration::from_millis(4200));
    let cookie = format!("_wop={}", sess.value);
    let mut fresh = Browser::new();
    let r = fresh.get_with(&st.url("/headers"), &[("Cookie", cookie.as_str())]);
    assert_login_redirect(&st, &r, &authz, "expired session replayed (browser)");
    let r = fresh.get_with(
        &st.url("/headers"),
        &[("Cookie", cookie.as_str()), ("Accept", "application/json")],
    );
    assert_401(&st, &r, "expired session replayed (API)");
}

/// A14: ES256-signed ID tokens from the real IdP are accepted.
#[test]
fn a14_es256_id_tokens() {
    let st = Stack::builder()
        .idp_env("IDP_ID_TOKEN_ALG", "ES256")
        .start();
    let mut b = Browser::new();
    let (resp, _) = st.login_ok(&mut b, "/headers", "john");
    let h = resp.json();
    let idt = header_str(&h, "authorization").unwrap_or_default();
    let hdr = jwt::header(idt.trim_start_matches("Bearer ")).unwrap_or(Value::Null);
    st.check(hdr["alg"] == "ES256", || format!("id_token header: {hdr}"));
    st.check(
        header_str(&h, "x-forwarded-email").as_deref() == Some("john@example.com"),
        || format!("{h}"),
    );
}

/// B4: claims carrying CR/LF or other control characters cannot forge upstream headers.
#[test]
fn b04_claims_cannot_inject_headers() {
    let op = BadOp::start(support::stack::CLIENT_ID, "bad-op-secret");
    let st = bad_op_stack(&op);
    op.set_scenario(Scenario::Good);
    op.set_extra_claims(json!({
        "preferred_username": "alice\r\nx-injected: 1",
        "groups": ["g1", "g2\r\nx-injected-too: 1", "g3\nx-lf: 1"],
        "sub": "alice\r\nx-injected-sub: 1",
    }));
    let mut b = Browser::new();
    let (resp, hops) = bad_op_login(&st, &mut b);
    st.check(resp.status == 200, || {
        format!(
            "login with control characters in claims:\n{}\nfinal: {}",
            format_hops(&hops),
            resp.short()
        )
    });
    let rec = st.recorder.as_ref().unwrap();
    let last = rec.requests().pop().unwrap();
    for (k, v) in &last.headers {
        st.check(
            !k.to_ascii_lowercase().starts_with("x-injected") && !k.eq_ignore_ascii_case("x-lf"),
            || format!("a claim injected header {k}: {v}"),
        );
        st.check(!v.contains('\r') && !v.contains('\n'), || {
            format!("control characters reached the app in {k}: {v:?}")
        });
    }
    st.check(
        last.header("x-forwarded-email") == Some("alice@example.com"),
        || format!("{:?}", last.headers),
    );
}

/// B5: the IdP is down when Envoy starts: requests fail closed (5xx, nothing proxied), and
/// once the IdP comes up logins work without restarting Envoy. A discovery document whose
/// issuer differs from the configured one is refused.
#[test]
fn b05_idp_down_at_start_then_up() {
    let port = support::proc::free_port();
    let st = Stack::builder()
        .idp(Idp::External { port })
        .app(App::Recorder)
        .inline_secrets()
        .client_secret("bad-op-secret")
        .plugin("idp_timeout", json!("2s"))
        .start();
    let rec = st.recorder.as_ref().unwrap();
    let mut b = Browser::new();
    // A browser must be sent to the IdP, which is impossible: fail closed.
    let r = b.get(&st.url("/"));
    st.check(r.status >= 500, || {
        format!(
            "GET / (browser) with the IdP down must fail closed with 5xx: {}",
            r.short()
        )
    });
    // An API client without a session needs no IdP to be told 401 (5xx is acceptable too).
    let r = b.get_with(&st.url("/api"), API);
    st.check(r.status == 401 || r.status >= 500, || {
        format!(
            "GET /api (API) with the IdP down must be 401 or 5xx: {}",
            r.short()
        )
    });
    let r = b.get(&st.url("/ping"));
    st.check(r.status == 200, || {
        format!("/ping with the IdP down: {}", r.short())
    });
    st.check(rec.count() == 0, || {
        format!("requests reached the app:\n{}", rec.summary())
    });

    // The OP comes up but lies about its issuer: still refused.
    let op = BadOp::start_on(port, support::stack::CLIENT_ID, "bad-op-secret");
    op.set_redirect_uri(&st.redirect_url());
    op.set_discovery_issuer(Some("http://127.0.0.1:1".into()));
    std::thread::sleep(Duration::from_secs(3)); // past the filter's retry back-off
    let r = b.get(&st.url("/"));
    st.check(r.status >= 500, || {
        format!(
            "discovery with a foreign issuer must not be used: {}",
            r.short()
        )
    });
    st.check(op.discovery_requests() >= 1, || {
        "the filter never retried discovery".into()
    });

    // Now it tells the truth: logins work.
    op.set_discovery_issuer(None);
    std::thread::sleep(Duration::from_secs(3));
    op.set_scenario(Scenario::Good);
    expect_good(&st, &op, "login after the IdP came up");
}

#[test]
fn a16_skip_auth_routes_pass_without_login_and_without_spoofed_identity() {
    let st = Stack::builder()
        .app(App::Recorder)
        .plugin("skip_auth_routes", json!(["GET=^/public/", "^/status$"]))
        .start();
    let rec = st.recorder.as_ref().expect("recorder");
    let mut b = Browser::new();
    b.set(&st.origin(), SESSION, "forged-session-value");
    let mut spoof: Vec<(&str, &str)> = IDENTITY_HEADERS
        .iter()
        .map(|n| (*n, "admin@evil.example"))
        .collect();
    spoof.push(("Authorization", "Bearer spoofed.jwt.value"));
    let r = b.get_with(&st.url("/public/app.css?v=2"), &spoof);
    st.check(r.status == 200, || {
        format!("a skipped route must reach the app: {}", r.short())
    });
    let seen = rec.requests();
    st.check(
        seen.len() == 1 && seen[0].target == "/public/app.css?v=2",
        || rec.summary(),
    );
    for name in IDENTITY_HEADERS.iter().chain(["authorization"].iter()) {
        st.check(seen[0].header(name).is_none(), || {
            format!(
                "{name} reached the app on a skipped route: {:?}",
                seen[0].headers
            )
        });
    }
    st.check(
        seen[0]
            .header("cookie")
            .is_none_or(|c| !c.contains(SESSION)),
        || format!("the session cookie reached the app: {:?}", seen[0].headers),
    );

    // The method is part of the rule, the query is not part of the path, and other paths
    // still need a session.
    let api = [("Accept", "application/json")];
    for (method, path) in [
        ("POST", "/public/app.css"),
        ("GET", "/private?x=/status"),
        ("GET", "/status/x"),
    ] {
        let r = Browser::new().send(method, &st.url(path), &api, None);
        assert_401(&st, &r, &format!("{method} {path}"));
    }
    let r = Browser::new().get_with(&st.url("/status"), &api);
    st.check(r.status == 200, || format!("GET /status: {}", r.short()));
    st.check(rec.count() == 2, || rec.summary());
}
